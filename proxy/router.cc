#include "proxy/router.h"

#include "proxy/freshness.h"
#include "s3/presign.h"
#include "s3/sign.h"

namespace proxy {
namespace {

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view host_only(std::string_view host) {
  if (!host.empty() && host.front() == '[') {  // [v6]:port
    auto close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(0, close + 1);
  }
  auto colon = host.rfind(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

}  // namespace

conf::Result<std::string, std::string> percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out.push_back(s[i]);
      continue;
    }
    if (i + 2 >= s.size()) {
      return conf::unexpected(std::string("truncated percent-escape"));
    }
    int hi = hexval(s[i + 1]);
    int lo = hexval(s[i + 2]);
    if (hi < 0 || lo < 0) {
      return conf::unexpected(std::string("malformed percent-escape"));
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

conf::Result<void, std::string> check_path(std::string_view p) {
  if (p.empty() || p.front() != '/') {
    return conf::unexpected(std::string("path must start with '/'"));
  }
  for (unsigned char c : p) {
    if (c == 0) {
      return conf::unexpected(std::string("NUL byte in path"));
    }
    if (c < 0x20 || c == 0x7f) {
      return conf::unexpected(std::string("control character in path"));
    }
    if (c == '\\') {
      return conf::unexpected(std::string("backslash in path"));
    }
  }
  std::size_t i = 1;
  while (i <= p.size()) {
    std::size_t j = p.find('/', i);
    if (j == std::string_view::npos) {
      j = p.size();
    }
    std::string_view seg = p.substr(i, j - i);
    if (seg == "." || seg == "..") {
      return conf::unexpected(std::string("dot segment in path"));
    }
    i = j + 1;
  }
  return {};
}

std::optional<std::string> path_for(const conf::Route& route, std::string_view key) {
  if (!route.path.empty()) {
    return key == route.key ? std::optional<std::string>(route.path) : std::nullopt;
  }
  if (!key.starts_with(route.key_prefix) || key.size() == route.key_prefix.size()) {
    return std::nullopt;
  }
  return route.prefix + s3::uri_encode(key.substr(route.key_prefix.size()), /*keep_slash=*/true);
}

namespace {

// A route with `query: key` takes the request's query parameters (decoded, in order, empty ones
// dropped) into its target; other routes ignore the query. A presigned URL's parameters
// (X-Amz-Signature, ...: the client's credentials, proxy/access.h) are never part of it: every
// authorized client of an object shares one copy, and they are never sent upstream.
conf::Result<Target, RouteError> with_query(Target t, std::string_view request_target) {
  if (t.route->query != conf::Query::kKey) {
    return t;
  }
  std::size_t q = request_target.find('?');
  if (q == std::string_view::npos) {
    return t;
  }
  std::string_view raw = request_target.substr(q + 1);
  raw = raw.substr(0, raw.find('#'));
  const std::string kept = s3::strip_presign_params(raw);
  std::string_view query = kept;
  std::size_t i = 0;
  while (i <= query.size()) {
    std::size_t j = query.find('&', i);
    if (j == std::string_view::npos) {
      j = query.size();
    }
    std::string_view item = query.substr(i, j - i);
    i = j + 1;
    if (item.empty()) {
      continue;
    }
    if (t.query.size() == kMaxQueryParams) {
      return conf::unexpected(
          RouteError{RouteErrc::kBadPath,
                     "more than " + std::to_string(kMaxQueryParams) + " query parameters"});
    }
    const std::size_t eq = item.find('=');
    auto name = percent_decode(item.substr(0, eq));
    auto value =
        percent_decode(eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1));
    if (!name || !value) {
      return conf::unexpected(RouteError{RouteErrc::kBadPath, "bad query string"});
    }
    t.query.emplace_back(std::move(*name), std::move(*value));
  }
  return t;
}

}  // namespace

Router::Router(const std::vector<conf::Route>& routes) : routes_(routes) {}

conf::Result<Target, RouteError> Router::route(std::string_view host,
                                               std::string_view target) const {
  std::string_view raw = target.substr(0, target.find_first_of("?#"));
  auto decoded = percent_decode(raw);
  if (!decoded) {
    return conf::unexpected(RouteError{RouteErrc::kBadPath, decoded.error()});
  }
  if (auto ok = check_path(*decoded); !ok) {
    return conf::unexpected(RouteError{RouteErrc::kBadPath, ok.error()});
  }
  const std::string& path = *decoded;
  std::string_view h = host_only(host);
  auto host_ok = [&](const conf::Route& r) { return r.host.empty() || iequals(r.host, h); };

  for (const conf::Route& r : routes_) {
    if (!r.path.empty() && r.path == path && host_ok(r)) {
      return with_query(Target{&r, r.upstream, r.bucket, r.key, {}}, target);
    }
  }
  const conf::Route* best = nullptr;
  for (const conf::Route& r : routes_) {
    if (!r.prefix.empty() && path.size() > r.prefix.size() && path.starts_with(r.prefix) &&
        host_ok(r) && (best == nullptr || r.prefix.size() > best->prefix.size())) {
      best = &r;
    }
  }
  if (best == nullptr) {
    return conf::unexpected(RouteError{RouteErrc::kNotFound, "no route for this path"});
  }
  return with_query(Target{best,
                           best->upstream,
                           best->bucket,
                           best->key_prefix + path.substr(best->prefix.size()),
                           {}},
                    target);
}

}  // namespace proxy
