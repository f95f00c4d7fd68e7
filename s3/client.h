// Asynchronous S3/Walrus client: libcurl's multi interface driven by one libevent event_base (the
// fetch loop). Signs each request per the upstream's configuration (V2, V4 or none), always
// path-style: <endpoint>/<bucket>/<key>. Thread rule: a Client and everything it calls back run
// on the thread that runs its event_base; other threads post work to that base (see
// proxy/loop.h). Never blocks the loop. TLS verification is on unless the upstream says
// `tls_verify: false`. Secrets are never logged.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "conf/config.h"
#include "conf/result.h"
#include "s3/sign.h"

struct event_base;

namespace s3 {

enum class Method { kGet, kHead, kPut, kDelete };

enum class Errc {
  kNotFound,             // 404 / NoSuchKey / NoSuchBucket
  kForbidden,            // 403 AccessDenied (anonymous or missing ACL)
  kAuth,                 // 403 SignatureDoesNotMatch / InvalidAccessKeyId / RequestTimeTooSkewed
  kPreconditionFailed,   // 412 (If-Match no longer matches: the object changed)
  kRangeNotSatisfiable,  // 416
  kRefused,              // TCP connect refused / DNS failure / TLS handshake broken off
  kTls,                  // certificate verification or local TLS setup failed: permanent
  kTimeout,              // connect timeout, or no byte for stall_timeout
  kProtocol,             // malformed response, short body, lying Content-Length/Range
  kServer,               // 5xx
  kHttp,                 // any other unexpected status
  kCancelled,            // the caller dropped the Transfer
};
const char* errc_name(Errc e);  // stable short names for metrics labels: "not_found", ...

// A whole upstream answer that was not a success (its body at most 64 KiB): what a caller
// needs to pass it on to its own client as it is.
struct Answer;

struct Error {
  Errc code = Errc::kProtocol;
  int http_status = 0;  // 0 when no response was received
  std::string s3_code;  // <Code> of the S3 XML error body, e.g. "SignatureDoesNotMatch"
  // Human readable, one line, never contains a secret. Text quoted from the upstream (S3 error
  // message, reason phrase, Location, curl's error detail) is escaped with s3::printable.
  std::string message;
  // Set for an HTTP error whose whole answer arrived (status line, headers and a body of at most
  // 64 KiB); shared: errors are copied to every client of a fill.
  std::shared_ptr<const Answer> answer = nullptr;
};

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive; never a suffix range (resolve before asking)
};

struct Request {
  Method method = Method::kGet;
  std::string bucket;
  std::string key;  // raw key; encoded by the client
  // When set: the request path (already encoded, starting with '/'), instead of /bucket/key.
  // For `signature: none` endpoints that are not S3 (a tusk peer); signing ignores it.
  std::string path;
  std::optional<ByteRange> range;
  std::string if_match;  // ETag, quoted as received
  std::string if_none_match;
  std::string if_modified_since;  // HTTP-date
  HeaderList extra_headers;       // e.g. x-amz-acl for PUT (signed where the scheme says)
  // Query parameters (raw, unencoded; sent in this order, encoded): signed by V4, and by V2 the
  // S3 sub-resources among them (versionId, response-*, ...).
  std::vector<std::pair<std::string, std::string>> query;
  // Sent as they are after signing, never signed (a client's X-Request-Id, traceparent, ...).
  HeaderList forward_headers;
  std::string body;               // PUT only; small bodies (manifests)
  std::string body_file;          // PUT only: stream this file instead of `body`
  // V4 only, PUT with body_file: hex SHA-256 of the file when the caller knows it. Empty sends
  // UNSIGNED-PAYLOAD (hashing a large file here would block the fetch loop).
  std::string body_sha256;
};

// Response status line and headers, delivered once before any body byte.
struct ResponseHead {
  int status = 0;
  HeaderList headers;  // as received, names as sent by the server
  // Convenience lookups (case-insensitive); empty/nullopt when absent.
  std::string header(std::string_view name) const;
  std::optional<std::uint64_t> content_length() const;
};

struct Answer {
  ResponseHead head;
  std::string reason;  // the status line's reason phrase, as sent
  std::string body;
};

struct Callbacks {
  // Called once with a 2xx/304 response head. Return false to abort the transfer (the transfer
  // then ends with Errc::kCancelled). Non-2xx answers never reach here: they end in on_done
  // with an Error built from the status and the S3 XML error body.
  std::function<bool(const ResponseHead&)> on_head;
  // Body bytes in order. Return false to abort (ends with kCancelled). The span is valid only
  // during the call.
  std::function<bool(std::span<const char>)> on_data;
  // Exactly once, last. Success means the whole body arrived (and matched Content-Length).
  std::function<void(conf::Result<void, Error>)> on_done;
};

class Client;

// Owning handle of one in-flight transfer. Destroying it (or cancel()) aborts the transfer; no
// callback runs after that. Must be destroyed on the fetch-loop thread.
class Transfer {
 public:
  Transfer() = default;
  Transfer(Transfer&&) noexcept;
  Transfer& operator=(Transfer&&) noexcept;
  Transfer(const Transfer&) = delete;
  Transfer& operator=(const Transfer&) = delete;
  ~Transfer();
  void cancel();
  bool active() const;

 private:
  friend class Client;
  struct State;
  explicit Transfer(std::shared_ptr<State> s);
  std::shared_ptr<State> state_;
};

class Client {
 public:
  // `base` is the fetch loop; `upstream` is copied. Fails only when libcurl cannot initialise.
  static conf::Result<std::unique_ptr<Client>, Error> create(event_base* base,
                                                             const conf::Upstream& upstream);
  ~Client();

  // Starts a transfer; callbacks run later on the loop thread (never inside start()).
  Transfer start(Request req, Callbacks cb);

  // Blocking convenience for the command-line tools (runs its own private loop): performs one
  // request and collects the body in memory (or, for `sink`, hands it over piecewise).
  struct Collected {
    ResponseHead head;
    std::string body;
  };
  static conf::Result<Collected, Error> perform(const conf::Upstream& upstream, Request req);

  const conf::Upstream& upstream() const;
  std::uint64_t requests_started() const;  // counts every request sent upstream

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

 private:
  friend class Transfer;  // a Transfer's state points back at the Impl that drives it
  struct Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Builds the signed headers for `req` against `upstream` at time `now` (exposed for tests and the
// installer). Returns the full URL and the header list to send (Host excluded: curl sets it).
struct SignedRequest {
  std::string url;
  HeaderList headers;
};
SignedRequest sign_request(const conf::Upstream& upstream, const Request& req, std::time_t now);

// Parses an S3/Walrus XML error body (<Error><Code>..</Code><Message>..</Message></Error>).
// Missing or non-XML bodies give empty fields.
struct XmlError {
  std::string code;
  std::string message;
  std::string region;  // <Region> of AuthorizationHeaderMalformed, when present
};
XmlError parse_error_xml(std::string_view body);

// Maps an HTTP status + S3 code to Errc.
Errc classify(int http_status, std::string_view s3_code);

}  // namespace s3
