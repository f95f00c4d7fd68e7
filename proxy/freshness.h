// Shared-cache storage and freshness decisions (RFC 9111 §3, §4.2) over an origin response's
// headers and the route's defaults. Pure: the caller passes the clock reading.
// Tricky: a shared cache honours s-maxage before max-age; `private`, `no-store` and any `Vary`
// forbid storing;
// `no-cache` allows storing but every use needs the origin first; a route with ttl_override
// ignores all of the origin's freshness headers (but never its no-store/private).
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "conf/config.h"
#include "proxy/http_text.h"

namespace proxy {

struct CacheControl {
  bool no_store = false;
  bool no_cache = false;
  bool private_ = false;
  bool must_revalidate = false;  // also set by proxy-revalidate
  bool public_ = false;
  std::optional<std::int64_t> max_age;
  std::optional<std::int64_t> s_maxage;
};
// Parses one or more Cache-Control values (comma lists; quoted arguments; unknown directives
// ignored; a malformed delta-seconds is treated as 0, i.e. stale, per RFC 9111 §1.2.2).
CacheControl parse_cache_control(std::string_view value);

struct Freshness {
  bool storable = false;             // false: pass through, never stored
  bool revalidate_each_use = false;  // no-cache: stored, but refetched before each use
  std::int64_t stored_at = 0;        // response time minus the age it already had upstream
  std::int64_t expires_at = 0;       // fresh while now < expires_at
};

// Decides for a 200 response received at `now` with `headers`, served through `route`.
// Not storable: no-store, private, or a non-empty Vary (a passed-through answer).
Freshness decide(const Headers& headers, const conf::Route& route, std::int64_t now);

// Case-insensitive header lookup; returns the first value or empty.
std::string_view find_header(const Headers& headers, std::string_view name);

// The origin headers that are end-to-end and describe the object, to store and replay on every
// hit: Cache-Control, Expires, Content-Disposition, Content-Language, x-amz-meta-*, and a few
// others. Hop-by-hop and per-request ones (Connection, Date, Server, x-amz-request-id,
// x-amz-id-2, Set-Cookie, ...) and those tusk computes itself (Content-Length, ETag,
// Last-Modified, Content-Type, Accept-Ranges, Age, Content-Range, Content-Encoding) are not.
Headers replayable_headers(const Headers& origin);

// True for keys whose bytes are a gzip tarball (".tgz", ".tar.gz", case-insensitive): such
// objects must never be served with a content coding.
bool is_tarball_key(std::string_view key);

}  // namespace proxy
