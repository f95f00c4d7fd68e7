// AWS request signing, pure functions: Signature V2 (S3 REST HMAC-SHA1, what Walrus speaks),
// Signature V4 (S3 flavour and any service, e.g. ec2), SigV2 for the EC2 Query API (HmacSHA256),
// and the URI encoding they depend on. No I/O, no clock: callers pass the time. Checked against
// AWS's published vectors (EUSTORE.md §6.5) and against radosgw.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace s3 {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct Credentials {
  std::string access_key;
  std::string secret_key;
};

// scheme://host[:port][/path][?query] split the way signing needs it: scheme lowercased (http
// when absent), authority exactly as curl sends it in Host (host lowercased, user-info dropped, a
// default port omitted), path without a query or trailing slash. The signed host must match
// what is sent byte for byte.
struct UrlParts {
  std::string scheme;     // "http" / "https"
  std::string authority;  // host[:port]
  std::string path;       // "" or e.g. "/services/Walrus"
  std::string origin() const { return scheme + "://" + authority; }
};
UrlParts split_url(std::string_view url);

// RFC 3986 percent-encoding: unreserved A-Z a-z 0-9 - _ . ~ kept, everything else %XX (upper
// hex). `keep_slash` keeps '/' (object key paths).
std::string uri_encode(std::string_view s, bool keep_slash);

// "Tue, 27 Mar 2007 19:36:42 GMT" (RFC 1123, what `Date:` carries).
std::string http_date(std::time_t t);
// "20130524T000000Z"
std::string amz_date(std::time_t t);
// Parses RFC 1123 / RFC 850 / asctime dates (RFC 9110 §5.6.7); -1 when malformed.
std::time_t parse_http_date(std::string_view s);

std::string hex(std::string_view bytes);
std::string sha256_hex(std::string_view data);
std::string base64(std::string_view bytes);
std::string hmac_sha1(std::string_view key, std::string_view data);    // raw bytes
std::string hmac_sha256(std::string_view key, std::string_view data);  // raw bytes

// --- Signature V2 (S3 REST) ---
struct V2Input {
  std::string method;        // GET, HEAD, PUT
  std::string content_md5;   // may be empty
  std::string content_type;  // may be empty
  std::string date;          // value of the Date header (Walrus: Date only, never x-amz-date)
  HeaderList headers;        // all request headers; x-amz-* ones are canonicalised
  std::string resource;      // "/bucket/key" as sent (URL-encoded), plus sub-resources if any
};
std::string v2_string_to_sign(const V2Input& in);
// "AWS <access>:<base64 hmac-sha1>"
std::string v2_authorization(const Credentials& c, const V2Input& in);

// The S3 sub-resources a V2 signature covers (the AWS S3 V2 signing documentation's list):
// acl, cors, ..., versionId, response-content-type, ... Case-sensitive, as S3 is.
bool is_v2_subresource(std::string_view name);
// The query parameters that make a GET or HEAD of an object another S3 operation than reading
// it (acl, tagging, retention, torrent, uploadId, ...): an edge that signs with its own
// credentials must never send them on a client's behalf. versionId, partNumber and response-*
// only shape the read itself and are not among them.
bool selects_another_operation(std::string_view name);

// --- Signature V4 ---
struct V4Input {
  std::string method;
  std::string canonical_uri;  // already encoded path, e.g. "/bucket/my%20key"
  std::vector<std::pair<std::string, std::string>> query;  // raw (unencoded) name/value pairs
  HeaderList headers;        // every header to sign, including host and x-amz-date
  std::string payload_hash;  // hex sha256 of the body, or "UNSIGNED-PAYLOAD"
  std::string region;
  std::string service = "s3";
  std::string amz_date;  // "20130524T000000Z"
};
struct V4Output {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signed_headers;
  std::string signature;      // lowercase hex
  std::string authorization;  // full Authorization header value
};
V4Output v4_sign(const Credentials& c, const V4Input& in);

// --- EC2 Query API Signature V2 (HmacSHA256) ---
// `params` excludes Signature; must already hold AWSAccessKeyId, SignatureVersion=2,
// SignatureMethod=HmacSHA256 and Timestamp. `host` is lowercase host[:port] (port only when
// not the scheme default). Returns the base64 signature.
std::string query_v2_signature(const Credentials& c, std::string_view method, std::string_view host,
                               std::string_view path,
                               std::vector<std::pair<std::string, std::string>> params);
// The canonical query string used above: sorted by name, RFC 3986 encoded, k=v joined by &.
std::string canonical_query(std::vector<std::pair<std::string, std::string>> params);

}  // namespace s3
