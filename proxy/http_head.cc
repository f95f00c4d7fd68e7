// Strict HTTP/1.x request head parsing (RFC 9112 §2-§7, RFC 9110 §5). Each rule that rejects
// says which smuggling or ambiguity it closes.
#include "proxy/http_head.h"

#include <algorithm>
#include <cstring>

#include "proxy/http_text.h"

namespace proxy {
namespace {

bool is_tchar(unsigned char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) {
    return true;
  }
  return c != 0 && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool is_token(std::string_view s) {
  if (s.empty()) {
    return false;
  }
  for (char c : s) {
    if (!is_tchar(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

// field-value: VCHAR, obs-text, SP and HTAB. NUL, CR, LF and other controls are refused.
bool is_field_value(std::string_view s) {
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\t') || c == 0x7f) {
      return false;
    }
  }
  return true;
}

HeadParse fail(int status, const char* reason, std::string message) {
  HeadParse p;
  p.state = HeadParse::State::kError;
  p.error = HeadError{status, reason, std::move(message)};
  return p;
}

HeadParse bad(std::string message) { return fail(400, "Bad Request", std::move(message)); }

// Calls `fn(element)` for each element of a comma-separated list (RFC 9110 §5.6.1), trimmed;
// empty elements are skipped as the RFC says recipients must.
template <typename Fn>
void for_each_element(std::string_view list, Fn fn) {
  while (true) {
    std::size_t comma = list.find(',');
    std::string_view item = trim_ows(list.substr(0, comma));
    if (!item.empty()) {
      fn(item);
    }
    if (comma == std::string_view::npos) {
      return;
    }
    list.remove_prefix(comma + 1);
  }
}

bool parse_decimal(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 18) {  // 10^18 bytes is beyond any object; no overflow below
    return false;
  }
  std::uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    n = n * 10 + static_cast<std::uint64_t>(c - '0');
  }
  out = n;
  return true;
}

// Host (RFC 9110 §7.2): uri-host [":" port]. Refuses what could make one request name two
// hosts or break a log line: whitespace, '/', '@', '\', controls, and a second colon outside
// an IPv6 literal.
bool is_host_value(std::string_view v) {
  for (char ch : v) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f || c == '/' || c == '\\' || c == '@' || c == '?' || c == '#') {
      return false;
    }
  }
  if (!v.empty() && v.front() == '[') {
    return v.find(']') != std::string_view::npos;
  }
  return v.find(':') == v.rfind(':');
}

}  // namespace

std::size_t find_head_end(std::string_view bytes, std::size_t from) {
  // Leading blank lines are not the end of a head (they come before the request line).
  std::size_t start = 0;
  while (start < bytes.size() && (bytes[start] == '\r' || bytes[start] == '\n')) {
    ++start;
  }
  std::size_t pos = std::max(from >= 2 ? from - 2 : 0, start);
  while (true) {
    const void* hit = std::memchr(bytes.data() + pos, '\n', bytes.size() - pos);
    if (hit == nullptr) {
      return 0;
    }
    std::size_t nl = static_cast<const char*>(hit) - bytes.data();
    // A line feed that follows "\n" or "\n\r" ends the head.
    if (nl > start && bytes[nl - 1] == '\n') {
      return nl + 1;
    }
    if (nl > start + 1 && bytes[nl - 1] == '\r' && bytes[nl - 2] == '\n') {
      return nl + 1;
    }
    pos = nl + 1;
  }
}

HeadParse parse_request_head(std::string_view bytes, const HeadLimits& limits) {
  std::size_t skip = 0;
  while (skip < bytes.size() && (bytes[skip] == '\r' || bytes[skip] == '\n')) {
    ++skip;
  }
  if (skip > 8) {
    return bad("too many empty lines before the request line");
  }
  std::string_view rest = bytes.substr(skip);
  const std::size_t end = find_head_end(bytes);
  if (end == 0) {
    // Not complete yet: say which limit is broken, if one is.
    std::size_t first_nl = rest.find('\n');
    if (first_nl == std::string_view::npos && rest.size() > limits.max_target + 32) {
      return fail(414, "URI Too Long", "request line too long");
    }
    if (bytes.size() > limits.max_head) {
      return fail(431, "Request Header Fields Too Large", "request head too large");
    }
    return HeadParse{};
  }
  if (end > limits.max_head + skip) {
    return fail(431, "Request Header Fields Too Large", "request head too large");
  }
  std::string_view head = bytes.substr(skip, end - skip);

  // Splits off the next line without its terminator; a CR elsewhere than before LF is an error.
  bool bare_cr = false;
  auto next_line = [&head, &bare_cr]() {
    std::size_t nl = head.find('\n');
    std::string_view line = head.substr(0, nl);
    head.remove_prefix(nl + 1);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.find('\r') != std::string_view::npos) {
      bare_cr = true;
    }
    return line;
  };

  HeadParse out;
  RequestHead& h = out.head;
  // ---- request-line = method SP request-target SP HTTP-version
  std::string_view line = next_line();
  if (bare_cr) {
    return bad("bare CR in the request line");
  }
  std::size_t sp1 = line.find(' ');
  std::size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos ||
      line.find(' ', sp2 + 1) != std::string_view::npos) {
    return bad("malformed request line");
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (!is_token(method)) {
    return bad("malformed method");
  }
  if (target.size() > limits.max_target) {
    return fail(414, "URI Too Long",
                "request target longer than " + std::to_string(limits.max_target) + " bytes");
  }
  if (target.empty()) {
    return bad("empty request target");
  }
  for (char ch : target) {
    auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c >= 0x7f) {
      return bad("request target with a control, space or non-ASCII byte");
    }
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || version[6] != '.' ||
      version[5] < '0' || version[5] > '9' || version[7] < '0' || version[7] > '9') {
    return bad("malformed HTTP version");
  }
  if (version[5] != '1' || (version[7] != '0' && version[7] != '1')) {
    return fail(505, "HTTP Version Not Supported", "only HTTP/1.0 and HTTP/1.1 are supported");
  }
  h.method = std::string(method);
  h.target = std::string(target);
  h.minor = version[7] - '0';

  // ---- header fields
  bool has_length = false;
  bool has_te = false;
  bool chunked = false;
  int hosts = 0;
  bool conn_close = false;
  bool conn_keep_alive = false;
  while (!head.empty()) {
    std::string_view f = next_line();
    if (bare_cr) {
      return bad("bare CR in a header field");
    }
    if (f.empty()) {
      break;  // the blank line
    }
    if (f.front() == ' ' || f.front() == '\t') {
      return bad("obsolete line folding in a header field");  // RFC 9112 §5.2
    }
    std::size_t colon = f.find(':');
    if (colon == std::string_view::npos) {
      return bad("header field without a colon");
    }
    std::string_view name = f.substr(0, colon);
    if (!is_token(name)) {
      // Includes "Content-Length : 5": RFC 9112 §5.1 says reject whitespace before the colon.
      return bad("malformed header field name");
    }
    std::string_view value = trim_ows(f.substr(colon + 1));
    if (!is_field_value(value)) {
      return bad("control character in a header field value");
    }
    if (h.fields.size() >= limits.max_fields) {
      return fail(431, "Request Header Fields Too Large",
                  "more than " + std::to_string(limits.max_fields) + " header fields");
    }
    if (iequals(name, "Content-Length")) {
      // "5", or a list of equal values ("5, 5": RFC 9110 §8.6 allows the merge); any difference
      // between values or fields is a framing conflict.
      bool ok = true;
      bool any = false;
      for_each_element(value, [&](std::string_view item) {
        std::uint64_t n = 0;
        if (!parse_decimal(item, n) || (has_length && n != h.content_length)) {
          ok = false;
          return;
        }
        has_length = true;
        any = true;
        h.content_length = n;
      });
      if (!ok || !any) {
        return bad("invalid or conflicting Content-Length");
      }
    } else if (iequals(name, "Transfer-Encoding")) {
      // Only "chunked", once and last; any other coding (or chunked twice) cannot be framed.
      bool ok = true;
      for_each_element(value, [&](std::string_view item) {
        if (!iequals(item, "chunked") || chunked) {
          ok = false;
        }
        chunked = true;
      });
      if (!ok || !chunked) {
        return bad("unsupported Transfer-Encoding");
      }
      has_te = true;
    } else if (iequals(name, "Host")) {
      ++hosts;
      if (!is_host_value(value)) {
        return bad("malformed Host");
      }
    } else if (iequals(name, "Connection")) {
      for_each_element(value, [&](std::string_view item) {
        conn_close = conn_close || iequals(item, "close");
        conn_keep_alive = conn_keep_alive || iequals(item, "keep-alive");
      });
    }
    h.fields.emplace_back(std::string(name), std::string(value));
  }
  if (hosts > 1) {
    return bad("more than one Host field");  // RFC 9112 §3.2
  }
  if (hosts == 0 && h.minor == 1) {
    return bad("HTTP/1.1 request without Host");  // RFC 9112 §3.2
  }
  if (has_te && has_length) {
    return bad("both Transfer-Encoding and Content-Length");  // RFC 9112 §6.1
  }
  if (has_te && h.minor == 0) {
    return bad("Transfer-Encoding in an HTTP/1.0 request");  // RFC 9112 §6.1
  }
  if (has_te) {
    h.body = BodyFraming::kChunked;
  } else if (has_length && h.content_length > 0) {
    h.body = BodyFraming::kLength;
  }
  h.keep_alive = h.minor == 1 ? !conn_close : (conn_keep_alive && !conn_close);
  out.state = HeadParse::State::kDone;
  out.consumed = end;
  return out;
}

ChunkedBody::Step ChunkedBody::feed(std::string_view in, std::string& out) {
  Step st;
  auto error = [&st](const char* what) {
    st.state = State::kError;
    st.error = what;
    return st;
  };
  while (st.consumed < in.size() && phase_ != Phase::kDone) {
    std::string_view rest = in.substr(st.consumed);
    if (phase_ == Phase::kData) {
      std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(left_, rest.size()));
      out.append(rest.data(), n);
      left_ -= n;
      st.consumed += n;
      if (left_ == 0) {
        phase_ = Phase::kDataEnd;
      }
      continue;
    }
    // Line phases: assemble up to LF.
    std::size_t nl = rest.find('\n');
    std::size_t take = nl == std::string_view::npos ? rest.size() : nl + 1;
    if (line_.size() + take > kMaxLine) {
      return error("chunked body line too long");
    }
    line_.append(rest.data(), take);
    st.consumed += take;
    if (nl == std::string_view::npos) {
      break;
    }
    // Inside a body every line ends in CRLF: a bare LF here is where a front proxy and we
    // could disagree on the end of the body (smuggling), so it is refused, unlike in heads.
    std::string_view line(line_);
    if (line.size() < 2 || line[line.size() - 2] != '\r') {
      return error("chunked body line without CRLF");
    }
    line.remove_suffix(2);
    if (line.find('\r') != std::string_view::npos) {
      return error("bare CR in a chunked body");
    }
    if (phase_ == Phase::kDataEnd) {
      if (!line.empty()) {
        return error("chunk data longer than its size");
      }
      phase_ = Phase::kSize;
    } else if (phase_ == Phase::kSize) {
      const std::size_t semi = line.find(';');
      std::string_view size = line.substr(0, semi);
      if (semi != std::string_view::npos) {
        while (!size.empty() && (size.back() == ' ' || size.back() == '\t')) {
          size.remove_suffix(1);  // BWS before a chunk extension
        }
        if (!is_field_value(line.substr(semi))) {
          return error("control character in a chunk extension");
        }
      }
      while (size.size() > 1 && size.front() == '0') {
        size.remove_prefix(1);  // leading zeros are not digits of the size
      }
      if (size.empty() || size.size() > 15) {
        return error("malformed chunk size");
      }
      std::uint64_t n = 0;
      for (char c : size) {
        int d = (c >= '0' && c <= '9')   ? c - '0'
                : (c >= 'a' && c <= 'f') ? c - 'a' + 10
                : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                         : -1;
        if (d < 0) {
          return error("malformed chunk size");
        }
        n = n * 16 + static_cast<std::uint64_t>(d);
      }
      if (n > max_body_ - total_) {
        st.too_large = true;
        return error("request body too large");
      }
      total_ += n;
      left_ = n;
      phase_ = n == 0 ? Phase::kTrailer : Phase::kData;
    } else {  // kTrailer: fields until the blank line
      if (line.empty()) {
        phase_ = Phase::kDone;
      } else {
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos || !is_token(line.substr(0, colon)) ||
            !is_field_value(line.substr(colon + 1))) {
          return error("malformed trailer field");
        }
      }
    }
    line_.clear();
  }
  if (phase_ == Phase::kDone) {
    st.state = State::kDone;
  }
  return st;
}

}  // namespace proxy
