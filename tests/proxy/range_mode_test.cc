// RangeModes: a learnt fallback is remembered for a while, then the upstream is probed again.
#include "proxy/range_mode.h"

#include <gtest/gtest.h>

namespace proxy {
namespace {

TEST(RangeModes, FallbacksExpireAndAreProbedAgain) {
  RangeModes m;
  const auto t0 = RangeModes::Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ(m.get("walrus", t0), RangeMode::kRanges);  // nothing learnt: probe with ranges
  m.learn("walrus", RangeMode::kNoRanges, t0);
  EXPECT_EQ(m.get("walrus", t0), RangeMode::kNoRanges);
  EXPECT_EQ(m.get("walrus", t0 + RangeModes::kRemember - std::chrono::seconds(1)),
            RangeMode::kNoRanges);
  EXPECT_EQ(m.get("walrus", t0 + RangeModes::kRemember), RangeMode::kRanges);  // re-probe
  EXPECT_EQ(m.get("s3", t0), RangeMode::kRanges);                              // per upstream

  m.learn("walrus", RangeMode::kWalrus, t0);
  EXPECT_EQ(m.get("walrus", t0 + std::chrono::minutes(1)), RangeMode::kWalrus);
  m.learn("walrus", RangeMode::kRanges, t0 + std::chrono::minutes(2));  // a proper 206 again
  EXPECT_EQ(m.get("walrus", t0 + std::chrono::minutes(2)), RangeMode::kRanges);
}

}  // namespace
}  // namespace proxy
