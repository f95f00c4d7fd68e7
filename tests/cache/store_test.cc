// Tests of cache/store.cc against a real LMDB index and real files in a fresh temp dir.
// LRU order comes from a manual clock (never sleep); "reopen" destroys the Store and opens the
// same dir again, which is what a restart looks like to the index.
#include "cache/store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/cache/store_fixture.h"

namespace cache {
namespace {

TEST_F(StoreTest, CreateWriteMarkLookupRead) {
  Store& s = open();
  Meta m;
  m.size = 10;
  m.etag = "\"abc\"";
  m.content_type = "application/octet-stream";
  m.headers = {{"Cache-Control", "max-age=60"}};
  auto c = s.create("bucket/disk.img", m);
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->meta.chunk_size, 4u);
  EXPECT_EQ(c->meta.chunk_count(), 3u);
  EXPECT_GT(c->meta.generation, 0u);
  EXPECT_FALSE(c->meta.complete());
  EXPECT_EQ(c->meta.accessed_at, 1000);

  struct stat st {};
  ASSERT_EQ(::fstat(c->fd, &st), 0);
  EXPECT_EQ(st.st_size, 10);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(s.body_path("bucket/disk.img", c->meta.generation).substr(0, dir_.size() + 9),
            dir_ + "/objects/");

  const std::string body = "0123456789";
  ASSERT_EQ(::pwrite(c->fd, body.data(), body.size(), 0), 10);
  ASSERT_EQ(::fdatasync(c->fd), 0);
  ::close(c->fd);

  auto marked = s.mark_chunks("bucket/disk.img", c->meta.generation, 0, 2);
  ASSERT_TRUE(marked.has_value()) << marked.error().message;
  EXPECT_EQ(marked->contiguous_from(0), 8u);

  auto looked = s.lookup("bucket/disk.img");
  ASSERT_TRUE(looked.has_value());
  EXPECT_TRUE(looked->has_chunk(0));
  EXPECT_TRUE(looked->has_chunk(1));
  EXPECT_FALSE(looked->has_chunk(2));
  EXPECT_EQ(looked->etag, "\"abc\"");
  EXPECT_EQ(looked->headers, m.headers);

  ASSERT_TRUE(s.mark_chunks("bucket/disk.img", c->meta.generation, 2, 1).has_value());
  EXPECT_TRUE(s.lookup("bucket/disk.img")->complete());
  EXPECT_EQ(read_body("bucket/disk.img", c->meta.generation, 10), body);
  EXPECT_FALSE(s.lookup("other").has_value());
}

TEST_F(StoreTest, ContractErrors) {
  Store& s = open(options(100));
  const Meta m = create("k", 10);

  auto oob = s.mark_chunks("k", m.generation, 2, 2);  // chunks 2..3 of 3
  ASSERT_FALSE(oob.has_value());
  EXPECT_EQ(oob.error().code, Errc::kInvalidArgument);
  auto missing = s.mark_chunks("nope", 1, 0, 1);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, Errc::kNotFound);
  EXPECT_EQ(s.open_body("nope", 1).error().code, Errc::kNotFound);
  EXPECT_EQ(s.remove("nope").error().code, Errc::kNotFound);

  Meta big;
  big.size = 101;
  auto too_large = s.create("big", big);
  ASSERT_FALSE(too_large.has_value());
  EXPECT_EQ(too_large.error().code, Errc::kTooLarge);
  EXPECT_FALSE(s.lookup("big").has_value());

  Options bad = options();
  bad.chunk_size = 0;
  store_.reset();
  auto r = Store::open(bad);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
}

TEST_F(StoreTest, RefreshAndVerify) {
  Store& s = open();
  const Meta m = create("k", 8);
  ASSERT_TRUE(s.refresh("k", m.generation, 5, 6, Meta::kFlagNoCache, {{"A", "b"}}).has_value());
  ASSERT_TRUE(s.set_verified("k", m.generation).has_value());
  auto got = s.lookup("k");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->stored_at, 5);
  EXPECT_EQ(got->expires_at, 6);
  EXPECT_EQ(got->flags, Meta::kFlagNoCache);
  EXPECT_TRUE(got->verified);
  EXPECT_EQ(got->headers.size(), 1u);
  EXPECT_EQ(s.refresh("k", m.generation + 1, 0, 0, 0, {}).error().code, Errc::kStale);
  EXPECT_EQ(s.set_verified("k", m.generation + 1).error().code, Errc::kStale);
}

TEST_F(StoreTest, SizeZeroIsCompleteAtOnce) {
  Store& s = open();
  const Meta m = create("empty", 0);
  EXPECT_TRUE(m.complete());
  auto got = s.lookup("empty");
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->complete());
  EXPECT_EQ(got->chunk_count(), 0u);
  EXPECT_EQ(read_body("empty", m.generation, 0), "");
  EXPECT_TRUE(s.mark_chunks("empty", m.generation, 0, 0).has_value());
  EXPECT_EQ(s.stats().objects, 1u);
}

TEST_F(StoreTest, PersistsAcrossReopen) {
  open();
  const Meta m = create("k", 6, "abcdef");
  ASSERT_TRUE(store_->mark_chunks("k", m.generation, 0, 2).has_value());
  create("k2", 3, "xyz");
  const Stats before = store_->stats();

  Store& s = open();  // destroys the first Store, then opens the same dir
  s.wait_for_reconcile();
  auto got = s.lookup("k");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->generation, m.generation);
  EXPECT_TRUE(got->complete());
  EXPECT_EQ(read_body("k", m.generation, 6), "abcdef");
  const Stats after = s.stats();
  EXPECT_EQ(after.bytes, before.bytes);
  EXPECT_EQ(after.bytes, 9u);
  EXPECT_EQ(after.objects, 2u);
  EXPECT_EQ(after.orphans_removed, 0u);
  EXPECT_EQ(body_files().size(), 2u);

  // Generations keep growing across restarts, so a new file never reuses an old name.
  const Meta n = create("k3", 1);
  EXPECT_GT(n.generation, m.generation);
}

TEST_F(StoreTest, ReplaceKeepsOldReadersAndUnlinksOldFile) {
  Store& s = open();
  const Meta first = create("k", 4, "old!");
  ASSERT_TRUE(s.mark_chunks("k", first.generation, 0, 1).has_value());
  auto old_fd = s.open_body("k", first.generation);
  ASSERT_TRUE(old_fd.has_value());
  const std::string old_path = s.body_path("k", first.generation);

  const Meta second = create("k", 4, "new!");
  EXPECT_NE(second.generation, first.generation);
  EXPECT_NE(s.body_path("k", second.generation), old_path);
  EXPECT_FALSE(fs::exists(old_path));
  EXPECT_EQ(read_fd(*old_fd, 4), "old!");  // unlinked, not truncated
  ::close(*old_fd);

  EXPECT_EQ(s.mark_chunks("k", first.generation, 0, 1).error().code, Errc::kStale);
  EXPECT_EQ(s.open_body("k", first.generation).error().code, Errc::kStale);
  auto got = s.lookup("k");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->generation, second.generation);
  EXPECT_FALSE(got->has_chunk(0));  // the new generation starts empty
  EXPECT_EQ(read_body("k", second.generation, 4), "new!");
  EXPECT_EQ(s.stats().objects, 1u);
  EXPECT_EQ(s.stats().bytes, 4u);
}

TEST_F(StoreTest, ReplaceFitsInPlaceOfTheOldGeneration) {
  Store& s = open(options(10));
  create("k", 8);
  const Meta again = create("k", 9);  // 8 + 9 > 10, but the 8 leave as the 9 arrive
  EXPECT_EQ(s.lookup("k")->generation, again.generation);
  EXPECT_EQ(s.stats().bytes, 9u);
  EXPECT_EQ(s.stats().evictions, 0u);
}

TEST_F(StoreTest, LruEvictionByBytesFollowsTouchOrder) {
  Store& s = open(options(30));
  clock_->store(100);
  const Meta a = create("a", 10);
  clock_->store(101);
  create("b", 10);
  clock_->store(102);
  create("c", 10);
  // "a" is the oldest by creation, but touching it makes "b" the least recently used.
  clock_->store(200);
  s.touch("a");
  s.flush();
  EXPECT_EQ(s.lookup("a")->accessed_at, 200);

  clock_->store(300);
  create("d", 10);
  EXPECT_FALSE(s.lookup("b").has_value());
  EXPECT_TRUE(s.lookup("a").has_value());
  EXPECT_TRUE(s.lookup("c").has_value());
  EXPECT_TRUE(s.lookup("d").has_value());
  EXPECT_EQ(body_files().size(), 3u);
  Stats st = s.stats();
  EXPECT_EQ(st.evictions, 1u);
  EXPECT_EQ(st.evicted_bytes, 10u);
  EXPECT_EQ(st.bytes, 30u);
  EXPECT_EQ(st.objects, 3u);

  // Needing 20 bytes takes the two oldest: "c" (102) then "a" (200).
  clock_->store(400);
  create("e", 20);
  EXPECT_FALSE(s.lookup("c").has_value());
  EXPECT_FALSE(s.lookup("a").has_value());
  EXPECT_EQ(s.open_body("a", a.generation).error().code, Errc::kNotFound);
  EXPECT_TRUE(s.lookup("d").has_value());
  st = s.stats();
  EXPECT_EQ(st.evictions, 3u);
  EXPECT_EQ(st.bytes, 30u);
  EXPECT_EQ(body_files().size(), 2u);
}

// Issue 9, defect 1: a hit counts as a use for eviction at once. Touches wait in memory for the
// periodic flush, but an eviction walk applies them first: GET a, b, a, c evicts b, not a.
TEST_F(StoreTest, HitsCountForEvictionBeforeTheNextFlush) {
  Store& s = open(options(48));
  clock_->store(100);
  create("a", 20);
  clock_->store(101);
  create("b", 20);
  clock_->store(102);
  s.touch("a");  // a hit, not flushed
  clock_->store(103);
  create("c", 20);
  EXPECT_TRUE(s.lookup("a").has_value());
  EXPECT_FALSE(s.lookup("b").has_value());
  EXPECT_TRUE(s.lookup("c").has_value());
  EXPECT_EQ(s.lookup("a")->accessed_at, 102);
}

// Issue 9, defect 3: stamps are per object. Each change of "a" ends a stamp of "a" taken before
// it and leaves the stamp of "b" current; with one global epoch every row would end b's too.
TEST_F(StoreTest, EveryChangeOfAnObjectEndsItsStampAndNoOther) {
  struct Case {
    const char* name;
    std::function<void(Store&, const Meta& a)> change;
  };
  const Case cases[] = {
      {"create (replace)", [&](Store&, const Meta&) { create("a", 8); }},
      {"mark_chunks",
       [](Store& s, const Meta& a) { ASSERT_TRUE(s.mark_chunks("a", a.generation, 0, 1)); }},
      {"mark_many",
       [](Store& s, const Meta& a) {
         auto r = s.mark_many({{"a", a.generation, 1, 1}});
         ASSERT_EQ(r.size(), 1u);
         ASSERT_TRUE(r[0].has_value());
       }},
      {"refresh",
       [](Store& s, const Meta& a) { ASSERT_TRUE(s.refresh("a", a.generation, 1, 2, 0, {})); }},
      {"set_verified",
       [](Store& s, const Meta& a) { ASSERT_TRUE(s.set_verified("a", a.generation)); }},
      {"remove", [](Store& s, const Meta&) { ASSERT_TRUE(s.remove("a")); }},
      {"evicted by a create",
       [&](Store& s, const Meta&) {
         s.touch("b");  // "a" is now the least recently used
         clock_->fetch_add(1);
         create("c", 24);  // 8 + 8 + 24 > 32: one of them must go
         ASSERT_FALSE(s.lookup("a").has_value());
       }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Store& s = open(options(32));
    clock_->store(10);
    const Meta a = create("a", 8);
    clock_->store(11);
    create("b", 8);
    clock_->store(12);
    const Stamp sa = s.stamp("a");
    const Stamp sb = s.stamp("b");
    ASSERT_NE(sa.slot, sb.slot);  // else a change of one would end both (allowed, not tested)
    EXPECT_TRUE(s.current(sa));
    EXPECT_TRUE(s.current(sb));
    c.change(s, a);
    EXPECT_FALSE(s.current(sa));
    EXPECT_TRUE(s.current(sb));
    EXPECT_TRUE(s.current(s.stamp("a")));  // a stamp taken after the change is current again
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
    fs::create_directories(dir_);
  }
}

// Issue 9, defect 3: a flush that only writes access times moves no stamp; one that evicts
// moves only the stamps of what it evicted. The old global epoch failed the last two lines.
TEST_F(StoreTest, FlushMovesOnlyTheStampsOfWhatItEvicts) {
  Store& s = open(options(40));
  for (int i = 0; i < 4; ++i) {
    clock_->store(10 + i);
    create("k" + std::to_string(i), 10);
  }
  Stamp before[4];
  for (int i = 0; i < 4; ++i) {
    before[i] = s.stamp("k" + std::to_string(i));
  }
  clock_->store(20);
  s.touch("k0");
  s.flush();  // access times only: at max_size, not above
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(s.current(before[i])) << i;
  }
  EXPECT_EQ(s.stats().evictions, 0u);

  // Shrinking the cache on restart puts it above max_size; flush goes down to 0.5 * 30 = 15.
  Store& t = open(options(30));
  Stamp k0 = t.stamp("k0");
  Stamp k1 = t.stamp("k1");
  t.flush();
  EXPECT_EQ(t.stats().evictions, 3u);
  EXPECT_TRUE(t.lookup("k0").has_value());
  EXPECT_FALSE(t.current(k1));  // evicted
  EXPECT_TRUE(t.current(k0));   // kept: its readers keep their hot entries
}

TEST_F(StoreTest, DefaultStampIsNeverCurrent) {
  Store& s = open();
  EXPECT_FALSE(s.current(Stamp{}));
  EXPECT_TRUE(s.current(s.stamp("never stored")));
}

// Issue 9, defect 5: a record that does not decode is answered as a miss but counted and logged,
// one line per 10 s at most; a newer build's record is an ordinary miss.
TEST_F(StoreTest, UndecodableRecordIsAMissThatIsCountedAndLogged) {
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16);
  const auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  auto errors_logged = [&] {
    int n = 0;
    for (const auto& line : sink->last_formatted()) {
      n += line.find("[error]") != std::string::npos ? 1 : 0;
    }
    return n;
  };

  Store& s = open();
  s.wait_for_reconcile();
  const Meta m = create("k", 4, "abcd");
  std::string newer = encode_meta(m);
  newer[0] = static_cast<char>(kMetaVersion + 1);
  ASSERT_TRUE(s.put_raw_record_for_testing("newer", newer).has_value());
  EXPECT_FALSE(s.lookup("newer").has_value());
  EXPECT_EQ(s.stats().index_errors, 0u);
  EXPECT_EQ(errors_logged(), 0);

  const std::string good = encode_meta(m);
  ASSERT_TRUE(s.put_raw_record_for_testing("k", good.substr(0, good.size() - 3)).has_value());
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(s.lookup("k").has_value());
  }
  EXPECT_EQ(s.stats().index_errors, 3u);
  EXPECT_EQ(errors_logged(), 1);  // the other two wait for the next line
  clock_->fetch_add(10);
  EXPECT_FALSE(s.lookup("k").has_value());
  EXPECT_EQ(s.stats().index_errors, 4u);
  ASSERT_EQ(errors_logged(), 2);
  EXPECT_NE(sink->last_formatted().back().find("2 more"), std::string::npos)
      << sink->last_formatted().back();
  store_.reset();
  spdlog::set_default_logger(previous);
}

// Issue 9, defect 6: a batch of marks is one commit; a stale or bad mark fails alone.
TEST_F(StoreTest, MarkManyAppliesEveryMarkInOneCommit) {
  Store& s = open();
  const Meta a = create("a", 12);  // 3 chunks of 4
  const Meta b = create("b", 12);
  const Meta old_c = create("c", 12);
  const Meta c = create("c", 12);  // old_c's generation is gone
  const Stats before = s.stats();
  auto r = s.mark_many({
      {"a", a.generation, 0, 1},
      {"b", b.generation, 0, 2},
      {"c", old_c.generation, 0, 3},  // stale
      {"a", a.generation, 1, 2},      // sees the first mark of "a"
      {"nope", 1, 0, 1},              // no record
      {"b", b.generation, 2, 5},      // past the last chunk
  });
  const Stats after = s.stats();
  EXPECT_EQ(after.commits, before.commits + 1);
  EXPECT_EQ(after.syncs, before.syncs + 1);  // LMDB's one fdatasync for the batch
  ASSERT_EQ(r.size(), 6u);
  ASSERT_TRUE(r[0].has_value());
  EXPECT_EQ(r[0]->contiguous_from(0), 4u);
  ASSERT_TRUE(r[1].has_value());
  EXPECT_EQ(r[1]->contiguous_from(0), 8u);
  ASSERT_FALSE(r[2].has_value());
  EXPECT_EQ(r[2].error().code, Errc::kStale);
  ASSERT_TRUE(r[3].has_value());
  EXPECT_TRUE(r[3]->complete());
  ASSERT_FALSE(r[4].has_value());
  EXPECT_EQ(r[4].error().code, Errc::kNotFound);
  ASSERT_FALSE(r[5].has_value());
  EXPECT_EQ(r[5].error().code, Errc::kInvalidArgument);

  EXPECT_TRUE(s.lookup("a")->complete());
  EXPECT_EQ(s.lookup("b")->contiguous_from(0), 8u);
  EXPECT_FALSE(s.lookup("c")->has_chunk(0));
  EXPECT_EQ(s.lookup("c")->generation, c.generation);

  EXPECT_TRUE(s.mark_many({}).empty());
  EXPECT_EQ(s.stats().commits, after.commits);  // an empty batch commits nothing
}

// Stats::commits and Stats::syncs of one create that replaces a key: its body file and the
// file's directory are fsync'ed (the directories exist), and its one commit (publish) syncs once.
TEST_F(StoreTest, CreateCountsItsCommitsAndSyncs) {
  Store& s = open();
  create("k", 8);
  const Stats before = s.stats();
  create("k", 8);
  const Stats after = s.stats();
  EXPECT_EQ(after.commits, before.commits + 1);
  EXPECT_EQ(after.syncs, before.syncs + 3);
}

TEST_F(StoreTest, PinnedObjectsAreNeverEvicted) {
  Store& s = open(options(20));
  clock_->store(1);
  create("old", 10);
  clock_->store(2);
  create("new", 10);
  {
    Pin pin = s.pin("old");
    Pin moved = std::move(pin);  // the pin travels with the reader
    clock_->store(3);
    create("x", 10);  // must take "new" although "old" is older
    EXPECT_TRUE(s.lookup("old").has_value());
    EXPECT_FALSE(s.lookup("new").has_value());

    Pin pin_x = s.pin("x");
    Meta m;
    m.size = 5;
    auto full = s.create("y", m);
    ASSERT_FALSE(full.has_value());
    EXPECT_EQ(full.error().code, Errc::kNoSpace);
    EXPECT_FALSE(s.lookup("y").has_value());
    EXPECT_TRUE(s.lookup("old").has_value());
    EXPECT_TRUE(s.lookup("x").has_value());
    EXPECT_EQ(s.stats().objects, 2u);
  }
  create("y", 5);  // pins gone: "old" goes now
  EXPECT_FALSE(s.lookup("old").has_value());
  EXPECT_TRUE(s.lookup("x").has_value());
}

TEST_F(StoreTest, FlushEvictsDownToLowWatermark) {
  Options o = options(40);
  o.low_watermark = 0.5;
  Store& s = open(o);
  for (int i = 0; i < 4; ++i) {
    clock_->store(10 + i);
    create("k" + std::to_string(i), 10);
  }
  s.flush();  // at max_size, not above: nothing to do
  EXPECT_EQ(s.stats().evictions, 0u);

  // Shrinking the cache on restart puts it above max_size; flush goes down to 0.5 * 30 = 15.
  Store& t = open(options(30));
  EXPECT_EQ(t.stats().bytes, 40u);
  t.touch("k0");
  clock_->store(100);
  t.touch("k0");
  t.flush();
  const Stats st = t.stats();
  EXPECT_EQ(st.bytes, 10u);
  EXPECT_EQ(st.evictions, 3u);
  EXPECT_TRUE(t.lookup("k0").has_value());
  EXPECT_EQ(t.lookup("k0")->accessed_at, 100);
}

TEST_F(StoreTest, RemoveDropsRecordAndFile) {
  Store& s = open();
  const Meta m = create("k", 4, "abcd");
  auto fd = s.open_body("k", m.generation);
  ASSERT_TRUE(fd.has_value());
  ASSERT_TRUE(s.remove("k").has_value());
  EXPECT_FALSE(s.lookup("k").has_value());
  EXPECT_FALSE(fs::exists(s.body_path("k", m.generation)));
  EXPECT_EQ(read_fd(*fd, 4), "abcd");
  ::close(*fd);
  EXPECT_EQ(s.stats().bytes, 0u);
  EXPECT_EQ(s.stats().objects, 0u);
  s.touch("k");
  s.flush();  // a touch of a removed key is ignored
  EXPECT_FALSE(s.lookup("k").has_value());
}

TEST_F(StoreTest, UnknownVersionReadsAsAbsentAndIsCleaned) {
  Store& s = open();
  // This store's own orphan scan must be over before the unreadable record exists, or (on a
  // slow machine) it is the one that cleans the body and the reopened store finds nothing.
  s.wait_for_reconcile();
  const Meta m = create("k", 4, "abcd");
  create("keep", 2, "ok");
  std::string future = encode_meta(m);
  future[0] = static_cast<char>(kMetaVersion + 1);
  ASSERT_TRUE(s.put_raw_record_for_testing("k", future).has_value());
  EXPECT_FALSE(s.lookup("k").has_value());
  EXPECT_EQ(s.open_body("k", m.generation).error().code, Errc::kNotFound);

  Store& t = open();
  t.wait_for_reconcile();
  EXPECT_FALSE(t.lookup("k").has_value());
  EXPECT_FALSE(fs::exists(t.body_path("k", m.generation)));
  EXPECT_EQ(t.stats().objects, 1u);
  EXPECT_EQ(t.stats().bytes, 2u);
  EXPECT_EQ(t.stats().orphans_removed, 1u);
  EXPECT_TRUE(t.lookup("keep").has_value());
  const Meta again = create("k", 3, "new");  // the key is usable again
  EXPECT_EQ(read_body("k", again.generation, 3), "new");
}

TEST_F(StoreTest, OrphanFilesAreRemovedOnReopen) {
  Store& s = open();
  const Meta kept = create("kept", 3, "abc");
  const std::string kept_path = s.body_path("kept", kept.generation);
  // Debris a crash could leave: an older generation of a live key, a create that never got
  // published, and a file whose name create() would never make.
  const std::string stale = s.body_path("kept", kept.generation + 7);
  const std::string unpublished = s.body_path("never-published", 3);
  const std::string junk = dir_ + "/objects/junk.tmp";
  store_.reset();
  for (const auto& p : {stale, unpublished, junk}) {
    fs::create_directories(fs::path(p).parent_path());
    std::ofstream(p) << "x";
  }

  Store& t = open();
  t.wait_for_reconcile();
  EXPECT_TRUE(fs::exists(kept_path));
  EXPECT_FALSE(fs::exists(stale));
  EXPECT_FALSE(fs::exists(unpublished));
  EXPECT_FALSE(fs::exists(junk));
  EXPECT_EQ(t.stats().orphans_removed, 3u);
  EXPECT_EQ(read_body("kept", kept.generation, 3), "abc");
}

TEST_F(StoreTest, MinFreeThatTheDiskCannotGiveIsNoSpace) {
  Options o = options();
  o.min_free = std::uint64_t{1} << 62;  // more than any test machine has
  Store& s = open(o);
  Meta m;
  m.size = 1;
  auto r = s.create("k", m);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kNoSpace);
  EXPECT_TRUE(body_files().empty());
}

TEST_F(StoreTest, ConcurrentCreateMarkLookup) {
  Store& s = open(options(std::uint64_t{1} << 30));
  constexpr int kThreads = 4;
  constexpr int kRounds = 40;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRounds; ++i) {
        // Own keys plus one key every thread keeps replacing.
        const std::string key =
            (i % 4 == 0) ? "shared" : "t" + std::to_string(t) + "-" + std::to_string(i);
        Pin pin = s.pin(key);
        s.touch(key);
        Meta m;
        m.size = 12;
        auto c = s.create(key, m);
        if (!c) {
          failures++;
          continue;
        }
        const std::string body = "hello world!";
        if (::pwrite(c->fd, body.data(), body.size(), 0) != 12 || ::fdatasync(c->fd) != 0) {
          failures++;
        }
        ::close(c->fd);
        auto marked = s.mark_chunks(key, c->meta.generation, 0, 3);
        if (!marked && !(key == "shared" && marked.error().code == Errc::kStale)) {
          failures++;
        }
        if (auto got = s.lookup(key); !got) {
          failures++;
        } else if (got->generation == c->meta.generation && marked && !got->complete()) {
          failures++;
        }
        if (auto fd = s.open_body(key, c->meta.generation); fd) {
          ::close(*fd);
        } else if (key != "shared") {
          failures++;
        }
        if (i % 10 == 0) {
          s.flush();
        }
        (void)s.stats();
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(failures.load(), 0);
  s.wait_for_reconcile();
  const Stats st = s.stats();
  const std::uint64_t own = kThreads * (kRounds - kRounds / 4);
  EXPECT_EQ(st.objects, own + 1);
  EXPECT_EQ(st.bytes, (own + 1) * 12);
  EXPECT_EQ(body_files().size(), own + 1);  // every replaced "shared" file is gone
}

// Listing (issue 10): every record once, in pages of at most `limit`, the cursor going on where
// the page ended; `match` filters without breaking the paging; max_scan bounds a call's work.
TEST_F(StoreTest, ListPagesEveryRecordOnceAndCarriesItsKey) {
  Store& s = open();
  std::set<std::string> keys;
  for (int i = 0; i < 25; ++i) {
    Meta m;
    m.size = 3;
    const std::string key = "ep\nbucket\nk" + std::to_string(i);
    auto c = s.create(key, m);
    ASSERT_TRUE(c.has_value());
    ::close(c->fd);
    keys.insert(key);
  }
  std::set<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto page = s.list(cursor, 4, [](const Meta&) { return true; });
    ASSERT_TRUE(page.has_value());
    EXPECT_LE(page->items.size(), 4u);
    for (const auto& item : page->items) {
      EXPECT_TRUE(seen.insert(item.meta.key).second) << "listed twice: " << item.meta.key;
      EXPECT_EQ(item.hash.size(), 64u);
    }
    cursor = page->next;
    ++pages;
  } while (!cursor.empty());
  EXPECT_EQ(seen, keys);
  EXPECT_EQ(pages, 7);  // 6 full pages and the last one with one record

  // A filter: only even keys, still in pages of 4; max_scan 5 may give short pages.
  std::set<std::string> even;
  cursor.clear();
  do {
    auto page = s.list(cursor, 4, [](const Meta& m) { return (m.key.back() - '0') % 2 == 0; }, 5);
    ASSERT_TRUE(page.has_value());
    for (const auto& item : page->items) {
      even.insert(item.meta.key);
    }
    cursor = page->next;
  } while (!cursor.empty());
  std::set<std::string> want;
  for (const auto& k : keys) {
    if ((k.back() - '0') % 2 == 0) {
      want.insert(k);
    }
  }
  EXPECT_EQ(even, want);
}

TEST_F(StoreTest, RemoveOfAGenerationLeavesANewerOneAlone) {
  Store& s = open();
  Meta m;
  m.size = 3;
  auto first = s.create("k", m);
  ASSERT_TRUE(first.has_value());
  ::close(first->fd);
  auto second = s.create("k", m);
  ASSERT_TRUE(second.has_value());
  ::close(second->fd);
  auto r = s.remove("k", first->meta.generation);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, Errc::kStale);
  EXPECT_TRUE(s.lookup("k").has_value());
  EXPECT_TRUE(s.remove("k", second->meta.generation).has_value());
  EXPECT_FALSE(s.lookup("k").has_value());
  EXPECT_EQ(s.remove("k", second->meta.generation).error().code, Errc::kNotFound);
}

TEST_F(StoreTest, RemoveManyDropsEveryNamedRecordInOneCommit) {
  Store& s = open();
  std::vector<std::string> keys;
  for (int i = 0; i < 5; ++i) {
    Meta m;
    m.size = 3;
    keys.push_back("k" + std::to_string(i));
    auto c = s.create(keys.back(), m);
    ASSERT_TRUE(c.has_value());
    ::close(c->fd);
  }
  const std::uint64_t commits = s.stats().commits;
  auto r = s.remove_many({"k0", "k2", "absent", "k4"});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(*r, 3u);
  EXPECT_EQ(s.stats().commits, commits + 1);
  EXPECT_EQ(s.stats().objects, 2u);
  EXPECT_EQ(s.stats().bytes, 6u);
  EXPECT_FALSE(s.lookup("k0").has_value());
  EXPECT_TRUE(s.lookup("k1").has_value());
  EXPECT_TRUE(s.lookup("k3").has_value());
  EXPECT_EQ(*s.remove_many({}), 0u);
}

}  // namespace
}  // namespace cache
