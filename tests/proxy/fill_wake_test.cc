// When a Fill wakes the clients waiting on its bytes: at once for a client that has sent no body
// byte yet (time to first byte), for everyone when a chunk or the object is complete or the fill
// ended, and otherwise only once kWakeBytes are readable or flush() runs (the fetch loop's
// kWakeDelayMs timer). The fetch side is driven by hand here; fill.cc's FillRunner does it for
// real (the integration suite checks a reader along a slow fill still sees bytes trickle in).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "proxy/fill.h"

namespace proxy {

class FillTestPeer {
 public:
  // A streaming fill of a `size`-byte object in `chunk`-byte chunks, nothing filled yet.
  static FillPtr streaming(std::uint64_t size, std::uint64_t chunk) {
    FillPtr f(new Fill("k"));
    auto head = std::make_shared<ObjectHead>();
    head->size = size;
    f->set_head(head, nullptr, chunk,
                std::vector<std::uint32_t>(static_cast<std::size_t>((size + chunk - 1) / chunk)));
    return f;
  }
  static bool progress(Fill& f, std::uint64_t c, std::uint32_t n) { return f.progress(c, n); }
  static void flush(Fill& f) { f.flush(); }
  static void end(Fill& f) { f.end(Fill::Phase::kDone, false, std::nullopt); }
};

namespace {

constexpr std::uint64_t kChunk = 4u << 20;
constexpr std::uint32_t kWake = static_cast<std::uint32_t>(Fill::kWakeBytes);

struct Counter {
  int n = 0;
  std::function<void()> fn() {
    return [this] { ++n; };
  }
};

TEST(FillWake, ReaderAlongTheFillIsWokenPer256KiBNotPerRead) {
  auto f = FillTestPeer::streaming(2 * kChunk, kChunk);
  Counter c;
  ASSERT_TRUE(f->wait(0, c.fn()));
  EXPECT_TRUE(FillTestPeer::progress(*f, 0, 16384)) << "left waiting: the caller must arm a flush";
  EXPECT_TRUE(FillTestPeer::progress(*f, 0, kWake - 1));
  EXPECT_EQ(c.n, 0);
  EXPECT_FALSE(FillTestPeer::progress(*f, 0, kWake));
  EXPECT_EQ(c.n, 1);
  // Woken once; a second progress finds nobody waiting.
  EXPECT_FALSE(FillTestPeer::progress(*f, 0, 2 * kWake));
  EXPECT_EQ(c.n, 1);
}

TEST(FillWake, FlushWakesWhoeverHasSomethingToRead) {
  auto f = FillTestPeer::streaming(2 * kChunk, kChunk);
  Counter has, hasnt;
  ASSERT_TRUE(f->wait(0, has.fn()));
  ASSERT_TRUE(f->wait(kChunk, hasnt.fn()));
  EXPECT_TRUE(FillTestPeer::progress(*f, 0, 100));
  FillTestPeer::flush(*f);
  EXPECT_EQ(has.n, 1);
  EXPECT_EQ(hasnt.n, 0) << "nothing of chunk 1 is there yet";
}

TEST(FillWake, ClientWithoutItsFirstByteIsWokenByTheFirstByte) {
  auto f = FillTestPeer::streaming(2 * kChunk, kChunk);
  Counter eager;
  ASSERT_TRUE(f->wait(kChunk + 10, eager.fn(), /*eager=*/true));
  EXPECT_FALSE(FillTestPeer::progress(*f, 1, 10)) << "byte kChunk+10 is not there yet";
  EXPECT_EQ(eager.n, 0);
  EXPECT_FALSE(FillTestPeer::progress(*f, 1, 11));
  EXPECT_EQ(eager.n, 1);
}

TEST(FillWake, CompleteChunkAndObjectEndWakeAtOnce) {
  const std::uint64_t size = kChunk + 1000;  // a short last chunk
  auto f = FillTestPeer::streaming(size, kChunk);
  Counter mid, tail;
  ASSERT_TRUE(f->wait(kChunk - 100, mid.fn()));
  ASSERT_TRUE(f->wait(kChunk + 500, tail.fn()));
  EXPECT_TRUE(FillTestPeer::progress(*f, 0, kChunk - 50));
  EXPECT_EQ(mid.n, 0);
  EXPECT_FALSE(FillTestPeer::progress(*f, 0, kChunk)) << "chunk 0 complete: 100 bytes readable";
  EXPECT_EQ(mid.n, 1);
  EXPECT_TRUE(FillTestPeer::progress(*f, 1, 600));
  EXPECT_FALSE(FillTestPeer::progress(*f, 1, 1000)) << "the object's last byte is there";
  EXPECT_EQ(tail.n, 1);
}

TEST(FillWake, EndWakesEveryoneAndLaterWaitsReturnAtOnce) {
  auto f = FillTestPeer::streaming(2 * kChunk, kChunk);
  Counter a, b;
  ASSERT_TRUE(f->wait(0, a.fn()));
  ASSERT_TRUE(f->wait(kChunk, b.fn()));
  FillTestPeer::end(*f);
  EXPECT_EQ(a.n, 1);
  EXPECT_EQ(b.n, 1);
  EXPECT_FALSE(f->wait(0, a.fn()));
}

}  // namespace
}  // namespace proxy
