#include "proxy/fetch_rules.h"

#include <algorithm>
#include <charconv>
#include <string>

#include "s3/printable.h"

namespace proxy {

std::optional<ContentRange> parse_content_range(std::string_view v) {
  ContentRange cr;
  if (v.starts_with("bytes ")) {
    v.remove_prefix(6);
    cr.unit = true;
  }
  auto dash = v.find('-');
  auto slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash) {
    return std::nullopt;
  }
  auto num = [](std::string_view s, std::uint64_t& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc() && p == s.data() + s.size();
  };
  if (!num(v.substr(0, dash), cr.first) || !num(v.substr(dash + 1, slash - dash - 1), cr.last) ||
      cr.last < cr.first) {
    return std::nullopt;
  }
  std::uint64_t t = 0;
  if (num(v.substr(slash + 1), t)) {
    if (cr.unit && t <= cr.last) {
      return std::nullopt;  // RFC 9110 §14.4: a complete length at or below last-pos is invalid
    }
    cr.total = t;
  } else if (v.substr(slash + 1) != "*") {
    return std::nullopt;
  }
  return cr;
}

Answer answer_of(const s3::ResponseHead& h) {
  Answer a;
  a.status = h.status;
  a.length = h.content_length();
  a.content_range = h.header("content-range");
  a.range = parse_content_range(a.content_range);
  a.etag = h.header("etag");
  return a;
}

namespace {

Judgement accept(std::uint64_t size = 0) { return Judgement{Verdict::kAccept, size, {}}; }
Judgement reject(std::string why) { return Judgement{Verdict::kReject, 0, std::move(why)}; }
std::string status_text(int status) { return "(status " + std::to_string(status) + ")"; }

Judgement judge_probe(const Answer& a, std::uint64_t first, std::uint64_t end) {
  const auto& cr = a.range;
  // RFC 9110 §14.4: "bytes a-b/n" states the complete length n; the answer must be exactly the
  // asked span, cut at the object's end.
  if (a.status == 206 && cr && cr->unit && cr->total && cr->first == first && a.length &&
      *a.length == cr->last - cr->first + 1 && cr->last == std::min(end - 1, *cr->total - 1)) {
    return accept(*cr->total);
  }
  if (a.status == 200 && cr) {
    return Judgement{Verdict::kWalrusRanges, 0, {}};
  }
  if (a.status == 200 && !cr && a.length) {
    return Judgement{Verdict::kRangesIgnored, *a.length, {}};
  }
  if (a.status == 206 || a.status == 200) {
    return reject("upstream answered the range probe with an unusable range: '" +
                  s3::printable(a.content_range) + "'");
  }
  return reject("unexpected status " + std::to_string(a.status) + " to the range probe");
}

Judgement judge_range(const Answer& a, std::uint64_t first, std::uint64_t end, std::uint64_t size) {
  const auto& cr = a.range;
  const bool exact = cr && cr->first == first && cr->last == end - 1 && a.length &&
                     *a.length == end - first && (!cr->unit || !cr->total || *cr->total == size);
  if (exact && (a.status == 206 || a.status == 200)) {
    return accept(size);
  }
  if (a.status == 200 && !cr && a.length && *a.length == size) {
    return Judgement{Verdict::kRangesIgnored, size, {}};
  }
  return reject("upstream answered a ranged GET with another range: '" +
                s3::printable(a.content_range) + "'");
}

Judgement judge_resume(const Answer& a, std::uint64_t first, std::uint64_t size) {
  const auto& cr = a.range;
  if (cr && (a.status == 206 || a.status == 200) && cr->first == first && cr->last == size - 1 &&
      a.length && *a.length == size - first) {
    return accept(size);
  }
  if (a.status == 200 && !cr && a.length && *a.length == size) {
    return Judgement{Verdict::kRestart, size, {}};
  }
  return reject("unusable answer to a resume request " + status_text(a.status));
}

}  // namespace

Judgement judge(Ask ask, const Answer& a, std::uint64_t first, std::uint64_t end,
                std::uint64_t size) {
  switch (ask) {
    case Ask::kProbeRange:
      return judge_probe(a, first, end);
    case Ask::kProbeHead:
      if (a.status == 200 && a.length) {
        return accept(*a.length);
      }
      return reject("unusable answer to HEAD " + status_text(a.status));
    case Ask::kFirstWhole:
      if (a.status == 200 && a.length) {
        return accept(*a.length);
      }
      return reject("unusable answer to GET " + status_text(a.status));
    case Ask::kRange:
      return judge_range(a, first, end, size);
    case Ask::kResume:
      return judge_resume(a, first, size);
  }
  return reject("internal: unknown request kind");
}

std::optional<RangeMode> range_mode_shown(Ask ask, Verdict v) {
  if (ask == Ask::kProbeRange) {
    switch (v) {
      case Verdict::kAccept:
        return RangeMode::kRanges;
      case Verdict::kWalrusRanges:
        return RangeMode::kWalrus;
      case Verdict::kRangesIgnored:
        return RangeMode::kNoRanges;
      default:
        return std::nullopt;
    }
  }
  // Only a probe confirms ranges: a Walrus range answer is accepted too, and must not undo what
  // the probe learnt.
  if (ask == Ask::kRange && v == Verdict::kRangesIgnored) {
    return RangeMode::kNoRanges;
  }
  return std::nullopt;
}

bool etag_changed(std::string_view pinned, std::string_view answered) {
  return !answered.empty() && !pinned.empty() && answered != pinned;
}

AfterError after_error(Ask ask, bool head_known, s3::Errc code, int attempts, int max_attempts,
                       bool etag_known) {
  if (ask == Ask::kProbeRange && !head_known && code == s3::Errc::kRangeNotSatisfiable) {
    return AfterError::kProbeHead;  // the first chunk lies beyond the object, or it is empty
  }
  bool retriable = false;
  switch (code) {
    case s3::Errc::kRefused:
    case s3::Errc::kTimeout:
    case s3::Errc::kProtocol:
    case s3::Errc::kServer:
      retriable = true;
      break;
    default:
      break;
  }
  if (!retriable || attempts >= max_attempts) {
    return AfterError::kFail;
  }
  if (head_known && !etag_known && (ask == Ask::kRange || ask == Ask::kProbeRange)) {
    // Without an ETag nothing proves that a resumed range is the same object (If-Match cannot
    // be sent). A whole-object GET starts again from byte 0 and is safe.
    return AfterError::kFail;
  }
  return AfterError::kRetry;
}

long backoff_ms(int attempts) { return std::min(5000L, 100L << std::clamp(attempts - 1, 0, 6)); }

Merged merge_not_modified(const Headers& stored, const Headers& answer) {
  // RFC 9111 §3.2: every field the 304 carries replaces the stored lines of that name, except
  // those a stored response never keeps (replayable_headers drops hop-by-hop fields and the
  // framing: Content-Length, Content-Range, Transfer-Encoding, Content-Encoding).
  Merged m;
  Headers fresh = replayable_headers(answer);
  std::erase_if(fresh, [](const auto& h) { return iequals(h.first, "content-md5"); });
  if (const std::string* ct = find_field(answer, "content-type"); ct != nullptr && !ct->empty()) {
    m.content_type = *ct;
  }
  for (const auto& [k, v] : stored) {
    if (find_field(fresh, k) == nullptr) {
      m.stored.emplace_back(k, v);
    }
  }
  m.stored.insert(m.stored.end(), fresh.begin(), fresh.end());
  // Freshness counts from this 304: its Age, and its Date; without one, the stored Date is not
  // used as the answer's (it would make the refreshed entry as old as the first response).
  for (const auto& [k, v] : m.stored) {
    if (!iequals(k, "date") || find_field(answer, "date") != nullptr) {
      m.decide_on.emplace_back(k, v);
    }
  }
  if (const std::string* age = find_field(answer, "age")) {
    m.decide_on.emplace_back("Age", *age);
  }
  return m;
}

}  // namespace proxy
