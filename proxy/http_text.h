// Small text helpers for HTTP header values, shared by the pure parsers of proxy/.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace proxy {

// Strips optional whitespace (RFC 9110 OWS: spaces and tabs) from both ends.
inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

inline char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// ASCII case-insensitive equality (header names, tokens, host names).
inline bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

// `s` in ASCII lower case.
inline std::string ascii_lowered(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
  return out;
}

// Calls f(member) for each comma-separated member of a list value, trimmed of OWS, empty
// members included (Cache-Control, Connection, Vary and request header values).
template <typename F>
void for_each_list_member(std::string_view v, F f) {
  std::size_t i = 0;
  while (i <= v.size()) {
    std::size_t j = v.find(',', i);
    if (j == std::string_view::npos) {
      j = v.size();
    }
    f(trim_ows(v.substr(i, j - i)));
    i = j + 1;
  }
}

// Header fields as a list of (name, value), in order: request heads, responses, origin answers.
using Headers = std::vector<std::pair<std::string, std::string>>;

// The value of the first field named `name` (case-insensitive), or nullptr. Lives as long as
// the list is not changed.
inline const std::string* find_field(const Headers& fields, std::string_view name) {
  for (const auto& [k, v] : fields) {
    if (iequals(k, name)) {
      return &v;
    }
  }
  return nullptr;
}

}  // namespace proxy
