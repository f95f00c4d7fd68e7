// Text from outside (object keys decoded from a client's URL, S3 error messages, upstream
// headers) made safe to put in a log line: one line, bounded, no terminal escapes, valid UTF-8.
// Pure. Tricky: a key may be 30 KB of invalid UTF-8; the work is bounded by `max`, not the input.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace s3 {

// Returns `text` with every byte that could mislead a log reader written as `\xHH` (uppercase
// hex): control characters (0x00-0x1F, 0x7F, and the C1 controls U+0080-U+009F, as the two
// bytes of their encoding), backslash and double quote (so the result can sit between quotes
// and be unescaped unambiguously), and every byte >= 0x80 that is not part of a valid UTF-8
// sequence (overlong forms, surrogates and code points above U+10FFFF are invalid). Valid
// UTF-8 otherwise passes through unchanged.
// At most `max` bytes of that escaped text are kept, cut between two characters (never inside
// an escape or a UTF-8 sequence); when anything is cut, "...(+N bytes)" follows, N being how many
// bytes of `text` were left out. So the result is at most max + 32 bytes. Reads at most about
// `max` bytes of `text`. Thread-safe.
std::string printable(std::string_view text, std::size_t max = 256);

}  // namespace s3
