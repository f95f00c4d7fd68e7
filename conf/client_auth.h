// Who may read a route (issue 15): the contents of a route's bearer-token file and client-keys
// file, parsed and bounded here (pure: the loader reads the files, proxy/access.h decides).
// Secrets never appear in an error message: errors name the line, not its text.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "conf/result.h"

namespace conf {

// A route's `auth`: anyone (subject to `allow`), a bearer token from `auth_token_file`, or a
// presigned URL (SigV4 or SigV2) made with a key pair of `client_keys_file`.
enum class Auth { kNone, kToken, kPresigned };

inline constexpr std::size_t kMaxTokens = 256;     // per file
inline constexpr std::size_t kMinTokenBytes = 16;  // shorter is guessable: refused
inline constexpr std::size_t kMaxTokenBytes = 4096;
inline constexpr std::size_t kMaxClientKeys = 1024;  // per file
inline constexpr std::size_t kMaxAuthFileBytes = 1 << 20;

// One token per line. Blank lines and lines starting with '#' are skipped; a trailing "\r" and
// surrounding spaces are trimmed. A token is printable ASCII without spaces (what a Bearer
// credential can carry: RFC 6750 b64token and more), 16..4096 bytes. Duplicates are refused, as
// is a file with no token. Error: "line N: ..." (never the token).
Result<std::vector<std::string>, std::string> parse_token_file(std::string_view text);

// A token as a route keeps it: its SHA-256 (32 raw bytes). Requests are checked by comparing
// the digest of the token they present with every digest, in constant time; the token itself
// is not kept after loading.
std::string token_digest(std::string_view token);

// One ACCESS_KEY:SECRET_KEY per line (blank lines and '#' comments skipped). The access key is
// 1..128 of A-Z a-z 0-9 . _ - (it travels in URLs); the secret is 1..256 printable bytes
// without spaces. A repeated access key is refused. Error: "line N: ..." (never the secret).
Result<std::map<std::string, std::string>, std::string> parse_client_keys(std::string_view text);

}  // namespace conf
