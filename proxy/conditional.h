// Conditional requests (RFC 9110 §13): If-Match, If-Unmodified-Since, If-None-Match,
// If-Modified-Since and If-Range, evaluated in the RFC's order against a stored validator pair.
// Pure. Malformed dates are ignored, as the RFC requires.
#pragma once

#include <ctime>
#include <string>
#include <string_view>

namespace proxy {

struct Conditions {
  std::string if_match;
  std::string if_none_match;
  std::string if_modified_since;
  std::string if_unmodified_since;
  std::string if_range;
};

struct Validators {
  std::string etag;                // as stored, quotes included; may be empty
  std::time_t last_modified = -1;  // -1 when unknown
};

enum class Precondition { kProceed, kNotModified, kFailed };

// For GET/HEAD. kFailed means 412, kNotModified means 304.
Precondition evaluate(const Conditions& c, const Validators& v);

// True when a Range may be honoured: no If-Range, or it matches (strong ETag comparison, or an
// HTTP-date exactly equal to Last-Modified).
bool if_range_allows(const Conditions& c, const Validators& v);

// ETag comparison helpers. `list` is an If-Match/If-None-Match value ("*" or a list).
bool etag_list_matches(std::string_view list, std::string_view etag, bool weak);

}  // namespace proxy
