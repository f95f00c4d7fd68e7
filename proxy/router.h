// Maps a request's Host and path to an object of a configured bucket, and rejects hostile paths.
// Pure. Only configured routes are reachable: tusk is never an open proxy. The path is
// percent-decoded once; '.'/'..' segments (raw or encoded), NUL and other control bytes,
// backslashes and malformed escapes are refused before any lookup.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"
#include "conf/result.h"

namespace proxy {

struct Target {
  const conf::Route* route = nullptr;  // points into the Router's config
  std::string upstream;
  std::string bucket;
  std::string key;  // decoded object key
  // The decoded query parameters, in order, when the route has `query: key` (else empty): part
  // of the cache key, forwarded and signed upstream.
  std::vector<std::pair<std::string, std::string>> query = {};
};

// A route with `query: key` accepts at most this many query parameters (more: 400).
inline constexpr std::size_t kMaxQueryParams = 64;

enum class RouteErrc { kBadPath, kNotFound };
struct RouteError {
  RouteErrc code;
  std::string message;
};

// Decodes %XX escapes; fails on malformed escapes. '+' stays '+' (paths are not forms).
conf::Result<std::string, std::string> percent_decode(std::string_view s);

// Checks a decoded path: must start with '/', no NUL/control bytes, no backslash, no '.' or
// '..' segment. Returns an explanation on failure.
conf::Result<void, std::string> check_path(std::string_view decoded);

// The request path that routes to object `key` through `route` (Router::route's inverse for that
// route): the exact path, or the prefix and the key without key_prefix, percent-encoded ('/'
// kept). nullopt when `route` cannot name `key` (another key, or one outside key_prefix).
std::optional<std::string> path_for(const conf::Route& route, std::string_view key);

class Router {
 public:
  // `routes` must outlive the Router (it keeps pointers into it).
  explicit Router(const std::vector<conf::Route>& routes);

  // `host` is the Host header (port ignored, case-insensitive); `target` the request-target
  // (path with optional query; the query is ignored unless the route says `query: key`).
  conf::Result<Target, RouteError> route(std::string_view host, std::string_view target) const;

 private:
  const std::vector<conf::Route>& routes_;
};

}  // namespace proxy
