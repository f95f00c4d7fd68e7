// Byte ranges (RFC 9110 §14): parsing a client's Range header and fitting it to an object size.
// Pure. A malformed header is ignored (the caller answers 200), an unsatisfiable one gives 416.
// Tricky: suffix ranges (-n) and open ranges (a-) are resolved here to absolute positions, so
// nothing downstream (and never the upstream) sees a suffix range.
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

// Ranges beyond this many make the header count as malformed (a cheap amplification defence;
// RFC 9110 §14.2 lets a server ignore such requests).
inline constexpr std::size_t kMaxRanges = 64;

// nullopt: absent or malformed ("bytes=" missing, garbage, first > last, too many ranges).
std::optional<std::vector<RangeSpec>> parse_range(std::string_view header);

struct ByteSpan {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
  std::uint64_t length() const { return last - first + 1; }
  bool operator==(const ByteSpan&) const = default;
};

enum class RangeKind { kFull, kPartial, kUnsatisfiable };
struct RangeDecision {
  RangeKind kind = RangeKind::kFull;
  std::vector<ByteSpan> spans;  // kPartial: the satisfiable ranges in request order, clamped
};

// Fits parsed specs to an object of `size` bytes. Unsatisfiable specs are dropped; none left is
// kUnsatisfiable.
RangeDecision resolve_ranges(const std::vector<RangeSpec>& specs, std::uint64_t size);

}  // namespace proxy
