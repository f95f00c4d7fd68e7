// Table-driven tests of Range parsing and fitting (RFC 9110 §14).
#include "proxy/range.h"

#include <gtest/gtest.h>

#include <iterator>
#include <string>

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

std::string repeat(std::string_view item, std::size_t n) {
  std::string h = "bytes=";
  for (std::size_t i = 0; i < n; ++i) {
    h += i == 0 ? "" : ",";
    h += item;
  }
  return h;
}

TEST(ParseRange, PartsUpToTheLimitParse) {
  auto got = parse_range(repeat("0-0", kMaxRangeParts));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->size(), kMaxRangeParts);
}

TEST(ParseRange, TooManyPartsIsMalformed) {
  EXPECT_FALSE(parse_range(repeat("0-0", kMaxRangeParts + 1)).has_value());
  // Empty list elements count too: they cost a scan each.
  EXPECT_FALSE(parse_range("bytes=0-0" + std::string(kMaxRangeParts, ',')).has_value());
  EXPECT_TRUE(parse_range("bytes=0-0" + std::string(kMaxRangeParts - 1, ',')).has_value());
}

TEST(ParseRange, LongHeaderIsMalformed) {
  std::string h = "bytes=0-0";
  h += std::string(kMaxRangeHeader - h.size(), ' ');
  EXPECT_TRUE(parse_range(h).has_value());  // exactly at the limit
  h += ' ';
  EXPECT_FALSE(parse_range(h).has_value());
  EXPECT_FALSE(parse_range(std::string(1 << 20, ',')).has_value());
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
        ResolveCase{"bytes=0-1,2000-3000,-2", 1000, RangeKind::kPartial, {{0, 1}, {998, 999}}},
        ResolveCase{"bytes=99-99", 100, RangeKind::kPartial, {{99, 99}}},
        // Sorted, and overlapping or adjacent ranges merged: one span left is a single part.
        ResolveCase{"bytes=0-99,50-199,200-299", 1000, RangeKind::kPartial, {{0, 299}}},
        ResolveCase{"bytes=500-599,0-9", 1000, RangeKind::kPartial, {{0, 9}, {500, 599}}},
        ResolveCase{"bytes=-10,0-9", 1000, RangeKind::kPartial, {{0, 9}, {990, 999}}},
        ResolveCase{"bytes=0-9,10-19", 1000, RangeKind::kPartial, {{0, 19}}},
        ResolveCase{"bytes=0-9,11-19", 1000, RangeKind::kPartial, {{0, 9}, {11, 19}}},
        ResolveCase{"bytes=5-9,0-3,4-4,6-7", 1000, RangeKind::kPartial, {{0, 9}}},
        ResolveCase{"bytes=0-,0-", 1000, RangeKind::kPartial, {{0, 999}}},
        ResolveCase{"bytes=900-,-50,2000-", 1000, RangeKind::kPartial, {{900, 999}}},
        // Several parts whose bytes plus framing are not smaller than the object: 200.
        ResolveCase{"bytes=0-9,11-19", 100, RangeKind::kFull, {}},
        ResolveCase{"bytes=0-0,2-2", 3, RangeKind::kFull, {}}));

std::vector<RangeSpec> specs_of(const std::string& header) { return parse_range(header).value(); }

TEST(ResolveRanges, UpToMaxRangesArePartial) {
  RangeDecision d = resolve_ranges(specs_of(repeat("0-", kMaxRanges)), 64u << 20);
  EXPECT_EQ(d.kind, RangeKind::kPartial);
  EXPECT_EQ(d.spans, (std::vector<ByteSpan>{{0, (64u << 20) - 1}}));
}

TEST(ResolveRanges, MoreThanMaxRangesIsTheWholeObject) {
  // 64 x "0-" on 64 MiB once answered a 4 GiB multipart body.
  for (std::size_t n : {kMaxRanges + 1, std::size_t{64}, kMaxRangeParts}) {
    RangeDecision d = resolve_ranges(specs_of(repeat("0-", n)), 64u << 20);
    EXPECT_EQ(d.kind, RangeKind::kFull) << n;
    EXPECT_TRUE(d.spans.empty()) << n;
  }
  // Counted as written: even unsatisfiable ones, even when they would merge.
  EXPECT_EQ(resolve_ranges(specs_of(repeat("5000-", kMaxRanges + 1)), 1000).kind, RangeKind::kFull);
}

TEST(ResolveRanges, PartialNeverExceedsTheObject) {
  // Every header of up to kMaxRanges ranges drawn from a small grid: a kPartial answer's bytes
  // plus framing stay within the object, and its spans are sorted, disjoint and not adjacent.
  const std::uint64_t size = 4096;
  const char* items[] = {"0-", "0-99", "100-199", "50-150", "-1", "-2000", "4000-4095", "300-300"};
  for (unsigned mask = 1; mask < (1u << std::size(items)); ++mask) {
    std::string h = "bytes=";
    for (std::size_t i = 0; i < std::size(items); ++i) {
      if (mask & (1u << i)) {
        h += items[i];
        h += ",";
      }
    }
    RangeDecision d = resolve_ranges(specs_of(h), size);
    if (d.kind != RangeKind::kPartial) {
      continue;
    }
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < d.spans.size(); ++i) {
      total += d.spans[i].length();
      if (i > 0) {
        EXPECT_GT(d.spans[i].first, d.spans[i - 1].last + 1) << h;
      }
    }
    std::uint64_t framing = d.spans.size() > 1 ? kMultipartPartOverhead * d.spans.size() : 0;
    EXPECT_LE(total + framing, size) << h;
  }
}

}  // namespace
}  // namespace proxy
