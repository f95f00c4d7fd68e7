// Micro benchmarks of Range handling (proxy/range.h): parse_range followed by resolve_ranges, as
// done on every client request that carries a Range, for one closed range, one suffix range,
// an 8-range header (multipart/byteranges) against a 20 GiB object, and hostile headers: 16 and
// 64 overlapping "0-" (merged to one span; answered whole) and 4 KiB of commas (rejected).
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
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
        7);  // the last two overlap and merge
}
BENCHMARK(BM_RangeEight);

std::string repeated(std::string_view item, int n) {
  std::string h = "bytes=";
  for (int i = 0; i < n; ++i) {
    h += i == 0 ? "" : ",";
    h += item;
  }
  return h;
}

void BM_RangeOverlapping16(benchmark::State& state) { range(state, repeated("0-", 16), 1); }
BENCHMARK(BM_RangeOverlapping16);

void BM_RangeOverlapping64(benchmark::State& state) { range(state, repeated("0-", 64), 0); }
BENCHMARK(BM_RangeOverlapping64);

void BM_RangeCommas4KiB(benchmark::State& state) {
  const std::string header = "bytes=0-0" + std::string(4096 - 9, ',');
  for (auto _ : state) {
    auto specs = proxy::parse_range(header);
    benchmark::DoNotOptimize(specs);
  }
}
BENCHMARK(BM_RangeCommas4KiB);

}  // namespace
