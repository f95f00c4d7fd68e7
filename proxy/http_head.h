// The request head of HTTP/1.x (RFC 9112), parsed strictly: an edge faces the internet and sits
// behind other proxies, so every ambiguity that could frame a message two ways (request
// smuggling: two Content-Lengths, whitespace before a colon, Transfer-Encoding with
// Content-Length, obs-fold) is an error here, not a guess. Pure: bytes in, a head or an error
// out. Written by hand because Debian 12 packages no maintained strict HTTP/1.1 parser
// (http-parser 2.9 is archived and lenient unless rebuilt; llhttp is not packaged).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/http_text.h"

namespace proxy {

struct HeadLimits {
  std::size_t max_head = 32 * 1024;   // request line + fields + the blank line: else 431
  std::size_t max_target = 8 * 1024;  // request-target: else 414
  std::size_t max_fields = 100;       // else 431
};

enum class BodyFraming { kNone, kLength, kChunked };

struct RequestHead {
  std::string method;      // as sent (case-sensitive token, RFC 9110 §9.1)
  std::string target;      // as sent
  int minor = 1;           // HTTP/1.<minor>: 0 or 1
  Headers fields;          // names as sent, values trimmed
  bool keep_alive = true;  // what the client asked for (1.1 default; 1.0 needs keep-alive)
  BodyFraming body = BodyFraming::kNone;
  std::uint64_t content_length = 0;  // kLength only

  // The value of the first field named `name` (case-insensitive), or nullptr. Lives as long as
  // this head.
  const std::string* find(std::string_view name) const { return find_field(fields, name); }
};

struct HeadError {
  int status = 400;     // 400, 414, 431, 505
  std::string reason;   // status line reason phrase
  std::string message;  // for the body of the answer and the log: never echoes client bytes
};

struct HeadParse {
  enum class State { kIncomplete, kDone, kError } state = State::kIncomplete;
  std::size_t consumed = 0;  // kDone: bytes of the head, the blank line included
  RequestHead head;          // kDone
  HeadError error;           // kError
};

// Parses one request head at the start of `bytes`. Leading empty lines are skipped (RFC 9112
// §2.2). Lines end in CRLF or a bare LF; a bare CR anywhere is an error. kIncomplete means no
// blank line yet and no limit broken: call again with more bytes. Work is linear in
// `bytes.size()`.
HeadParse parse_request_head(std::string_view bytes, const HeadLimits& limits);

// Where the head ends: the offset just past the blank line, or 0 when `bytes` has none yet.
// `from` lets a caller that saw a prefix before skip rescanning it (pass what it scanned).
std::size_t find_head_end(std::string_view bytes, std::size_t from = 0);

// Decodes a chunked request body (RFC 9112 §7.1) as its bytes arrive, keeping at most
// `max_body` bytes of data. Chunk extensions and trailer fields are read and dropped; each line
// is bounded. Pure: the caller feeds what it has and drops `consumed` bytes.
class ChunkedBody {
 public:
  enum class State { kMore, kDone, kError };
  struct Step {
    State state = State::kMore;
    std::size_t consumed = 0;
    const char* error = nullptr;  // kError: what was wrong (413 when "body too large")
    bool too_large = false;
  };
  explicit ChunkedBody(std::uint64_t max_body) : max_body_(max_body) {}
  Step feed(std::string_view in, std::string& out);

 private:
  enum class Phase { kSize, kData, kDataEnd, kTrailer, kDone };
  static constexpr std::size_t kMaxLine = 4096;
  Phase phase_ = Phase::kSize;
  std::uint64_t left_ = 0;  // data bytes left in this chunk
  std::uint64_t total_ = 0;
  std::uint64_t max_body_;
  std::string line_;  // a size or trailer line being assembled
};

}  // namespace proxy
