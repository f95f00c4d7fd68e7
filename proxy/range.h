// Byte ranges (RFC 9110 §14): parsing a client's Range header and fitting it to an object size.
// Pure. A malformed header is ignored (the caller answers 200), an unsatisfiable one gives 416.
// Tricky: suffix ranges (-n) and open ranges (a-) are resolved here to absolute positions, so
// nothing downstream (and never the upstream) sees a suffix range; and a hostile header (many
// overlapping ranges) must never answer more bytes than the whole object, so ranges are merged
// and anything that would not be smaller than the object is answered whole (as nginx does).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

namespace proxy {

struct RangeSpec {
  bool suffix = false;                // "-n": the last n bytes
  std::uint64_t first = 0;            // or suffix length when suffix
  std::optional<std::uint64_t> last;  // inclusive; nullopt for "a-"
  bool operator==(const RangeSpec&) const = default;
};

// A Range header longer than this, or with more comma-separated elements (empty ones included),
// is malformed: it is rejected after one linear scan, before any number is read.
inline constexpr std::size_t kMaxRangeHeader = 4096;
inline constexpr std::size_t kMaxRangeParts = 256;

// nullopt: absent or malformed ("bytes=" missing, garbage, first > last, over the limits above).
std::optional<std::vector<RangeSpec>> parse_range(std::string_view header);

struct ByteSpan {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
  std::uint64_t length() const { return last - first + 1; }
  bool operator==(const ByteSpan&) const = default;
};

// More ranges than this in one header (counted as written, before merging) answer the whole
// object (nginx's max_ranges; RFC 9110 §14.2 lets a server ignore such a Range).
inline constexpr std::size_t kMaxRanges = 16;
// What one part of a multipart/byteranges answer costs at least besides its bytes: the boundary
// line and the Content-Type and Content-Range fields (request.cc builds them; ~70 bytes plus the
// content type and the numbers). An underestimate, so a multipart answer is never refused for
// being larger than the object when it is not.
inline constexpr std::uint64_t kMultipartPartOverhead = 80;

enum class RangeKind { kFull, kPartial, kUnsatisfiable };
struct RangeDecision {
  RangeKind kind = RangeKind::kFull;
  // kPartial: the satisfiable ranges clamped to the object, sorted by position, overlapping and
  // adjacent ones merged (RFC 9110 §15.3.7.2 allows coalescing regardless of request order).
  // One span is a single-part 206, several a multipart/byteranges 206. Empty otherwise.
  std::vector<ByteSpan> spans;
};

// Fits parsed specs to an object of `size` bytes:
//   - more than kMaxRanges specs: kFull (200, the whole object);
//   - unsatisfiable specs are dropped; none left: kUnsatisfiable (416);
//   - the rest are sorted and merged; several spans whose lengths plus kMultipartPartOverhead
//     per span exceed `size`: kFull (the whole object is the smaller answer);
//   - otherwise kPartial with the merged spans.
// So a kPartial answer never carries more than `size` bytes of the object, whatever the header.
RangeDecision resolve_ranges(const std::vector<RangeSpec>& specs, std::uint64_t size);

}  // namespace proxy
