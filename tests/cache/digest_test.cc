// cache/digest.cc: the ETag rule (table) and the in-order digest fed out of order, with and
// without a memory budget, against OpenSSL's MD5 of the whole.
#include "cache/digest.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

namespace cache {
namespace {

std::string md5_of(const std::string& s) {
  Md5 m;
  m.update(s.data(), s.size());
  return m.hex();
}

TEST(DigestTest, Md5OfEtag) {
  struct Case {
    const char* etag;
    const char* md5;
  };
  const Case cases[] = {
      {"\"b1946ac92492d2347c6235b4d2611184\"", "b1946ac92492d2347c6235b4d2611184"},
      {"b1946ac92492d2347c6235b4d2611184", "b1946ac92492d2347c6235b4d2611184"},
      {"\"B1946AC92492D2347C6235B4D2611184\"", "b1946ac92492d2347c6235b4d2611184"},
      {"\"b1946ac92492d2347c6235b4d2611184-2\"", ""},  // multipart
      {"W/\"b1946ac92492d2347c6235b4d2611184\"", ""},  // weak
      {"\"b1946ac92492d2347c6235b4d261118\"", ""},     // 31 digits
      {"\"g1946ac92492d2347c6235b4d2611184\"", ""},    // not hex
      {"", ""},
      {"\"\"", ""},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(md5_of_etag(c.etag), c.md5) << c.etag;
  }
}

TEST(DigestTest, KnownVectors) {
  EXPECT_EQ(md5_of(""), "d41d8cd98f00b204e9800998ecf8427e");
  EXPECT_EQ(md5_of("hello\n"), "b1946ac92492d2347c6235b4d2611184");
}

// Feeds `data` in pieces of `piece` bytes in a shuffled order (a parallel fill), catching up
// after each piece as a fill does when a chunk completes.
std::string ordered(const std::string& data, std::size_t piece, std::int64_t budget_bytes,
                    std::uint64_t* reread, std::int64_t* budget_after, unsigned seed) {
  std::atomic<std::int64_t> budget{budget_bytes};
  std::vector<std::size_t> order;
  for (std::size_t off = 0; off < data.size(); off += piece) {
    order.push_back(off);
  }
  std::mt19937 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<bool> written(order.size());
  std::string hex;
  {
    OrderedDigest d(data.size(), &budget);
    auto read = [&](std::uint64_t off, char* buf, std::size_t n) {
      // Only written bytes may be read back.
      for (std::uint64_t i = off; i < off + n; ++i) {
        EXPECT_TRUE(written[i / piece]) << "read of an unwritten byte at " << i;
      }
      std::copy_n(data.data() + off, n, buf);
      return true;
    };
    for (std::size_t off : order) {
      const std::size_t n = std::min(piece, data.size() - off);
      written[off / piece] = true;
      d.feed(off, data.data() + off, n);
      std::uint64_t end = d.frontier();
      while (end < data.size() && written[end / piece]) {
        end = std::min<std::uint64_t>(data.size(), (end / piece + 1) * piece);
      }
      EXPECT_TRUE(d.catch_up(end, read));
    }
    EXPECT_TRUE(d.complete());
    EXPECT_EQ(d.held_bytes(), 0u);
    hex = d.hex();
    *reread = d.reread_bytes();
  }
  *budget_after = budget.load();
  return hex;
}

TEST(DigestTest, OutOfOrderPiecesHashInOrder) {
  std::string data(100'003, '\0');
  std::mt19937 rng(1);
  for (char& c : data) {
    c = static_cast<char>(rng());
  }
  const std::string want = md5_of(data);
  for (unsigned seed = 0; seed < 5; ++seed) {
    std::uint64_t reread = 0;
    std::int64_t left = 0;
    // A budget that holds everything: nothing is read back.
    EXPECT_EQ(ordered(data, 1000, 1 << 20, &reread, &left, seed), want);
    EXPECT_EQ(reread, 0u);
    EXPECT_EQ(left, 1 << 20) << "the budget is given back";
    // No budget at all: what arrived ahead is read back, and the result is the same.
    EXPECT_EQ(ordered(data, 1000, 0, &reread, &left, seed), want);
    EXPECT_GT(reread, 0u);
    EXPECT_EQ(left, 0);
    // A small budget: some held, some read back.
    EXPECT_EQ(ordered(data, 1000, 5000, &reread, &left, seed), want);
    EXPECT_EQ(left, 5000);
  }
}

TEST(DigestTest, OverlappingAndRepeatedFeedsCountOnce) {
  const std::string data = "abcdefghijklmnopqrstuvwxyz";
  std::atomic<std::int64_t> budget{1 << 10};
  OrderedDigest d(data.size(), &budget);
  d.feed(0, data.data(), 10);
  d.feed(5, data.data() + 5, 10);  // overlaps what was hashed
  d.feed(0, data.data(), 3);       // entirely behind the frontier
  d.feed(20, data.data() + 20, 6);
  d.feed(15, data.data() + 15, 5);
  ASSERT_TRUE(d.complete());
  EXPECT_EQ(d.hex(), md5_of(data));
}

// The hasher's path: copies charged to the budget before they reach the digest.
TEST(DigestTest, ReservedFeedsKeepTheirChargeWhileHeldAndGiveItBack) {
  std::string data(10'000, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) {
    data[i] = static_cast<char>(i * 7);
  }
  std::atomic<std::int64_t> budget{100'000};
  {
    OrderedDigest d(data.size(), &budget);
    auto give = [&](std::size_t off, std::size_t n) {
      budget -= static_cast<std::int64_t>(n);  // what the fetch loop charges for its copy
      d.feed_reserved(off, data.substr(off, n));
    };
    give(6000, 4000);  // ahead: held, still charged
    EXPECT_EQ(d.held_bytes(), 4000u);
    EXPECT_EQ(budget.load(), 96'000);
    give(0, 3000);  // at the frontier: hashed, given back
    EXPECT_EQ(budget.load(), 96'000);
    give(1000, 1000);  // behind the frontier: given back
    give(3000, 3000);  // closes the gap: everything hashed, everything given back
    EXPECT_TRUE(d.complete());
    EXPECT_EQ(budget.load(), 100'000);
    EXPECT_EQ(d.hex(), md5_of(data));
  }
  EXPECT_EQ(budget.load(), 100'000);
}

TEST(DigestTest, AFailedReadBackIsReported) {
  std::atomic<std::int64_t> budget{0};
  OrderedDigest d(10, &budget);
  d.feed(5, "56789", 5);
  EXPECT_FALSE(d.catch_up(10, [](std::uint64_t, char*, std::size_t) { return false; }));
  EXPECT_FALSE(d.complete());
}

}  // namespace
}  // namespace cache
