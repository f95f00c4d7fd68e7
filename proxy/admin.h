// The admin API (issue 10): JSON calls on the admin listener for operators and `tusk cache`
// (README "Admin API"). Auth: `Authorization: Bearer <token>` against admin.token_file,
// compared in constant time; without a token file only the read-only calls are open.
// /healthz, /readyz and /metrics stay in proxy/server.cc (no token: balancers and Prometheus).
// Threads: handle() runs on the admin loop; slow work (warm, verify) goes to proxy/jobs.h.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/http_conn.h"
#include "proxy/jobs.h"
#include "proxy/reload.h"
#include "proxy/services.h"

namespace proxy {

enum class AuthVerdict {
  kOk,
  kMissing,        // 401: no (or a malformed) bearer token
  kWrong,          // 403: a token that is not ours
  kNotConfigured,  // 403: a mutating call, and no admin.token_file to authorize it
};
// Pure. `token` is the configured one ("" when none); `mutating`: anything but GET/HEAD.
AuthVerdict authorize(std::string_view authorization, const std::string& token, bool mutating);

// Equality of two strings in time independent of where they differ (CRYPTO_memcmp).
bool constant_time_equal(std::string_view a, std::string_view b);

class Admin {
 public:
  // `connections`: client connections open now (for /stats). `reloader` may be null (no file).
  Admin(Services& svc, Reloader* reloader, std::function<int()> connections);
  ~Admin();

  // Answers one admin request (any path but /healthz, /readyz, /metrics).
  void handle(Exchange& ex);

 private:
  Services& svc_;
  Reloader* reloader_;
  std::function<int()> connections_;
  std::unique_ptr<Jobs> jobs_;
};

}  // namespace proxy
