#include "proxy/conditional.h"

#include "proxy/http_text.h"
#include "s3/sign.h"

namespace proxy {
namespace {

bool is_weak(std::string_view e) { return e.size() >= 2 && e[0] == 'W' && e[1] == '/'; }
std::string_view opaque(std::string_view e) { return is_weak(e) ? e.substr(2) : e; }

}  // namespace

bool etag_list_matches(std::string_view list, std::string_view etag, bool weak) {
  list = trim_ows(list);
  if (etag.empty()) {
    return false;
  }
  if (list == "*") {
    return true;
  }
  // Entity tags are quoted strings that cannot contain '"', so splitting on ',' outside quotes
  // is enough.
  std::size_t i = 0;
  while (i < list.size()) {
    while (i < list.size() && (list[i] == ' ' || list[i] == '\t' || list[i] == ',')) {
      ++i;
    }
    std::size_t start = i;
    if (list.compare(i, 2, "W/") == 0) {
      i += 2;
    }
    if (i >= list.size() || list[i] != '"') {
      // Not an entity tag: skip to the next comma.
      while (i < list.size() && list[i] != ',') {
        ++i;
      }
      continue;
    }
    std::size_t close = list.find('"', i + 1);
    if (close == std::string_view::npos) {
      return false;
    }
    std::string_view candidate = list.substr(start, close + 1 - start);
    i = close + 1;
    if (weak) {
      if (opaque(candidate) == opaque(etag)) {
        return true;
      }
    } else if (!is_weak(candidate) && !is_weak(etag) && candidate == etag) {
      return true;
    }
  }
  return false;
}

Precondition evaluate(const Conditions& c, const Validators& v) {
  if (!c.if_match.empty()) {
    if (!etag_list_matches(c.if_match, v.etag, /*weak=*/false)) {
      return Precondition::kFailed;
    }
  } else if (!c.if_unmodified_since.empty()) {
    std::time_t t = s3::parse_http_date(c.if_unmodified_since);
    if (t != -1 && v.last_modified != -1 && v.last_modified > t) {
      return Precondition::kFailed;
    }
  }
  if (!c.if_none_match.empty()) {
    if (etag_list_matches(c.if_none_match, v.etag, /*weak=*/true)) {
      return Precondition::kNotModified;
    }
  } else if (!c.if_modified_since.empty()) {
    std::time_t t = s3::parse_http_date(c.if_modified_since);
    if (t != -1 && v.last_modified != -1 && v.last_modified <= t) {
      return Precondition::kNotModified;
    }
  }
  return Precondition::kProceed;
}

bool if_range_allows(const Conditions& c, const Validators& v) {
  std::string_view ir = trim_ows(c.if_range);
  if (ir.empty()) {
    return true;
  }
  if (ir.front() == '"' || ir.starts_with("W/")) {
    return !is_weak(ir) && !is_weak(v.etag) && ir == v.etag;
  }
  std::time_t t = s3::parse_http_date(ir);
  return t != -1 && v.last_modified != -1 && t == v.last_modified;
}

}  // namespace proxy
