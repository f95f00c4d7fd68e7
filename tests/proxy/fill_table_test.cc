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
#include "proxy/fill.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"

namespace proxy {
namespace {

namespace fs = std::filesystem;

class FillTableTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tusk-filltable-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    cache::Options o;
    o.dir = dir_ + "/cache";
    o.max_size = 1 << 20;
    o.chunk_size = 4;
    auto s = cache::Store::open(std::move(o));
    ASSERT_TRUE(s.has_value()) << s.error().message;
    store_ = std::move(s).value();
    // No clients: a fill that really starts ends at once as failed, without any transfer.
    table_ = std::make_unique<FillTable>(fetch_, *store_, metrics_,
                                         std::map<std::string, s3::Client*>{}, dir_, 4);
    target_.route = &route_;
    target_.upstream = "up";
    target_.bucket = "b";
    target_.key = "k";
  }
  void TearDown() override {
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

  static constexpr const char* kKey = "ep/b/k";
  std::string dir_;
  EventLoop fetch_{"fetch-test"};
  Metrics metrics_;
  std::unique_ptr<cache::Store> store_;
  std::unique_ptr<FillTable> table_;
  conf::Route route_;
  Target target_;
};

TEST_F(FillTableTest, EntryCompletedSinceTheCallersLookupIsAHitNotANewFill) {
  const cache::Meta seen = put(1, std::time(nullptr) + 3600);  // the caller saw chunk 1 missing
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
  put(2, std::time(nullptr) + 3600);
  bool joined = true;
  EXPECT_EQ(table_->acquire(kKey, target_, FillSeed{}, 0, &joined), nullptr);
}

TEST_F(FillTableTest, ExpiredCompleteEntryStillStartsARevalidation) {
  put(2, std::time(nullptr) - 1);
  bool joined = true;
  FillPtr f = table_->acquire(kKey, target_, FillSeed{}, 0, &joined);
  ASSERT_NE(f, nullptr);
  EXPECT_FALSE(joined);
}

TEST_F(FillTableTest, IncompleteEntryStartsAFill) {
  put(1, std::time(nullptr) + 3600);
  bool joined = true;
  EXPECT_NE(table_->acquire(kKey, target_, FillSeed{}, 0, &joined), nullptr);
}

TEST_F(FillTableTest, WithoutRecheckACompleteEntryIsFilledAgain) {
  // What a request does after a complete record's body would not open three times.
  put(2, std::time(nullptr) + 3600);
  FillSeed seed;
  seed.recheck = false;
  bool joined = true;
  EXPECT_NE(table_->acquire(kKey, target_, seed, 0, &joined), nullptr);
}

}  // namespace
}  // namespace proxy
