// Who may read a route (issue 15), decided for each request right after routing and before any
// lookup: a refused request never touches the cache or the upstream. Pure: the request's client
// address (proxy/client_address.h), its head and the route's configuration in, a verdict out.
// Order: the address (`allow`), then the credentials (`auth`). A cached object is served to
// every authorized client of its route from one copy: credentials are never part of the key.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

#include "conf/cidr.h"
#include "conf/config.h"
#include "proxy/http_head.h"

namespace proxy {

// The metric label and the closed set of what can happen.
enum class AccessResult { kAllowed, kDeniedIp, kNoCredentials, kBadCredentials, kExpired };
inline constexpr int kAccessResults = 5;
// "allowed", "denied_ip", "no_credentials", "bad_credentials", "expired"
const char* access_result_name(AccessResult r);

struct AccessVerdict {
  AccessResult result = AccessResult::kAllowed;
  int status = 200;        // 401 or 403 when refused
  std::string reason;      // one short line for the client; never a secret, never client bytes
  std::string key_id;      // for the access log: the access key of a presigned URL (client bytes,
                           // escaped by the log), or a token's id (token_id); "" none
  bool challenge = false;  // 401: send `WWW-Authenticate: Bearer realm="tusk"`
};

struct AccessRequest {
  conf::IpAddress client;   // after trusted proxies
  std::string_view method;  // GET or HEAD
  std::string_view path;    // the request-target's path, raw (percent-encoded), no query
  std::string_view query;   // raw, without '?'
  std::string_view host;    // the Host the client sent (or the absolute-form authority)
  const RequestHead* head = nullptr;
};

// Whether a route has access rules (`allow` or `auth`). Its fills go to the upstream directly,
// never through the fleet's owner of the object (proxy/peers.h): the owner would be asked by
// an edge, not by the client, and would have to take a peer's word for who that client is.
inline bool guarded(const conf::Route& route) {
  return !route.allow.empty() || route.auth != conf::Auth::kNone;
}

// A route's name in metrics: "host/prefix" or "prefix" (or the exact path): configured text.
std::string route_label(const conf::Route& route);

AccessVerdict check_access(const conf::Route& route, const AccessRequest& req, std::time_t now);

// A token's name in logs: "token:" and the first 12 hex digits of its SHA-256. Identifies which
// line of the token file was used without revealing it.
std::string token_id(std::string_view token);

}  // namespace proxy
