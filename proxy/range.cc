// Range header parsing by hand: the grammar is tiny and no Debian library exposes it. Fitting
// sorts and merges, so the answer's size is bounded by the object's, not by the header's.
#include "proxy/range.h"

#include <algorithm>
#include <charconv>

#include "proxy/http_text.h"

namespace proxy {
namespace {

std::optional<std::uint64_t> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 19) {
    return std::nullopt;
  }
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

std::optional<std::vector<RangeSpec>> parse_range(std::string_view header) {
  if (header.size() > kMaxRangeHeader ||
      static_cast<std::size_t>(std::count(header.begin(), header.end(), ',')) >= kMaxRangeParts) {
    return std::nullopt;
  }
  header = trim_ows(header);
  constexpr std::string_view kUnit = "bytes=";
  if (header.size() < kUnit.size()) {
    return std::nullopt;
  }
  for (std::size_t i = 0; i < kUnit.size(); ++i) {  // the unit is case-insensitive
    char c = header[i];
    if (c >= 'A' && c <= 'Z') {
      c = static_cast<char>(c - 'A' + 'a');
    }
    if (c != kUnit[i]) {
      return std::nullopt;
    }
  }
  header.remove_prefix(kUnit.size());
  std::vector<RangeSpec> specs;
  while (true) {
    std::size_t comma = header.find(',');
    std::string_view item = trim_ows(header.substr(0, comma));
    if (!item.empty()) {  // RFC 9110 allows empty list elements
      std::size_t dash = item.find('-');
      if (dash == std::string_view::npos) {
        return std::nullopt;
      }
      std::string_view a = trim_ows(item.substr(0, dash));
      std::string_view b = trim_ows(item.substr(dash + 1));
      RangeSpec spec;
      if (a.empty()) {
        auto n = parse_u64(b);
        if (!n) {
          return std::nullopt;
        }
        spec.suffix = true;
        spec.first = *n;
      } else {
        auto first = parse_u64(a);
        if (!first) {
          return std::nullopt;
        }
        spec.first = *first;
        if (!b.empty()) {
          auto last = parse_u64(b);
          if (!last || *last < *first) {
            return std::nullopt;
          }
          spec.last = *last;
        }
      }
      specs.push_back(spec);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    header.remove_prefix(comma + 1);
  }
  if (specs.empty()) {
    return std::nullopt;
  }
  return specs;
}

RangeDecision resolve_ranges(const std::vector<RangeSpec>& specs, std::uint64_t size) {
  RangeDecision d;
  if (specs.size() > kMaxRanges) {
    return d;  // kFull
  }
  std::vector<ByteSpan>& spans = d.spans;
  spans.reserve(specs.size());
  for (const RangeSpec& s : specs) {
    if (s.suffix) {
      if (s.first == 0 || size == 0) {
        continue;  // "-0" selects nothing
      }
      std::uint64_t n = s.first < size ? s.first : size;
      spans.push_back({size - n, size - 1});
    } else {
      if (s.first >= size) {
        continue;
      }
      std::uint64_t last = s.last && *s.last < size ? *s.last : size - 1;
      spans.push_back({s.first, last});
    }
  }
  if (spans.empty()) {
    d.kind = RangeKind::kUnsatisfiable;
    return d;
  }
  std::sort(spans.begin(), spans.end(),
            [](const ByteSpan& a, const ByteSpan& b) { return a.first < b.first; });
  std::size_t kept = 0;  // merged in place: spans[0, kept] are final
  for (std::size_t i = 1; i < spans.size(); ++i) {
    // last < size, so last + 1 cannot overflow.
    if (spans[i].first <= spans[kept].last + 1) {
      spans[kept].last = std::max(spans[kept].last, spans[i].last);
    } else {
      spans[++kept] = spans[i];
    }
  }
  spans.resize(kept + 1);
  std::uint64_t total = 0;
  for (const ByteSpan& s : spans) {
    total += s.length();  // disjoint parts of the object: at most size
  }
  if (spans.size() > 1 && kMultipartPartOverhead * spans.size() > size - total) {
    spans.clear();
    return d;  // kFull: the multipart answer would not be smaller than the object
  }
  d.kind = RangeKind::kPartial;
  return d;
}

}  // namespace proxy
