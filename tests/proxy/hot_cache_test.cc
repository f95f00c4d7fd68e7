// Tests of proxy/hot_cache.h against a real cache::Store in a temp dir: an entry lives while the
// stamp taken before its lookup is current, and a change of one object drops only its entry
// (issue 9, defect 3: the global epoch emptied every worker's hot cache on any change).
#include "proxy/hot_cache.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

namespace proxy {
namespace {

namespace fs = std::filesystem;

class HotCacheTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tusk-hot-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    cache::Options o;
    o.dir = dir_;
    o.max_size = 1 << 20;
    o.chunk_size = 4;
    auto s = cache::Store::open(o);
    ASSERT_TRUE(s.has_value()) << s.error().message;
    store_ = std::move(s).value();
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // What request.cc does on a hit that goes to the index: stamp, lookup, remember.
  void remember(const std::string& key) {
    cache::Meta m;
    m.size = 4;
    auto c = store_->create(key, m);
    ASSERT_TRUE(c.has_value()) << c.error().message;
    ::close(c->fd);
    ASSERT_TRUE(store_->mark_chunks(key, c->meta.generation, 0, 1).has_value());
    HotEntry e;
    e.stamp = store_->stamp(key);
    auto looked = store_->lookup(key);
    ASSERT_TRUE(looked.has_value());
    e.meta = *looked;
    hot_.put(key, std::move(e));
  }

  std::string dir_;
  std::unique_ptr<cache::Store> store_;
  HotCache hot_;
};

TEST_F(HotCacheTest, AChangeDropsOnlyTheEntryOfItsObject) {
  remember("a");
  remember("b");
  ASSERT_NE(store_->stamp("a").slot, store_->stamp("b").slot);
  ASSERT_NE(hot_.find("a", *store_), nullptr);
  ASSERT_NE(hot_.find("b", *store_), nullptr);

  const cache::Meta a = *store_->lookup("a");
  ASSERT_TRUE(store_->refresh("a", a.generation, 1, 2, 0, {}).has_value());
  EXPECT_EQ(hot_.find("a", *store_), nullptr);
  EXPECT_NE(hot_.find("b", *store_), nullptr);

  ASSERT_TRUE(store_->remove("b").has_value());
  EXPECT_EQ(hot_.find("b", *store_), nullptr);
}

TEST_F(HotCacheTest, AnEntryWithoutAStampIsNeverServed) {
  HotEntry e;  // never given a stamp
  hot_.put("k", std::move(e));
  EXPECT_EQ(hot_.find("k", *store_), nullptr);
  EXPECT_EQ(hot_.find("k", *store_), nullptr);  // and it was dropped
}

}  // namespace
}  // namespace proxy
