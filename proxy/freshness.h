// Shared-cache storage and freshness decisions (RFC 9111 §3, §4.2, §5.2.2) over an origin
// response's headers and the route's defaults, and which of its headers a stored response keeps.
// Pure: the caller passes the clock reading.
// Tricky: a shared cache honours s-maxage before max-age, and s-maxage also forbids serving
// stale; a malformed directive value never makes a response fresh (it counts as 0); a
// duplicated directive, Age or Expires counts by its first occurrence (RFC 9111 §4.2.1), except
// that two different Expires mean "already stale"; the route's `ttl` is heuristic freshness, for
// heuristically cacheable statuses without explicit freshness only; `ttl_override` ignores the
// origin's freshness directives (never its no-store/private).
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

// The largest delta-seconds kept (RFC 9111 §1.2.2): anything larger, or an overflow, is 2^31.
inline constexpr std::int64_t kMaxDeltaSeconds = 2147483648;

struct CacheControl {
  bool no_store = false;
  bool no_cache = false;  // unqualified: every use needs the origin first
  bool private_ = false;  // qualified or not: a shared cache does not store (the safe reading)
  bool must_revalidate = false;
  bool proxy_revalidate = false;
  bool public_ = false;
  // no-cache="a, b": the response may be reused, but without these fields (lower case).
  std::vector<std::string> no_cache_fields;
  // Absent: nullopt. Present but malformed (not 1*DIGIT, quoted or bare; space around '='): 0.
  std::optional<std::int64_t> max_age;
  std::optional<std::int64_t> s_maxage;
  std::optional<std::int64_t> stale_while_revalidate;  // RFC 5861
  std::optional<std::int64_t> stale_if_error;          // RFC 5861
};
// Parses a Cache-Control value: a comma list of directives, names case-insensitive, arguments a
// token or a quoted-string (commas inside quotes do not split); unknown directives ignored;
// the first occurrence of a directive wins.
CacheControl parse_cache_control(std::string_view value);
// Every Cache-Control line of `headers`, as one list (lines are joined in order).
CacheControl cache_control_of(const Headers& headers);

// The Age of a response (RFC 9111 §5.1): the first member of the first Age line when it is
// 1*DIGIT (an optional ";parameter" after it is tolerated), clamped to kMaxDeltaSeconds. A
// non-numeric, negative or fractional value is ignored: nullopt.
std::optional<std::int64_t> parse_age(const Headers& headers);

// Statuses a cache may give heuristic freshness (RFC 9110 §15.1): 200, 203, 204, 206, 300, 301,
// 308, 404, 405, 410, 414, 501.
bool heuristically_cacheable(int status);

struct Freshness {
  bool storable = false;             // false: pass through, never stored
  bool revalidate_each_use = false;  // no-cache: stored, but refetched before each use
  std::int64_t stored_at = 0;        // response time minus the age it already had upstream
  std::int64_t expires_at = 0;       // fresh while now < expires_at
};

// Decides for a response of `status` (a stored object is 200, whichever request brought its
// head) received at `now` with `headers`, served through `route`. Not storable: no-store or
// private (Vary is judged by the fill: proxy/vary.h).
Freshness decide(int status, const Headers& headers, const conf::Route& route, std::int64_t now);

// How long past expiry a stored response may still be used (RFC 5861), from its stored headers.
// Under ttl_override the origin's stale directives are ignored (the route's grace still holds).
struct StaleWindows {
  bool allowed = true;  // false: must-revalidate, proxy-revalidate, no-cache or s-maxage
  std::int64_t while_revalidate = 0;  // served at once while one background revalidation runs
  std::int64_t if_error = 0;          // served when the upstream fails (besides route grace)
};
StaleWindows stale_windows(const Headers& stored, const conf::Route& route);

// Case-insensitive header lookup; returns the first value or empty.
std::string_view find_header(const Headers& headers, std::string_view name);

// Hop-by-hop fields (RFC 9110 §7.6.1): never stored, never forwarded, in either direction.
bool is_hop_by_hop(std::string_view name);
// The field names a message's Connection lines nominate (lower case): hop-by-hop too.
std::vector<std::string> connection_nominated(const Headers& headers);

// The origin headers a stored response keeps and replays on every hit (RFC 9111 §3.1): every
// end-to-end field, in order, including Date (the origin's, kept: §4) and Set-Cookie. Not:
// hop-by-hop fields and those Connection names; fields a no-cache="..." names; the framing and
// the validators tusk keeps apart and writes itself (Content-Length, Content-Range,
// Transfer-Encoding, Content-Encoding, Content-Type, ETag, Last-Modified, Accept-Ranges); Age
// (recomputed); per-response ones of S3 (x-amz-request-id, x-amz-id-2) and Server, X-Cache and
// the fleet's X-Tusk-Peer.
Headers replayable_headers(const Headers& origin);

// True for keys whose bytes are a gzip tarball (".tgz", ".tar.gz", case-insensitive): such
// objects must never be served with a content coding.
bool is_tarball_key(std::string_view key);

}  // namespace proxy
