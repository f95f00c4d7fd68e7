// Micro benchmarks of what issue 13's scenarios found hot: the index lookup as the index grows
// (10^4 keys against TUSK_BENCH_INDEX_KEYS, default 10^6, built with bench/index_fixture.h
// without body files), the miss path's reserve + commit (one object per commit, and 32 per
// commit as the disk thread batches them), and rendering a response head. Stores live under
// /dev/shm (TUSK_BENCH_DIR overrides): the disk's fsyncs are scenario 7's business, these
// measure the CPU of the index work. Dirs are removed at exit.
#include <benchmark/benchmark.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/index_fixture.h"
#include "cache/store.h"
#include "proxy/http_conn.h"

namespace {

namespace fs = std::filesystem;

using bench::temp_parent;

std::string key_of(std::uint64_t i) {
  return "http://walrus:8773\nstarter-emis\nimages/emi-" + std::to_string(1000000 + i) + ".tgz";
}

// A store in a temp dir of its own; removed (store first) at exit.
struct TempStore {
  std::string dir;
  std::unique_ptr<cache::Store> store;
  std::string error;

  explicit TempStore(std::uint64_t prefill) {
    std::string tmpl = (temp_parent() / "tusk-scale-bench-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) {
      error = "mkdtemp failed under " + temp_parent().string();
      return;
    }
    dir = tmpl;
    if (prefill > 0) {
      bench::IndexFill f;
      f.dir = dir;
      f.count = prefill;
      f.cache_key = key_of;
      f.bodies = false;  // lookups never open them
      if (std::string e = bench::fill_index(f); !e.empty()) {
        error = "fill_index: " + e;
        return;
      }
    }
    cache::Options o;
    o.dir = dir;
    o.max_size = 1ull << 40;
    o.chunk_size = 8u << 20;
    auto s = cache::Store::open(std::move(o));
    if (!s) {
      error = "Store::open: " + s.error().message;
      return;
    }
    store = std::move(s).value();
  }
  ~TempStore() {
    store.reset();
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::uint64_t big_index_keys() {
  const char* v = std::getenv("TUSK_BENCH_INDEX_KEYS");
  return v != nullptr && *v != '\0' ? std::strtoull(v, nullptr, 10) : 1000000;
}

TempStore& store_with(std::uint64_t keys) {
  static std::map<std::uint64_t, std::unique_ptr<TempStore>> stores;
  auto& s = stores[keys];
  if (!s) {
    s = std::make_unique<TempStore>(keys);
  }
  return *s;
}

// Lookups of random present keys: at 10^6 the B-tree is deeper and its pages no longer fit the
// CPU caches; this is the curve of scenario 10's hit latency without the network.
void BM_IndexLookupRandom(benchmark::State& state) {
  const auto keys = state.range(0) == 0 ? big_index_keys() : static_cast<std::uint64_t>(state.range(0));
  TempStore& t = store_with(keys);
  if (!t.error.empty()) {
    state.SkipWithError(t.error.c_str());
    return;
  }
  std::vector<std::string> probe;
  std::mt19937_64 rng(keys);
  for (int i = 0; i < 4096; ++i) {
    probe.push_back(key_of(rng() % keys));
  }
  std::size_t i = 0;
  for (auto _ : state) {
    auto m = t.store->lookup(probe[i++ % probe.size()]);
    benchmark::DoNotOptimize(m);
  }
  if (!t.store->lookup(probe[0])) {
    state.SkipWithError("expected a hit");
  }
  state.SetLabel(std::to_string(keys) + " keys");
}
BENCHMARK(BM_IndexLookupRandom)->Arg(10000)->Arg(0);

// The miss path's index work: reserve (room, generation, the sparse file), a 4 KiB write, then
// the publish with its chunk mark in a commit of `batch` objects.
void BM_MissReserveCommit(benchmark::State& state) {
  const auto batch = static_cast<std::size_t>(state.range(0));
  static TempStore t(0);
  if (!t.error.empty()) {
    state.SkipWithError(t.error.c_str());
    return;
  }
  const std::string body(4096, 'x');
  std::uint64_t n = 0;
  std::vector<cache::Meta> publish;
  std::vector<cache::Store::ChunkMark> marks;
  for (auto _ : state) {
    publish.clear();
    marks.clear();
    for (std::size_t i = 0; i < batch; ++i) {
      cache::Meta m;
      m.size = body.size();
      m.etag = "\"9b2cf535f27731c974343645a3985328\"";
      m.content_type = "application/octet-stream";
      m.headers = {{"Cache-Control", "public, max-age=3600"}};
      const std::string key = "miss/" + std::to_string(n++);
      auto r = t.store->reserve(key, std::move(m));
      if (!r) {
        state.SkipWithError(r.error().message.c_str());
        return;
      }
      (void)::pwrite(r->fd, body.data(), body.size(), 0);
      ::close(r->fd);
      marks.push_back({key, r->meta.generation, 0, 1});
      publish.push_back(std::move(r->meta));
    }
    auto done = t.store->commit(publish, marks, /*names_synced=*/true);
    benchmark::DoNotOptimize(done);
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_MissReserveCommit)->Arg(1)->Arg(32);

// The head of a cache hit: ten fields as a hit replays them.
void BM_RenderResponseHead(benchmark::State& state) {
  const proxy::Headers fields = {
      {"Content-Type", "application/x-gzip"},
      {"Content-Length", "734003200"},
      {"ETag", "\"9b2cf535f27731c974343645a3985328\""},
      {"Last-Modified", "Tue, 14 May 2024 08:00:00 GMT"},
      {"Accept-Ranges", "bytes"},
      {"Cache-Control", "public, max-age=3600"},
      {"Date", "Sat, 05 Dec 2026 06:00:00 GMT"},
      {"Age", "120"},
      {"X-Cache", "HIT"},
      {"Server", "tusk"},
  };
  for (auto _ : state) {
    auto h = proxy::render_response_head(200, "OK", fields, proxy::ConnectionToken::kNone);
    benchmark::DoNotOptimize(h);
  }
}
BENCHMARK(BM_RenderResponseHead);

}  // namespace
