// The fetch state machine without sockets: a scripted Origin records the requests a fill sends
// and the test answers them; scenarios are tables of (request expected, answer given), and the
// end state is read from the Fill and the index.
#include "proxy/fetch.h"

#include <gtest/gtest.h>

#include <thread>
#include <unistd.h>

#include <condition_variable>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "cache/store.h"
#include "conf/clock.h"
#include "proxy/fill.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "tests/proxy/scripted_origin.h"
#include "tests/proxy/test_store.h"

namespace proxy {
namespace {

namespace fs = std::filesystem;

std::string range_of(const s3::Request& r) {
  if (!r.range) {
    return r.method == s3::Method::kHead ? "HEAD" : "GET";
  }
  return std::to_string(r.range->first) + "-" + std::to_string(r.range->last);
}

class FetchTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("tusk-fetch");
    store_ = open_test_store(dir_, clock_);
    ASSERT_NE(store_, nullptr);
    table_ = std::make_unique<FillTable>(fetch_, *store_, metrics_,
                                         FillTable::Origins{{"up", std::shared_ptr<Origin>(&origin_, [](Origin*) {})}},
                                         FillTable::Options{dir_, 4}, clock_.clock());
    route_.ttl = std::chrono::seconds(3600);
    target_ = Target{&route_, "up", "b", "k"};
    fetch_.start();
  }
  void TearDown() override {
    fetch_.stop();
    fetch_.run_pending();
    table_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Runs `fn` on the fetch loop and waits for it.
  void on_loop(std::function<void()> fn) {
    std::promise<void> done;
    fetch_.post([&] {
      fn();
      done.set_value();
    });
    done.get_future().wait();
  }
  // Answers request `n` with a head, a body and success.
  void answer(std::size_t n, int status, s3::HeaderList headers, std::string body) {
    ScriptedOrigin::Sent* s = origin_.request(n);
    ASSERT_NE(s, nullptr) << "request " << n << " was never sent";
    on_loop([&] {
      if (*s->cancelled) {
        return;
      }
      s3::ResponseHead h;
      h.status = status;
      h.headers = std::move(headers);
      if (!s->cb.on_head(h) || *s->cancelled) {
        return;
      }
      if (!body.empty() && (!s->cb.on_data(std::span<const char>(body.data(), body.size())) ||
                            *s->cancelled)) {
        return;
      }
      s->cb.on_done({});
    });
  }
  void fail(std::size_t n, s3::Errc code) {
    ScriptedOrigin::Sent* s = origin_.request(n);
    ASSERT_NE(s, nullptr);
    on_loop([&] {
      s->cb.on_done(conf::unexpected(s3::Error{code, 0, "", "scripted failure"}));
    });
  }
  void wait_end(const FillPtr& f) {
    std::promise<void> retired;
    if (f->wait_retired([&] { retired.set_value(); })) {
      ASSERT_EQ(retired.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
    }
    // A failing fill leaves the table just before it publishes its end: wait for that too.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (f->snapshot().phase != Fill::Phase::kDone && f->snapshot().phase != Fill::Phase::kFailed) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the fill never ended";
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  static constexpr const char* kKey = "ep/b/k";
  static constexpr const char* kBody = "0123456789";  // 10 bytes: chunks of 4, 4, 2
  conf::ManualClock clock_{1'800'000'000};
  std::string dir_;
  EventLoop fetch_{"fetch-test"};
  Metrics metrics_;
  ScriptedOrigin origin_;
  std::unique_ptr<cache::Store> store_;
  std::unique_ptr<FillTable> table_;
  conf::Route route_;
  Target target_;
};

s3::HeaderList ranged(const std::string& cr, std::size_t length) {
  return {{"Content-Range", cr}, {"Content-Length", std::to_string(length)}, {"ETag", "\"e\""}};
}

TEST_F(FetchTest, ColdMissProbesTheFirstChunkThenFetchesTheRestInRanges) {
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  ASSERT_NE(f, nullptr);
  ASSERT_NE(origin_.request(0), nullptr);
  EXPECT_EQ(range_of(origin_.request(0)->req), "0-3");  // the probe: the client's first chunk
  answer(0, 206, ranged("bytes 0-3/10", 4), "0123");
  // The probe gave the size: the other two chunks, each pinned to the probe's ETag.
  ASSERT_NE(origin_.request(2), nullptr);
  EXPECT_EQ(range_of(origin_.request(1)->req), "4-7");
  EXPECT_EQ(range_of(origin_.request(2)->req), "8-9");
  EXPECT_EQ(origin_.request(1)->req.if_match, "\"e\"");
  answer(1, 206, ranged("bytes 4-7/10", 4), "4567");
  answer(2, 206, ranged("bytes 8-9/10", 2), "89");
  wait_end(f);
  table_->drain_disk();
  EXPECT_EQ(f->snapshot().phase, Fill::Phase::kDone);
  auto meta = store_->lookup(kKey);
  ASSERT_TRUE(meta);
  EXPECT_TRUE(meta->complete());
  EXPECT_EQ(origin_.count(), 3u);
  EXPECT_EQ(table_->range_mode("up"), RangeMode::kRanges);
}

TEST_F(FetchTest, RangeOnAColdObjectFetchesItsChunkFirst) {
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 9, &joined);
  ASSERT_NE(origin_.request(0), nullptr);
  EXPECT_EQ(range_of(origin_.request(0)->req), "8-11");
  answer(0, 206, ranged("bytes 8-9/10", 2), "89");
  EXPECT_EQ(f->available_from(8), 2u);
  ASSERT_NE(origin_.request(2), nullptr);  // prefetch: the rest follows
  answer(1, 206, ranged("bytes 0-3/10", 4), "0123");
  answer(2, 206, ranged("bytes 4-7/10", 4), "4567");
  wait_end(f);
  EXPECT_EQ(f->snapshot().phase, Fill::Phase::kDone);
}

TEST_F(FetchTest, WalrusAnswerMakesTheFetchAskTheSizeWithAHead) {
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  answer(0, 200, {{"Content-Range", "0-3/4"}, {"Content-Length", "4"}}, "0123");
  ASSERT_NE(origin_.request(1), nullptr);
  EXPECT_EQ(range_of(origin_.request(1)->req), "HEAD");
  answer(1, 200, {{"Content-Length", "10"}, {"ETag", "\"e\""}}, "");
  ASSERT_NE(origin_.request(4), nullptr);
  for (std::size_t i = 2; i <= 4; ++i) {
    const s3::Request& r = origin_.request(i)->req;
    const std::uint64_t first = r.range->first;
    const std::uint64_t last = r.range->last;
    std::string bytes = std::string(kBody).substr(first, last - first + 1);
    answer(i, 200,
           {{"Content-Range", std::to_string(first) + "-" + std::to_string(last) + "/4"},
            {"Content-Length", std::to_string(bytes.size())}},
           bytes);
  }
  wait_end(f);
  EXPECT_EQ(f->snapshot().phase, Fill::Phase::kDone);
  EXPECT_EQ(table_->range_mode("up"), RangeMode::kWalrus);
}

TEST_F(FetchTest, UpstreamThatIgnoresRangeIsFilledFromTheProbesWholeAnswer) {
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  answer(0, 200, {{"Content-Length", "10"}, {"ETag", "\"e\""}}, kBody);
  wait_end(f);
  table_->drain_disk();
  EXPECT_EQ(f->snapshot().phase, Fill::Phase::kDone);
  EXPECT_EQ(origin_.count(), 1u);  // no second request: the answer was the whole object
  EXPECT_TRUE(store_->lookup(kKey)->complete());
  EXPECT_EQ(table_->range_mode("up"), RangeMode::kNoRanges);
}

TEST_F(FetchTest, StaleEntryIsRevalidatedAndRefreshedOn304) {
  cache::Meta m;
  m.size = 10;
  m.etag = "\"e\"";
  m.expires_at = clock_.now() - 1;
  auto c = store_->create(kKey, m);
  ASSERT_TRUE(c.has_value());
  ::close(c->fd);
  ASSERT_TRUE(store_->mark_chunks(kKey, c->meta.generation, 0, 3).has_value());
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  ASSERT_NE(origin_.request(0), nullptr);
  EXPECT_EQ(origin_.request(0)->req.if_none_match, "\"e\"");
  EXPECT_FALSE(origin_.request(0)->req.range.has_value());
  answer(0, 304, {{"Cache-Control", "max-age=100"}}, "");
  wait_end(f);
  Fill::Snapshot snap = f->snapshot();
  EXPECT_EQ(snap.phase, Fill::Phase::kDone);
  EXPECT_TRUE(snap.not_modified);
  EXPECT_EQ(store_->lookup(kKey)->expires_at, clock_.now() + 100);
}

TEST_F(FetchTest, TimeoutIsRetriedWithTheSameRequest) {
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  fail(0, s3::Errc::kTimeout);
  ASSERT_NE(origin_.request(1), nullptr);  // after 100 ms of backoff
  EXPECT_EQ(range_of(origin_.request(1)->req), "0-3");
  fail(1, s3::Errc::kNotFound);  // final: the fill fails
  wait_end(f);
  Fill::Snapshot snap = f->snapshot();
  EXPECT_EQ(snap.phase, Fill::Phase::kFailed);
  EXPECT_EQ(snap.error->code, s3::Errc::kNotFound);
  EXPECT_FALSE(snap.disk_error);
}

TEST_F(FetchTest, AnswerWithAnotherRangeFailsTheFillAndLeavesNothing) {
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  answer(0, 206, ranged("bytes 0-3/10", 4), "0123");
  ASSERT_NE(origin_.request(1), nullptr);
  answer(1, 206, ranged("bytes 0-3/10", 4), "0123");  // asked 4-7
  wait_end(f);
  EXPECT_EQ(f->snapshot().phase, Fill::Phase::kFailed);
  table_->drain_disk();
  EXPECT_FALSE(store_->lookup(kKey).has_value());  // the generation is dropped whole
}

// Integrity (issue 10). kBody's MD5 is 781e5e245d69b566979b86e28d23f2c7.
s3::HeaderList ranged_md5(const std::string& cr, std::size_t length, const char* etag) {
  return {{"Content-Range", cr}, {"Content-Length", std::to_string(length)}, {"ETag", etag}};
}
constexpr const char* kGoodEtag = "\"781e5e245d69b566979b86e28d23f2c7\"";

TEST_F(FetchTest, BodyMatchingItsMd5EtagIsVerifiedAndItsLastByteHeldUntilThen) {
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  answer(0, 206, ranged_md5("bytes 0-3/10", 4, kGoodEtag), "0123");
  ASSERT_NE(origin_.request(2), nullptr);
  // The last chunk arrives first: its bytes are readable, but not the object's last byte.
  answer(2, 206, ranged_md5("bytes 8-9/10", 2, kGoodEtag), "89");
  EXPECT_EQ(f->available_from(8), 1u);
  EXPECT_EQ(f->available_from(0), 4u);
  answer(1, 206, ranged_md5("bytes 4-7/10", 4, kGoodEtag), "4567");
  wait_end(f);
  EXPECT_EQ(f->snapshot().phase, Fill::Phase::kDone);
  EXPECT_EQ(f->available_from(0), 10u);
  table_->drain_disk();
  auto m = store_->lookup(kKey);
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->complete());
  EXPECT_TRUE(m->verified);
  EXPECT_EQ(metrics_.summary().integrity_verified, 1u);
}

TEST_F(FetchTest, BodyNotMatchingItsMd5EtagFailsNeverCompletesAndLeavesNothing) {
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  answer(0, 206, ranged_md5("bytes 0-3/10", 4, kGoodEtag), "0123");
  ASSERT_NE(origin_.request(2), nullptr);
  answer(1, 206, ranged_md5("bytes 4-7/10", 4, kGoodEtag), "4X67");  // one byte flipped
  EXPECT_EQ(f->available_from(0), 8u);
  answer(2, 206, ranged_md5("bytes 8-9/10", 2, kGoodEtag), "89");
  wait_end(f);
  EXPECT_EQ(f->snapshot().phase, Fill::Phase::kFailed);
  EXPECT_EQ(f->available_from(9), 0u) << "the last byte was never readable";
  table_->drain_disk();
  EXPECT_FALSE(store_->lookup(kKey).has_value());
  EXPECT_EQ(metrics_.summary().integrity_failures, 1u);
}

TEST_F(FetchTest, MultipartEtagIsNotCheckedAndNothingIsHeldBack) {
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  const char* multi = "\"781e5e245d69b566979b86e28d23f2c7-2\"";
  answer(0, 206, ranged_md5("bytes 0-3/10", 4, multi), "0123");
  ASSERT_NE(origin_.request(2), nullptr);
  answer(2, 206, ranged_md5("bytes 8-9/10", 2, multi), "89");
  EXPECT_EQ(f->available_from(8), 2u);
  answer(1, 206, ranged_md5("bytes 4-7/10", 4, multi), "4X67");
  wait_end(f);
  EXPECT_EQ(f->snapshot().phase, Fill::Phase::kDone);
  table_->drain_disk();
  auto m = store_->lookup(kKey);
  ASSERT_TRUE(m.has_value());
  EXPECT_TRUE(m->complete());
  EXPECT_FALSE(m->verified);
}

TEST_F(FetchTest, AbandonedFillStopsLeavesTheTableAndRemovesItsGeneration) {
  bool joined = false;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  answer(0, 206, ranged("bytes 0-3/10", 4), "0123");
  ASSERT_NE(origin_.request(2), nullptr);
  EXPECT_TRUE(table_->abandon(kKey));
  EXPECT_FALSE(table_->abandon(kKey)) << "it left the table at once";
  wait_end(f);
  EXPECT_EQ(f->snapshot().phase, Fill::Phase::kFailed);
  EXPECT_TRUE(*origin_.request(1)->cancelled);
  EXPECT_TRUE(*origin_.request(2)->cancelled);
  table_->drain_disk();
  EXPECT_FALSE(store_->lookup(kKey).has_value());
  // The next request starts a new fill.
  FillPtr again = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  EXPECT_FALSE(joined);
  EXPECT_NE(again, f);
}

}  // namespace
}  // namespace proxy
