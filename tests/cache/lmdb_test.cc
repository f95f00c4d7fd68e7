// Tests of cache/lmdb.cc against a real LMDB environment in a fresh temp dir: the RAII rules
// (an uncommitted write transaction publishes nothing), get/put/del, cursor order, and the
// commit and sync counters that Store::stats() reports.
#include "cache/lmdb.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace cache::lmdb {
namespace {

namespace fs = std::filesystem;

class LmdbTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tusk-lmdb-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Env open(bool no_meta_sync = true) {
    EnvOptions o;
    o.map_size = std::size_t{1} << 20;
    o.max_dbs = 2;
    o.no_meta_sync = no_meta_sync;
    auto env = Env::open(dir_, o);
    EXPECT_TRUE(env.has_value()) << (env ? "" : env.error().message);
    return std::move(env).value();
  }
  // Opens (creating) the database "db" and commits.
  static Dbi make_db(const Env& env) {
    auto txn = Txn::write(env);
    EXPECT_TRUE(txn.has_value());
    auto dbi = txn->open_dbi("db", /*create=*/true);
    EXPECT_TRUE(dbi.has_value());
    EXPECT_TRUE(txn->commit().has_value());
    return *dbi;
  }
  static std::optional<std::string> read(const Env& env, Dbi dbi, std::string_view key) {
    auto txn = Txn::read(env);
    EXPECT_TRUE(txn.has_value());
    auto v = txn->get(dbi, key);
    EXPECT_TRUE(v.has_value());
    if (!*v) {
      return std::nullopt;
    }
    return std::string(**v);
  }
  std::string dir_;
};

TEST_F(LmdbTest, PutGetDelAndAbortUnlessCommitted) {
  Env env = open();
  const Dbi dbi = make_db(env);
  {
    auto txn = Txn::write(env);
    ASSERT_TRUE(txn.has_value());
    ASSERT_TRUE(txn->put(dbi, "a", "1").has_value());
    auto own = txn->get(dbi, "a");  // a write txn reads its own writes
    ASSERT_TRUE(own.has_value() && own->has_value());
    EXPECT_EQ(**own, "1");
  }  // not committed: aborted
  EXPECT_FALSE(read(env, dbi, "a").has_value());

  auto txn = Txn::write(env);
  ASSERT_TRUE(txn.has_value());
  ASSERT_TRUE(txn->put(dbi, "a", "1").has_value());
  ASSERT_TRUE(txn->put(dbi, "b", "2").has_value());
  ASSERT_TRUE(txn->del(dbi, "absent").has_value());  // deleting nothing is not an error
  ASSERT_TRUE(txn->commit().has_value());
  EXPECT_EQ(read(env, dbi, "a"), "1");
  EXPECT_EQ(read(env, dbi, "b"), "2");

  auto del = Txn::write(env);
  ASSERT_TRUE(del.has_value());
  ASSERT_TRUE(del->del(dbi, "a").has_value());
  ASSERT_TRUE(del->commit().has_value());
  EXPECT_FALSE(read(env, dbi, "a").has_value());
  EXPECT_EQ(read(env, dbi, "b"), "2");
}

TEST_F(LmdbTest, CursorWalksInKeyOrder) {
  Env env = open();
  const Dbi dbi = make_db(env);
  auto txn = Txn::write(env);
  ASSERT_TRUE(txn.has_value());
  for (const char* k : {"c", "a", "b"}) {
    ASSERT_TRUE(txn->put(dbi, k, std::string("v") + k).has_value());
  }
  ASSERT_TRUE(txn->commit().has_value());

  auto reader = Txn::read(env);
  ASSERT_TRUE(reader.has_value());
  auto cursor = Cursor::open(*reader, dbi);
  ASSERT_TRUE(cursor.has_value());
  std::vector<std::pair<std::string, std::string>> seen;
  for (auto e = cursor->first();; e = cursor->next()) {
    ASSERT_TRUE(e.has_value()) << e.error().message;
    if (!*e) {
      break;
    }
    seen.emplace_back((*e)->key, (*e)->value);
  }
  const std::vector<std::pair<std::string, std::string>> want = {
      {"a", "va"}, {"b", "vb"}, {"c", "vc"}};
  EXPECT_EQ(seen, want);
}

TEST_F(LmdbTest, MissingDatabaseIsAnError) {
  Env env = open();
  auto txn = Txn::read(env);
  ASSERT_TRUE(txn.has_value());
  auto dbi = txn->open_dbi("never-made", /*create=*/false);
  ASSERT_FALSE(dbi.has_value());
  EXPECT_NE(dbi.error().message.find("never-made"), std::string::npos) << dbi.error().message;
}

// A commit counts one; it makes one fdatasync only when it wrote (LMDB returns early for an
// empty one), with or without meta sync (the meta page then goes through an O_DSYNC fd, no
// call). `strace -f -c -e trace=fdatasync` of this test shows the same 4 calls.
TEST_F(LmdbTest, CommitsAndSyncsAreCounted) {
  for (const bool no_meta_sync : {true, false}) {
    SCOPED_TRACE(no_meta_sync ? "no_meta_sync" : "meta sync");
    TearDown();
    fs::create_directories(dir_);
    Env env = open(no_meta_sync);
    const Dbi dbi = make_db(env);  // creating the database is a write
    EXPECT_EQ(env.commits(), 1u);
    EXPECT_EQ(env.syncs(), 1u);

    auto empty = Txn::write(env);
    ASSERT_TRUE(empty.has_value());
    ASSERT_TRUE(empty->del(dbi, "absent").has_value());  // changes nothing
    ASSERT_TRUE(empty->commit().has_value());
    EXPECT_EQ(env.commits(), 2u);
    EXPECT_EQ(env.syncs(), 1u);

    auto full = Txn::write(env);
    ASSERT_TRUE(full.has_value());
    ASSERT_TRUE(full->put(dbi, "k", "v").has_value());
    ASSERT_TRUE(full->commit().has_value());
    EXPECT_EQ(env.commits(), 3u);
    EXPECT_EQ(env.syncs(), 2u);

    { auto aborted = Txn::write(env); }  // neither a commit nor a sync
    EXPECT_EQ(env.commits(), 3u);
    EXPECT_EQ(read(env, dbi, "k"), "v");
  }
}

}  // namespace
}  // namespace cache::lmdb
