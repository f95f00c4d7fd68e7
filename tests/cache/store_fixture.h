// The fixture of the store's tests (store_test.cc, store_reserve_test.cc): a Store over a fresh
// temp dir with a manual clock (never sleep); "reopen" destroys the Store and opens the same
// dir again, which is what a restart looks like to the index.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "cache/store.h"

namespace cache {

namespace fs = std::filesystem;

class StoreTest : public testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "tusk-store-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Options options(std::uint64_t max_size = 1 << 20) {
    Options o;
    o.dir = dir_;
    o.max_size = max_size;
    o.chunk_size = 4;
    o.low_watermark = 0.5;
    o.now = [clock = clock_] { return clock->load(); };
    return o;
  }
  Store& open(Options o) {
    store_.reset();
    auto s = Store::open(std::move(o));
    EXPECT_TRUE(s.has_value()) << (s ? "" : s.error().message);
    store_ = std::move(s).value();
    return *store_;
  }
  Store& open() { return open(options()); }

  // create + check, returning the published record (fd closed).
  Meta create(std::string_view key, std::uint64_t size, std::string_view body = {}) {
    Meta m;
    m.size = size;
    m.etag = "\"e\"";
    auto c = store_->create(key, m);
    EXPECT_TRUE(c.has_value()) << (c ? "" : c.error().message);
    if (!c) {
      return {};
    }
    if (!body.empty()) {
      EXPECT_EQ(::pwrite(c->fd, body.data(), body.size(), 0), static_cast<ssize_t>(body.size()));
      EXPECT_EQ(::fdatasync(c->fd), 0);
    }
    ::close(c->fd);
    return c->meta;
  }

  static std::string read_fd(int fd, std::size_t n) {
    std::string out(n, '\0');
    EXPECT_EQ(::pread(fd, out.data(), n, 0), static_cast<ssize_t>(n));
    return out;
  }
  std::string read_body(std::string_view key, std::uint64_t generation, std::size_t n) {
    auto fd = store_->open_body(key, generation);
    EXPECT_TRUE(fd.has_value()) << (fd ? "" : fd.error().message);
    if (!fd) {
      return {};
    }
    std::string s = read_fd(*fd, n);
    ::close(*fd);
    return s;
  }
  std::vector<fs::path> body_files() const {
    std::vector<fs::path> out;
    for (const auto& e : fs::recursive_directory_iterator(dir_ + "/objects")) {
      if (e.is_regular_file()) {
        out.push_back(e.path());
      }
    }
    return out;
  }

  std::string dir_;
  std::shared_ptr<std::atomic<std::int64_t>> clock_ =
      std::make_shared<std::atomic<std::int64_t>>(1000);
  std::unique_ptr<Store> store_;
};

}  // namespace cache
