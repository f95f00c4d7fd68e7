// Bearer-token and client-key files (conf/client_auth.h).
#include "conf/client_auth.h"

#include <openssl/evp.h>

#include <algorithm>
#include <cstdlib>

namespace conf {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

bool printable_without_space(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

bool access_key_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

// Calls `each(line_number, line)` for every line that is not blank or a comment; stops at the
// first error `each` returns.
template <typename F>
std::string for_each_entry(std::string_view text, F each) {
  std::size_t number = 0;
  while (!text.empty()) {
    ++number;
    const std::size_t end = text.find('\n');
    std::string_view line = trim(text.substr(0, end));
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (line.empty() || line.front() == '#') {
      continue;
    }
    if (std::string error = each(line); !error.empty()) {
      return "line " + std::to_string(number) + ": " + error;
    }
  }
  return {};
}

}  // namespace

Result<std::vector<std::string>, std::string> parse_token_file(std::string_view text) {
  if (text.size() > kMaxAuthFileBytes) {
    return unexpected(std::string("larger than 1 MiB"));
  }
  std::vector<std::string> tokens;
  std::string error = for_each_entry(text, [&](std::string_view line) -> std::string {
    if (line.size() < kMinTokenBytes) {
      return "a token must be at least " + std::to_string(kMinTokenBytes) + " bytes";
    }
    if (line.size() > kMaxTokenBytes) {
      return "a token must be at most " + std::to_string(kMaxTokenBytes) + " bytes";
    }
    if (!printable_without_space(line)) {
      return "a token is printable ASCII without spaces";
    }
    if (std::find(tokens.begin(), tokens.end(), line) != tokens.end()) {
      return "the same token twice";
    }
    if (tokens.size() == kMaxTokens) {
      return "more than " + std::to_string(kMaxTokens) + " tokens";
    }
    tokens.emplace_back(line);
    return {};
  });
  if (!error.empty()) {
    return unexpected(std::move(error));
  }
  if (tokens.empty()) {
    return unexpected(std::string("holds no token"));
  }
  return tokens;
}

std::string token_digest(std::string_view token) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(token.data(), token.size(), md, &len, EVP_sha256(), nullptr) != 1) {
    std::abort();  // SHA-256 is always available in OpenSSL: a failure is a broken library
  }
  return std::string(reinterpret_cast<const char*>(md), len);
}

Result<std::map<std::string, std::string>, std::string> parse_client_keys(std::string_view text) {
  if (text.size() > kMaxAuthFileBytes) {
    return unexpected(std::string("larger than 1 MiB"));
  }
  std::map<std::string, std::string> keys;
  std::string error = for_each_entry(text, [&](std::string_view line) -> std::string {
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      return "expected ACCESS_KEY:SECRET_KEY";
    }
    const std::string_view access = line.substr(0, colon);
    const std::string_view secret = line.substr(colon + 1);
    if (access.empty() || access.size() > 128 ||
        !std::all_of(access.begin(), access.end(), access_key_char)) {
      return "an access key is 1..128 of A-Z a-z 0-9 . _ -";
    }
    if (secret.empty() || secret.size() > 256 || !printable_without_space(secret)) {
      return "a secret key is 1..256 printable bytes without spaces";
    }
    if (keys.size() == kMaxClientKeys) {
      return "more than " + std::to_string(kMaxClientKeys) + " keys";
    }
    if (!keys.emplace(std::string(access), std::string(secret)).second) {
      return "access key '" + std::string(access) + "' twice";
    }
    return {};
  });
  if (!error.empty()) {
    return unexpected(std::move(error));
  }
  if (keys.empty()) {
    return unexpected(std::string("holds no key"));
  }
  return keys;
}

}  // namespace conf
