// Micro benchmarks of Range handling (proxy/range.h): parse_range followed by resolve_ranges, as
// done on every client request that carries a Range, for one closed range, one suffix range and
// an 8-range header (multipart/byteranges) against a 20 GiB object.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string_view>

#include "proxy/range.h"

namespace {

constexpr std::uint64_t kObjectSize = 20ull << 30;

void range(benchmark::State& state, std::string_view header, std::size_t spans) {
  auto check = proxy::parse_range(header);
  if (!check || proxy::resolve_ranges(*check, kObjectSize).spans.size() != spans) {
    state.SkipWithError("the header did not parse to the expected spans");
    return;
  }
  for (auto _ : state) {
    auto specs = proxy::parse_range(header);
    benchmark::DoNotOptimize(specs);
    proxy::RangeDecision d = proxy::resolve_ranges(*specs, kObjectSize);
    benchmark::DoNotOptimize(d);
  }
}

void BM_RangeSingle(benchmark::State& state) { range(state, "bytes=8388608-16777215", 1); }
BENCHMARK(BM_RangeSingle);

void BM_RangeSuffix(benchmark::State& state) { range(state, "bytes=-65536", 1); }
BENCHMARK(BM_RangeSuffix);

void BM_RangeEight(benchmark::State& state) {
  range(state,
        "bytes=0-511, 4096-8191, 1048576-2097151, 8388608-16777215, 104857600-104857699, "
        "1073741824-1073750015, 10737418240-, -4096",
        8);
}
BENCHMARK(BM_RangeEight);

}  // namespace
