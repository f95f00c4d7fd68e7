// Tests of the miss path's halves of Store::create (issue 13): reserve() makes a generation and
// its file without syncing or publishing anything, commit() publishes reservations and marks
// chunks in one transaction. What must hold: nothing reserved is visible until committed;
// remove() and abandon() cancel a reservation so that its publish is refused and its file gone;
// a crash before the publish leaves only an orphan file; a batch is one commit.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "cache/index.h"
#include "cache/store.h"
#include "tests/cache/store_fixture.h"

namespace cache {
namespace {

class ReserveTest : public StoreTest {
 protected:
  // reserve + write `body` (the caller's fdatasync included), fd closed.
  Meta reserve(std::string_view key, std::string_view body) {
    Meta m;
    m.size = body.size();
    m.etag = "\"r\"";
    auto r = store_->reserve(key, m);
    EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    if (!r) {
      return {};
    }
    EXPECT_EQ(::pwrite(r->fd, body.data(), body.size(), 0), static_cast<ssize_t>(body.size()));
    EXPECT_EQ(::fdatasync(r->fd), 0);
    ::close(r->fd);
    return r->meta;
  }
  bool file_exists(std::string_view key, std::uint64_t generation) const {
    return fs::exists(store_->body_path(key, generation));
  }
};

TEST_F(ReserveTest, InvisibleUntilCommittedThenPublishedWithItsMarksInOneCommit) {
  Store& s = open();
  const Meta a = reserve("a", "12345678");  // two chunks of 4
  const Meta b = reserve("b", "abcd");
  EXPECT_FALSE(s.lookup("a"));
  EXPECT_FALSE(s.lookup("b"));
  EXPECT_TRUE(file_exists("a", a.generation));
  EXPECT_EQ(s.stats().objects, 0u);

  const std::uint64_t commits = s.stats().commits;
  auto done = s.commit({a, b}, {{"a", a.generation, 0, 2}, {"b", b.generation, 0, 1}});
  ASSERT_EQ(done.published.size(), 2u);
  ASSERT_EQ(done.marked.size(), 2u);
  EXPECT_TRUE(done.published[0] && done.published[1]);
  EXPECT_TRUE(done.marked[0] && done.marked[1]);
  EXPECT_EQ(s.stats().commits, commits + 1);

  auto got = s.lookup("a");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->generation, a.generation);
  EXPECT_TRUE(got->complete());
  EXPECT_EQ(read_body("a", a.generation, 8), "12345678");
  EXPECT_EQ(s.stats().objects, 2u);
  EXPECT_EQ(s.stats().bytes, 12u);
}

TEST_F(ReserveTest, RemoveCancelsAReservationItsPublishIsStaleAndTheFileGone) {
  Store& s = open();
  const Meta a = reserve("a", "1234");
  ASSERT_TRUE(s.remove("a").has_value());  // a purge while the fill is on its way
  EXPECT_FALSE(file_exists("a", a.generation));
  auto done = s.commit({a}, {{"a", a.generation, 0, 1}});
  ASSERT_FALSE(done.published[0]);
  EXPECT_EQ(done.published[0].error().code, Errc::kStale);
  EXPECT_FALSE(done.marked[0]);
  EXPECT_FALSE(s.lookup("a"));
  EXPECT_EQ(s.stats().objects, 0u);
  EXPECT_TRUE(body_files().empty());
}

TEST_F(ReserveTest, RemovingTheReservedGenerationKeepsTheRecordBeforeIt) {
  Store& s = open();
  const Meta old = create("a", 4, "old!");
  ASSERT_TRUE(s.mark_chunks("a", old.generation, 0, 1));
  const Meta fresh = reserve("a", "new!");
  // a fill that fails drops its own generation only: the old one still serves
  ASSERT_TRUE(s.remove("a", fresh.generation).has_value());
  EXPECT_FALSE(file_exists("a", fresh.generation));
  auto got = s.lookup("a");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->generation, old.generation);
  EXPECT_EQ(read_body("a", old.generation, 4), "old!");
  EXPECT_EQ(s.commit({fresh}, {}).published[0].error().code, Errc::kStale);
}

TEST_F(ReserveTest, PublishReplacesTheCurrentGenerationAndUnlinksIt) {
  Store& s = open();
  const Meta old = create("a", 4, "old!");
  const Meta fresh = reserve("a", "new!");
  EXPECT_EQ(s.lookup("a")->generation, old.generation);  // served until the publish
  ASSERT_TRUE(s.commit({fresh}, {{"a", fresh.generation, 0, 1}}).published[0]);
  EXPECT_EQ(s.lookup("a")->generation, fresh.generation);
  EXPECT_FALSE(file_exists("a", old.generation));
  EXPECT_EQ(s.stats().objects, 1u);
  EXPECT_EQ(s.stats().bytes, 4u);
}

TEST_F(ReserveTest, AbandonGivesTheRoomBackWithoutEvicting) {
  Store& s = open(options(/*max_size=*/100));
  const Meta keep = create("keep", 30, std::string(30, 'k'));
  ASSERT_TRUE(s.mark_chunks("keep", keep.generation, 0, 8));
  const Meta a = reserve("a", std::string(60, 'a'));
  s.abandon("a", a.generation);
  EXPECT_FALSE(file_exists("a", a.generation));
  // 30 + 60 fits in 100 only if the abandoned 60 is no longer reserved
  const Meta b = reserve("b", std::string(60, 'b'));
  EXPECT_TRUE(s.lookup("keep"));
  EXPECT_EQ(s.stats().evictions, 0u);
  EXPECT_EQ(s.commit({a, b}, {}).published[0].error().code, Errc::kStale);
  EXPECT_TRUE(s.lookup("b"));
}

TEST_F(ReserveTest, ReservationsHoldTheirRoomAgainstOtherCreates) {
  Store& s = open(options(/*max_size=*/100));
  const Meta a = reserve("a", std::string(70, 'a'));
  // 70 reserved + 40 > 100: nothing to evict (the reservation is not indexed), so no room
  Meta m;
  m.size = 40;
  auto c = s.reserve("c", m);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, Errc::kNoSpace);
  ASSERT_TRUE(s.commit({a}, {}).published[0]);
}

TEST_F(ReserveTest, ACrashBeforeThePublishLeavesAnOrphanTheScanRemoves) {
  open();
  const Meta a = reserve("a", "1234");
  ASSERT_TRUE(file_exists("a", a.generation));
  Store& s = open();  // the restart: the reservation was never published
  s.wait_for_reconcile();
  EXPECT_FALSE(s.lookup("a"));
  EXPECT_TRUE(body_files().empty());
  EXPECT_EQ(s.stats().orphans_removed, 1u);
  // and the generation is not handed out again
  const Meta b = reserve("a", "5678");
  EXPECT_GT(b.generation, a.generation);
}

TEST_F(ReserveTest, AnEmptyCommitCommitsNothing) {
  Store& s = open();
  const std::uint64_t commits = s.stats().commits;
  auto done = s.commit({}, {});
  EXPECT_TRUE(done.published.empty());
  EXPECT_TRUE(done.marked.empty());
  EXPECT_EQ(s.stats().commits, commits);
}

TEST(IndexMapSize, SizedFromMaxSizeWithinBounds) {
  constexpr std::uint64_t GiB = std::uint64_t{1} << 30;
  EXPECT_EQ(Index::map_size_for(0), 64 * GiB);
  EXPECT_EQ(Index::map_size_for(1 * GiB), 64 * GiB);
  EXPECT_EQ(Index::map_size_for(500 * GiB), 500 * GiB);
  EXPECT_EQ(Index::map_size_for(std::uint64_t{1} << 50), std::uint64_t{64} << 40);
}

}  // namespace
}  // namespace cache
