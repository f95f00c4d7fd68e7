// printable(): a bounded, escaping copy of outside text for log lines. UTF-8 validity is checked
// by hand (the table of RFC 3629 §4): no Debian library offers a validator that also tells how
// long the valid prefix is without copying.
#include "s3/printable.h"

#include <cstdint>

namespace s3 {
namespace {

// Length of the valid UTF-8 sequence that starts `s`, or 0 when its first byte does not start
// one. `s` is not empty and its first byte is >= 0x80.
std::size_t utf8_length(std::string_view s) {
  auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(s[i]); };
  const std::uint8_t b0 = byte(0);
  std::size_t n = 0;
  std::uint8_t lo = 0x80;  // allowed range of the second byte
  std::uint8_t hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    lo = b0 == 0xE0 ? 0xA0 : 0x80;  // no overlong forms
    hi = b0 == 0xED ? 0x9F : 0xBF;  // no surrogates
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    lo = b0 == 0xF0 ? 0x90 : 0x80;  // no overlong forms
    hi = b0 == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
  } else {
    return 0;  // a continuation byte, C0/C1 (overlong) or F5-FF
  }
  if (s.size() < n || byte(1) < lo || byte(1) > hi) {
    return 0;
  }
  for (std::size_t i = 2; i < n; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) {
      return 0;
    }
  }
  return n;
}

bool needs_escape(std::uint8_t c) { return c < 0x20 || c == 0x7F || c == '\\' || c == '"'; }

// C1 controls (U+0080-U+009F) are two bytes: C2 80 to C2 9F.
bool is_c1_control(std::string_view seq) {
  return seq.size() == 2 && static_cast<std::uint8_t>(seq[0]) == 0xC2 &&
         static_cast<std::uint8_t>(seq[1]) <= 0x9F;
}

void append_escaped(std::string& out, std::string_view bytes) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (char ch : bytes) {
    const auto c = static_cast<std::uint8_t>(ch);
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 0xF];
  }
}

}  // namespace

std::string printable(std::string_view text, std::size_t max) {
  std::string out;
  out.reserve(text.size() < max ? text.size() : max);
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<std::uint8_t>(text[i]);
    std::size_t n = 1;
    bool escape = false;
    if (c < 0x80) {
      escape = needs_escape(c);
    } else if (std::size_t len = utf8_length(text.substr(i)); len != 0) {
      n = len;
      escape = is_c1_control(text.substr(i, n));
    } else {
      escape = true;  // a byte that is not part of valid UTF-8: escaped alone, then resync
    }
    const std::size_t cost = escape ? 4 * n : n;
    if (out.size() + cost > max) {
      break;
    }
    if (escape) {
      append_escaped(out, text.substr(i, n));
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  if (i < text.size()) {
    out += "...(+" + std::to_string(text.size() - i) + " bytes)";
  }
  return out;
}

}  // namespace s3
