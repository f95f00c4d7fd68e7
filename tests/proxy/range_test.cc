// Table-driven tests of Range parsing and fitting (RFC 9110 §14).
#include "proxy/range.h"

#include <gtest/gtest.h>

namespace proxy {
namespace {

struct ParseCase {
  const char* header;
  bool valid;
  std::vector<RangeSpec> specs;
};

class ParseRangeTest : public testing::TestWithParam<ParseCase> {};

TEST_P(ParseRangeTest, Parses) {
  const ParseCase& c = GetParam();
  auto got = parse_range(c.header);
  ASSERT_EQ(got.has_value(), c.valid) << c.header;
  if (c.valid) {
    EXPECT_EQ(*got, c.specs) << c.header;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseRangeTest,
    testing::Values(ParseCase{"bytes=0-9", true, {{false, 0, 9}}},
                    ParseCase{"bytes=5-", true, {{false, 5, std::nullopt}}},
                    ParseCase{"bytes=-100", true, {{true, 100, std::nullopt}}},
                    ParseCase{"BYTES=1-2", true, {{false, 1, 2}}},
                    ParseCase{"bytes= 0-1 , 4-5", true, {{false, 0, 1}, {false, 4, 5}}},
                    ParseCase{"bytes=0-1,,4-", true, {{false, 0, 1}, {false, 4, std::nullopt}}},
                    ParseCase{"bytes=0-0,-1", true, {{false, 0, 0}, {true, 1, std::nullopt}}},
                    ParseCase{"bytes=9-1", false, {}},                    // first > last
                    ParseCase{"bytes=", false, {}},                       // empty set
                    ParseCase{"bytes=a-b", false, {}},                    // garbage
                    ParseCase{"bytes=-", false, {}},                      // neither bound
                    ParseCase{"items=0-1", false, {}},                    // other unit
                    ParseCase{"bytes 0-1", false, {}},                    // missing '='
                    ParseCase{"bytes=1-2-3", false, {}},                  // two dashes
                    ParseCase{"bytes=+1-2", false, {}},                   // sign
                    ParseCase{"bytes=99999999999999999999-", false, {}},  // overflow
                    ParseCase{"", false, {}}));

TEST(ParseRange, TooManyRangesIsMalformed) {
  std::string h = "bytes=";
  for (std::size_t i = 0; i <= kMaxRanges; ++i) {
    h += std::to_string(i) + "-" + std::to_string(i) + ",";
  }
  EXPECT_FALSE(parse_range(h).has_value());
}

struct ResolveCase {
  const char* header;
  std::uint64_t size;
  RangeKind kind;
  std::vector<ByteSpan> spans;
};

class ResolveRangeTest : public testing::TestWithParam<ResolveCase> {};

TEST_P(ResolveRangeTest, Resolves) {
  const ResolveCase& c = GetParam();
  auto specs = parse_range(c.header);
  ASSERT_TRUE(specs) << c.header;
  RangeDecision d = resolve_ranges(*specs, c.size);
  EXPECT_EQ(d.kind, c.kind) << c.header;
  EXPECT_EQ(d.spans, c.spans) << c.header;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ResolveRangeTest,
    testing::Values(
        ResolveCase{"bytes=0-9", 100, RangeKind::kPartial, {{0, 9}}},
        ResolveCase{"bytes=90-200", 100, RangeKind::kPartial, {{90, 99}}},  // clamped
        ResolveCase{"bytes=50-", 100, RangeKind::kPartial, {{50, 99}}},
        ResolveCase{"bytes=-10", 100, RangeKind::kPartial, {{90, 99}}},
        ResolveCase{"bytes=-1000", 100, RangeKind::kPartial, {{0, 99}}},  // longer than object
        ResolveCase{"bytes=-0", 100, RangeKind::kUnsatisfiable, {}},
        ResolveCase{"bytes=100-", 100, RangeKind::kUnsatisfiable, {}},
        ResolveCase{"bytes=100-200", 100, RangeKind::kUnsatisfiable, {}},
        ResolveCase{"bytes=0-0", 0, RangeKind::kUnsatisfiable, {}},
        ResolveCase{"bytes=-5", 0, RangeKind::kUnsatisfiable, {}},
        ResolveCase{"bytes=0-1,200-300,-2", 100, RangeKind::kPartial, {{0, 1}, {98, 99}}},
        ResolveCase{"bytes=99-99", 100, RangeKind::kPartial, {{99, 99}}}));

}  // namespace
}  // namespace proxy
