// Presigned URLs, pure: making a SigV4 one (`tusk presign`) and checking SigV4 and SigV2 ones the
// way S3 does (tuskd's `auth: presigned` routes), for URLs made for tuskd's own address. No I/O,
// no clock: callers pass `now`. Tricky: everything is decoded once then re-encoded (S3's
// canonical forms), a HEAD may use a URL presigned for GET, and every input is hostile: bounded,
// checked escapes, constant-time signature comparison, nothing client-made echoed in `reason`.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "conf/result.h"
#include "s3/sign.h"

namespace s3 {

// Longest X-Amz-Expires S3 accepts, and the furthest a SigV2 Expires may lie ahead: 7 days.
inline constexpr std::int64_t kPresignMaxExpires = 7 * 24 * 3600;
// How far X-Amz-Date may lie in the future (clock skew between signer and tuskd).
inline constexpr std::int64_t kPresignMaxSkew = 15 * 60;
// Bounds on hostile input: longer queries, more parameters, or longer paths are kMalformed.
inline constexpr std::size_t kPresignMaxQuery = 8 * 1024;
inline constexpr std::size_t kPresignMaxParams = 64;
inline constexpr std::size_t kPresignMaxPath = 8 * 1024;

// Makes a SigV4 presigned URL for GET, as botocore's generate_presigned_url does: `url` is
// scheme://host[:port]/path[?query] exactly as clients will send it (path and query already
// percent-encoded as on the wire; http or https only; no fragment). The host signed is the one
// clients send in Host: lowercased, user-info dropped, a default port omitted. Signs GET, host,
// the path, the existing query and X-Amz-Algorithm/Credential/Date/Expires/SignedHeaders=host
// with payload UNSIGNED-PAYLOAD; the result is `url` (with its host as given) plus those
// parameters and X-Amz-Signature appended after the existing query, whose bytes are kept.
// Errors (a message naming the problem, never the secret): a URL that is not http(s)://host/...,
// has a fragment, raw spaces, control or non-ASCII bytes, a bad %-escape, already carries presign
// parameters, or is over the bounds above; `expires_seconds` outside 1..kPresignMaxExpires; an
// access key that is empty or holds '/'.
conf::Result<std::string, std::string> presign_v4(std::string_view url, const Credentials& c,
                                                  std::string_view region, std::string_view service,
                                                  std::time_t now, std::int64_t expires_seconds);

// The closed set of verdicts, for the reply, the access log and the metric label alike.
enum class PresignResult {
  kNone,          // no presign parameter at all (the caller decides: usually 403)
  kOk,            // a valid signature by a known key, within its validity window
  kMalformed,     // missing, duplicated or invalid parameter; bad escape; over the bounds
  kExpired,       // X-Amz-Date + X-Amz-Expires (V4) or Expires (V2) is before now
  kNotYetValid,   // X-Amz-Date more than kPresignMaxSkew in the future
  kTooLong,       // X-Amz-Expires over 7 days, or a V2 Expires more than 7 days ahead
  kUnknownKey,    // the access key is not in the key file
  kBadSignature,  // everything else fine, but the signature does not match
};
// "none", "ok", "malformed", "expired", "not_yet_valid", "too_long", "unknown_key",
// "bad_signature": a static string (log field, metric label).
const char* presign_result_name(PresignResult r);

struct PresignCheck {
  PresignResult result = PresignResult::kNone;
  // The access key named (V4 credential or V2 AWSAccessKeyId), when one could be read: client
  // bytes, at most 128 of them, to be escaped (s3/printable.h) before logging. Never the secret.
  std::string key_id;
  // Short, constant or built only from configuration and validated tokens, safe to send to the
  // client: "expired", "X-Amz-Expires over 7 days", ... Empty for kOk.
  std::string reason;
};

struct PresignedRequest {
  std::string_view method;  // as received (GET or HEAD)
  std::string_view path;    // raw request-target path as received, percent-encoded, no query
  std::string_view query;   // raw query string as received, without '?'
  // Request header lookup by lowercase name (host, and any other signed header); nullopt when
  // absent. Called only during verify_presigned.
  std::function<std::optional<std::string>(std::string_view lower_name)> header;
};

// The secret of an access key, or nullptr when unknown. The pointer is only read during the call.
using SecretLookup = std::function<const std::string*(std::string_view access_key)>;

// Checks the presign parameters of a request against `secrets`, `region` and `service` (V4's
// credential scope must name exactly these) at time `now`:
//  - SigV4 (X-Amz-* parameters): AWS4-HMAC-SHA256 over S3's canonical request for presigned URLs
//    (the path decoded then encoded once, no dot-segment normalisation; every parameter but
//    X-Amz-Signature decoded, encoded and sorted; the signed headers, which must include host;
//    UNSIGNED-PAYLOAD). X-Amz-Security-Token is refused (no STS here).
//  - SigV2 (AWSAccessKeyId, Expires, Signature): HMAC-SHA1 of "GET\n\n\n<Expires>\n<path>" plus
//    the S3 sub-resources of the query (versionId, response-*, ...), base64.
// A HEAD request is also accepted with a URL presigned for GET: a HEAD shows nothing a GET of
// the same URL would not (curl -I, wget --spider).
// Returns kNone when no presign parameter is present, both forms at once is kMalformed; see
// PresignResult for the rest. Never throws; thread-safe if `secrets` and `r.header` are.
PresignCheck verify_presigned(const PresignedRequest& r, const SecretLookup& secrets,
                              std::string_view region, std::string_view service, std::time_t now);

// `query` (raw, without '?') without the presign parameters: X-Amz-Algorithm, -Credential, -Date,
// -Expires, -SignedHeaders, -Signature, -Security-Token, and V2's AWSAccessKeyId, Expires,
// Signature, recognised by their decoded names (so "X-Amz-%53ignature" goes too). Other
// parameters are kept in their order and bytes, empty ones ("a&&b") dropped. Throws only
// std::bad_alloc.
std::string strip_presign_params(std::string_view query);

}  // namespace s3
