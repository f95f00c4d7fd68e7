// Micro benchmark of the cache index lookup (cache::Store::lookup): a read transaction, the key's
// SHA-256, an LMDB get and decode_meta, on a store of 10,000 small objects. The store is built
// once per process in a fresh temp dir, preferring /dev/shm: building it costs three fsyncs per
// object on a disk, while lookups read LMDB's mmap from the page cache wherever the dir lives.
// TUSK_BENCH_DIR overrides the parent dir. The dir is removed at exit.
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

#include "bench/index_fixture.h"
#include "cache/store.h"

namespace {

namespace fs = std::filesystem;

constexpr int kObjects = 10000;

std::string key_of(int i) {
  return "emis/images/ubuntu-22.04/emi-" + std::to_string(1000000 + i) + "/disk.img";
}

using bench::temp_parent;

// The store and its temp dir; built on first use, torn down at exit (the Store first: it flushes
// and joins its scan thread before the dir goes).
class StoreFixture {
 public:
  static StoreFixture& get() {
    static StoreFixture f;
    return f;
  }
  ~StoreFixture() {
    store_.reset();
    if (!dir_.empty()) {
      std::error_code ec;
      fs::remove_all(dir_, ec);
    }
  }
  cache::Store* store() const { return store_.get(); }
  const std::string& error() const { return error_; }
  const std::vector<std::string>& hits() const { return hits_; }
  const std::vector<std::string>& misses() const { return misses_; }

 private:
  StoreFixture() {
    std::string tmpl = (temp_parent() / "tusk-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      error_ = "mkdtemp failed under " + temp_parent().string();
      return;
    }
    dir_ = tmpl;
    cache::Options o;
    o.dir = dir_;
    o.max_size = 1ull << 40;
    auto s = cache::Store::open(std::move(o));
    if (!s) {
      error_ = "Store::open: " + s.error().message;
      return;
    }
    store_ = std::move(s).value();
    for (int i = 0; i < kObjects; ++i) {
      cache::Meta m;
      m.size = 4096;
      m.etag = "\"9b2cf535f27731c974343645a3985328\"";
      m.last_modified = "Tue, 14 May 2024 08:00:00 GMT";
      m.content_type = "application/octet-stream";
      m.stored_at = 1716545700;
      m.expires_at = 1716549300;
      m.headers = {{"Cache-Control", "public, max-age=3600"}};
      hits_.push_back(key_of(i));
      auto c = store_->create(hits_.back(), std::move(m));
      if (!c) {
        error_ = "Store::create: " + c.error().message;
        return;
      }
      ::close(c->fd);
    }
    for (int i = 0; i < kObjects; ++i) {
      misses_.push_back(key_of(kObjects + i));
    }
  }

  std::string dir_;
  std::unique_ptr<cache::Store> store_;
  std::string error_;
  std::vector<std::string> hits_;
  std::vector<std::string> misses_;
};

// Walks all keys so the lookups spread over the whole B-tree rather than one hot page.
void lookup(benchmark::State& state, bool hit) {
  StoreFixture& f = StoreFixture::get();
  if (!f.error().empty()) {
    state.SkipWithError(f.error().c_str());
    return;
  }
  const std::vector<std::string>& keys = hit ? f.hits() : f.misses();
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 997;
  for (auto _ : state) {
    auto m = f.store()->lookup(keys[i % keys.size()]);
    benchmark::DoNotOptimize(m);
    ++i;
  }
  if (hit && !f.store()->lookup(keys[0])) {
    state.SkipWithError("expected a hit");
  }
}

void BM_StoreLookupHit(benchmark::State& state) { lookup(state, true); }
BENCHMARK(BM_StoreLookupHit);
BENCHMARK(BM_StoreLookupHit)->Threads(2)->UseRealTime();

void BM_StoreLookupMiss(benchmark::State& state) { lookup(state, false); }
BENCHMARK(BM_StoreLookupMiss);

}  // namespace
