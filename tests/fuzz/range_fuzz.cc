// Fuzz target: Range header parsing and resolution (proxy/range.h). Whatever the header, a
// satisfiable answer never carries more bytes than the object, spans are in bounds and sorted.
#include <cstdint>
#include <string_view>

#include "conf/check.h"
#include "proxy/range.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view header(reinterpret_cast<const char*>(data), size);
  auto specs = proxy::parse_range(header);
  if (!specs) {
    return 0;
  }
  for (std::uint64_t object : {0ull, 1ull, 100ull, 10000ull, 1ull << 40}) {
    proxy::RangeDecision d = proxy::resolve_ranges(*specs, object);
    std::uint64_t total = 0;
    std::uint64_t prev_end = 0;
    for (const auto& s : d.spans) {
      TUSK_CHECK(s.first <= s.last && s.last < object);
      TUSK_CHECK(total == 0 || s.first > prev_end);  // sorted, disjoint, not adjacent
      total += s.length();
      prev_end = s.last + 1;
    }
    TUSK_CHECK(total <= object);
  }
  return 0;
}
