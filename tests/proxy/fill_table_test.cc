// FillTable::acquire against a real Store: the index is read again under the table's lock, so
// a request whose lookup raced with the end of a fill serves the now complete entry instead of
// starting a second upstream fetch (the race CI once caught as a MISS after a full GET).
#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <memory>
#include <string>

#include "cache/store.h"
#include "conf/config.h"
#include "proxy/fetch.h"
#include "proxy/fill.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "tests/proxy/test_store.h"

namespace proxy {
namespace {

namespace fs = std::filesystem;

class FillTableTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("tusk-filltable");
    store_ = open_test_store(dir_, clock_);
    ASSERT_NE(store_, nullptr);
    // No clients: a fill that really starts ends at once as failed, without any transfer.
    table_ = std::make_unique<FillTable>(fetch_, *store_, metrics_,
                                         FillTable::Origins{},
                                         FillTable::Options{dir_, 4}, clock_.clock());
    target_.route = &route_;
    target_.upstream = "up";
    target_.bucket = "b";
    target_.key = "k";
  }
  void TearDown() override {
    // Fills that really started wait on the (never started) fetch loop for their origin: run
    // them there now, so they fail (no upstreams) and let go of their pins before the store.
    fetch_.stop();
    fetch_.run_pending();
    table_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // An 8-byte object (two chunks) with `marked` chunks durable, expiring at `expires_at`.
  cache::Meta put(std::uint64_t marked, std::int64_t expires_at) {
    cache::Meta m;
    m.size = 8;
    m.etag = "\"e\"";
    m.expires_at = expires_at;
    auto c = store_->create(kKey, m);
    EXPECT_TRUE(c.has_value());
    ::close(c->fd);
    if (marked > 0) {
      EXPECT_TRUE(store_->mark_chunks(kKey, c->meta.generation, 0, marked).has_value());
    }
    return *store_->lookup(kKey);
  }

  // An 8-byte object (two chunks) fresh for an hour, as create() takes it.
  cache::Meta fresh_meta() const {
    cache::Meta m;
    m.size = 8;
    m.expires_at = clock_.now() + 3600;
    return m;
  }

  static constexpr const char* kKey = "ep/b/k";
  std::string dir_;
  conf::ManualClock clock_{1'800'000'000};
  EventLoop fetch_{"fetch-test"};
  Metrics metrics_;
  std::unique_ptr<cache::Store> store_;
  std::unique_ptr<FillTable> table_;
  conf::Route route_;
  Target target_;
};

TEST_F(FillTableTest, EntryCompletedSinceTheCallersLookupIsAHitNotANewFill) {
  const cache::Meta seen = put(1, clock_.now() + 3600);  // the caller saw chunk 1 missing
  ASSERT_FALSE(seen.complete());
  ASSERT_TRUE(store_->mark_chunks(kKey, seen.generation, 1, 1).has_value());  // the fill ended

  FillSeed seed;
  seed.partial = seen;
  bool joined = true;
  EXPECT_EQ(table_->acquire(kKey, target_, seed, 0, &joined), nullptr);
  EXPECT_FALSE(joined);
  EXPECT_EQ(table_->active(), 0u);
}

TEST_F(FillTableTest, NoRecordAtLookupButCompleteNowIsAHit) {
  put(2, clock_.now() + 3600);
  bool joined = true;
  EXPECT_EQ(table_->acquire(kKey, target_, FillSeed{}, 0, &joined), nullptr);
}

TEST_F(FillTableTest, ExpiredCompleteEntryStillStartsARevalidation) {
  put(2, clock_.now() - 1);
  bool joined = true;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(joined);
}

TEST_F(FillTableTest, IncompleteEntryStartsAFill) {
  put(1, clock_.now() + 3600);
  bool joined = true;
  EXPECT_NE(table_->acquire(kKey, target_, FillSeed{}, 0, &joined), nullptr);
}

TEST_F(FillTableTest, WithoutRecheckACompleteEntryIsFilledAgain) {
  // What a request does after a complete record's body would not open three times.
  put(2, clock_.now() + 3600);
  FillSeed seed;
  seed.recheck = false;
  bool joined = true;
  EXPECT_NE(table_->acquire(kKey, target_, seed, 0, &joined), nullptr);
}

// Defect 6: marks queued together cost one fdatasync per body file and one index commit.
TEST_F(FillTableTest, DiskQueueBatchesMarksIntoOneCommit) {
  auto c = store_->create(kKey, fresh_meta());
  ASSERT_TRUE(c.has_value());
  auto fd = std::make_shared<BodyFile>(c->fd);
  const std::uint64_t commits = store_->stats().commits;
  {
    DiskQueue q(*store_, metrics_);
    q.mark(DiskQueue::Mark{fd, kKey, c->meta.generation, 0});
    q.mark(DiskQueue::Mark{fd, kKey, c->meta.generation, 1});
    q.drain();
  }
  EXPECT_EQ(store_->stats().commits - commits, 1u);
  EXPECT_TRUE(store_->lookup(kKey)->complete());
}

TEST_F(FillTableTest, DiskQueueClosureSeesTheMarksQueuedBeforeIt) {
  auto c = store_->create(kKey, fresh_meta());
  ASSERT_TRUE(c.has_value());
  auto fd = std::make_shared<BodyFile>(c->fd);
  bool complete_in_closure = false;
  DiskQueue q(*store_, metrics_);
  q.mark(DiskQueue::Mark{fd, kKey, c->meta.generation, 0});
  q.mark(DiskQueue::Mark{fd, kKey, c->meta.generation, 1});
  q.post([&] { complete_in_closure = store_->lookup(kKey)->complete(); });
  q.drain();
  EXPECT_TRUE(complete_in_closure);
}

TEST_F(FillTableTest, DiskQueueMarkOfAReplacedGenerationIsDroppedNotApplied) {
  const cache::Meta m = fresh_meta();
  auto old_gen = store_->create(kKey, m);
  ASSERT_TRUE(old_gen.has_value());
  auto fd = std::make_shared<BodyFile>(old_gen->fd);
  auto new_gen = store_->create(kKey, m);
  ASSERT_TRUE(new_gen.has_value());
  ::close(new_gen->fd);
  DiskQueue q(*store_, metrics_);
  q.mark(DiskQueue::Mark{fd, kKey, old_gen->meta.generation, 0});
  q.drain();
  auto now_meta = store_->lookup(kKey);
  ASSERT_TRUE(now_meta);
  EXPECT_EQ(now_meta->generation, new_gen->meta.generation);
  EXPECT_FALSE(now_meta->has_chunk(0));
}

}  // namespace
}  // namespace proxy
