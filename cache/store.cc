// The cache::Store facade: the index (cache/index.h), the body files and their orphan scan
// (cache/body_files.h) and eviction (cache/evictor.h) under one writer lock (the state:
// cache/store_impl.h). This file: open, lookups, removal, listing, pins, flush; the write path
// (reserve, commit, chunk marks) is store_write.cc.
// The orphan scan judges under the writer lock and keeps in-flight generations, so it can never
// unlink a file between its creation and its publication. Stamps move after the commit they
// announce, still under the lock.
#include "cache/store.h"
#include "cache/store_impl.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <algorithm>
#include <map>
#include <optional>
#include <system_error>

#include "cache/body_files.h"
#include "cache/evictor.h"
#include "cache/index.h"
#include "conf/check.h"

namespace cache {

using store_detail::fail;
using store_detail::pass;


Pin::Pin(Store* s, std::string hash) : store_(s), hash_(std::move(hash)) {}
Pin::Pin(Pin&& o) noexcept : store_(std::exchange(o.store_, nullptr)), hash_(std::move(o.hash_)) {}
Pin& Pin::operator=(Pin&& o) noexcept {
  if (this != &o) {
    if (store_ != nullptr) {
      store_->unpin(hash_);
    }
    store_ = std::exchange(o.store_, nullptr);
    hash_ = std::move(o.hash_);
  }
  return *this;
}
Pin::~Pin() {
  if (store_ != nullptr) {
    store_->unpin(hash_);
  }
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Store::~Store() {
  impl_->scan.stop();
  flush();
  // A live Pin would call into freed memory later.
  TUSK_CHECK(!impl_->evictor.pinned_any() && "a cache::Pin outlived its Store");
}

Result<std::unique_ptr<Store>> Store::open(Options opts) {
  if (opts.dir.empty() || opts.chunk_size == 0 || !(opts.low_watermark > 0) ||
      opts.low_watermark > 1) {
    return fail(Errc::kInvalidArgument,
                "cache options need a dir, a chunk_size > 0 and low_watermark in (0, 1]");
  }
  if (!opts.now) {
    opts.now = [] {
      return std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };
  }
  const std::string index_dir = opts.dir + "/index";
  for (const auto& dir : {opts.dir, index_dir, opts.dir + "/objects"}) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return fail(Errc::kIo, "cannot create directory " + dir + ": " + ec.message());
    }
    if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
      return fail(Errc::kIo, "cannot write to " + dir + ": " +
                                 std::error_code(errno, std::system_category()).message());
    }
  }
  auto index = Index::open(index_dir, opts.max_size);
  if (!index) {
    return pass(std::move(index));
  }
  auto loaded = index->load();
  if (!loaded) {
    return pass(std::move(loaded));
  }
  auto impl = std::make_unique<Impl>(std::move(opts), std::move(*index));
  Impl& d = *impl;
  d.accounting = loaded->accounting;
  d.next_generation = loaded->next_generation;
  d.generation_limit = loaded->next_generation;
  spdlog::info("cache: opened {}: {} objects, {} bytes", d.opts.dir, d.accounting.objects,
               d.accounting.bytes);
  std::unique_ptr<Store> store(new Store(std::move(impl)));
  // Runs under write_mu (the scan takes it): in flight or indexed at this generation is live.
  d.scan.start(d.files, d.write_mu,
               [&d](std::string_view hash, std::uint64_t generation) -> Result<bool> {
                 if (auto it = d.in_flight.find(generation);
                     it != d.in_flight.end() && it->second.hash == hash) {
                   return true;
                 }
                 auto txn = d.index.read();
                 if (!txn) {
                   return pass(std::move(txn));
                 }
                 auto m = d.index.get(*txn, hash);
                 if (!m) {
                   return pass(std::move(m));
                 }
                 return *m && (*m)->generation == generation;
               });
  return store;
}

std::optional<Meta> Store::lookup(std::string_view key) const {
  return impl_->index.lookup(key_hash(key), impl_->opts.now);
}

Result<void> Store::refresh(std::string_view key, std::uint64_t generation, std::int64_t stored_at,
                            std::int64_t expires_at, std::uint32_t flags,
                            std::vector<std::pair<std::string, std::string>> headers,
                            std::optional<std::string> content_type) {
  auto r = impl_->update(key, generation, [&](Meta& m) -> Result<void> {
    m.stored_at = stored_at;
    m.expires_at = expires_at;
    m.flags = flags;
    m.headers = std::move(headers);
    if (content_type) {
      m.content_type = std::move(*content_type);
    }
    return {};
  });
  if (!r) {
    return pass(std::move(r));
  }
  return {};
}

Result<void> Store::set_verified(std::string_view key, std::uint64_t generation) {
  auto r = impl_->update(key, generation, [](Meta& m) -> Result<void> {
    m.verified = true;
    return {};
  });
  if (!r) {
    return pass(std::move(r));
  }
  return {};
}

Result<int> Store::open_body(std::string_view key, std::uint64_t generation, bool for_write) const {
  const Impl& d = *impl_;
  const std::string hash = key_hash(key);
  {
    auto txn = d.index.read();
    if (!txn) {
      return pass(std::move(txn));
    }
    if (auto m = d.index.at_generation(*txn, hash, generation); !m) {
      return pass(std::move(m));
    }
  }
  return d.files.open(hash, generation, for_write);
}

Result<void> Store::remove(std::string_view key) { return remove_impl(key, std::nullopt); }

Result<void> Store::remove(std::string_view key, std::uint64_t generation) {
  return remove_impl(key, generation);
}

Result<void> Store::remove_impl(std::string_view key, std::optional<std::uint64_t> generation) {
  Impl& d = *impl_;
  const std::string hash = key_hash(key);
  std::vector<std::uint64_t> cancelled;
  Result<Meta> removed = [&] {
    std::lock_guard lock(d.write_mu);
    cancelled = d.cancel_locked(hash, generation);  // a fill's reservation: never published now
    if (!cancelled.empty() && generation) {
      return Result<Meta>(fail(Errc::kNotFound, "only a reservation"));
    }
    auto m = d.in_write_txn([&](lmdb::Txn& txn) -> Result<Meta> {
      auto cur = d.index.get(txn, hash);
      if (!cur) {
        return pass(std::move(cur));
      }
      if (!*cur) {
        return fail(Errc::kNotFound, "no record for " + hash);
      }
      if (generation && (*cur)->generation != *generation) {
        return fail(Errc::kStale, "the key has another generation now");
      }
      if (auto r = d.index.erase(txn, hash, (*cur)->accessed_at); !r) {
        return pass(std::move(r));
      }
      return std::move(**cur);
    });
    if (m) {
      d.accounting.removed(m->size);
      d.stamps.bump(hash);
    }
    return m;
  }();
  for (std::uint64_t g : cancelled) {
    d.files.unlink(hash, g);
  }
  if (!removed) {
    if (!cancelled.empty() && removed.error().code != Errc::kIndex) {
      return {};  // what there was of that generation (or key) was the reservation
    }
    return pass(std::move(removed));
  }
  d.files.unlink(hash, removed->generation);
  return {};
}

Result<std::size_t> Store::remove_many(const std::vector<std::string>& keys) {
  Impl& d = *impl_;
  struct Gone {
    std::string hash;
    std::uint64_t generation;
    std::uint64_t size;
  };
  std::vector<Gone> gone;
  std::vector<std::pair<std::string, std::uint64_t>> cancelled;
  {
    std::lock_guard lock(d.write_mu);
    auto r = d.in_write_txn([&](lmdb::Txn& txn) -> Result<void> {
      for (const std::string& key : keys) {
        std::string hash = key_hash(key);
        for (std::uint64_t g : d.cancel_locked(hash, std::nullopt)) {
          cancelled.emplace_back(hash, g);
        }
        auto cur = d.index.get(txn, hash);
        if (!cur) {
          return pass(std::move(cur));
        }
        if (!*cur) {
          continue;
        }
        if (auto e = d.index.erase(txn, hash, (*cur)->accessed_at); !e) {
          return pass(std::move(e));
        }
        gone.push_back(Gone{std::move(hash), (*cur)->generation, (*cur)->size});
      }
      return {};
    });
    if (!r) {
      for (const auto& [hash, g] : cancelled) {
        d.files.unlink(hash, g);
      }
      return pass(std::move(r));
    }
    for (const Gone& g : gone) {
      d.accounting.removed(g.size);
      d.stamps.bump(g.hash);
    }
  }
  for (const Gone& g : gone) {
    d.files.unlink(g.hash, g.generation);
  }
  for (const auto& [hash, g] : cancelled) {
    d.files.unlink(hash, g);
  }
  return gone.size();
}

Result<Store::Page> Store::list(std::string_view after, std::size_t limit,
                                const std::function<bool(const Meta&)>& match,
                                std::size_t max_scan) const {
  const Impl& d = *impl_;
  auto txn = d.index.read();
  if (!txn) {
    return pass(std::move(txn));
  }
  auto cursor = d.index.meta_cursor(*txn);
  if (!cursor) {
    return pass(std::move(cursor));
  }
  Page page;
  std::size_t scanned = 0;
  std::string last;  // the last record read: where the next page starts
  auto e = after.empty() ? cursor->first() : cursor->seek(after);
  for (;; e = cursor->next()) {
    if (!e) {
      return fail(Errc::kIndex, "cannot walk the index: " + e.error().message);
    }
    if (!*e) {
      return page;  // the end: next stays ""
    }
    const std::string_view hash = (*e)->key;
    if (!after.empty() && hash == after) {
      continue;  // seek lands on the last entry of the previous page
    }
    if (page.items.size() >= limit || scanned >= max_scan) {
      page.next = last;  // more records follow
      return page;
    }
    ++scanned;
    last = std::string(hash);
    auto m = decode_meta((*e)->value);
    if (m && match(*m)) {
      page.items.push_back(Listed{std::string(hash), std::move(*m)});
    }
  }
}

Pin Store::pin(std::string_view key) {
  std::string hash = key_hash(key);
  impl_->evictor.pin(hash);
  return Pin(this, std::move(hash));
}

void Store::unpin(const std::string& hash) { impl_->evictor.unpin(hash); }

void Store::touch(std::string_view key) { impl_->evictor.touch(key_hash(key), impl_->opts.now()); }

void Store::flush() {
  // Access times change no record a reader serves: they move no stamp (a global
  // epoch used to move every 2 s, emptying every worker's hot cache for nothing; issue 9, defect
  // 3). Only what an eviction drops does.
  Impl& d = *impl_;
  std::vector<Victim> victims;
  {
    std::lock_guard lock(d.write_mu);
    if (d.evictor.touched_any()) {
      auto written =
          d.in_write_txn([&](lmdb::Txn& txn) { return d.evictor.apply_touches(txn, d.index); });
      if (!written) {
        spdlog::error("cache: cannot write access times: {}", written.error().message);
      }
    }
    auto disk = d.disk_free();
    if (!disk) {
      spdlog::error("cache: {}", disk.error().message);
    }
    const Budget budget = d.budget(disk.value_or(0));
    if (Evictor::must_shrink(budget)) {
      auto evicted = d.in_write_txn([&](lmdb::Txn& txn) {
        return d.evictor.shrink(txn, d.index, budget, d.opts.low_watermark);
      });
      if (!evicted) {
        spdlog::error("cache: eviction failed: {}", evicted.error().message);
      } else {
        victims = std::move(*evicted);
        d.evicted(victims);
      }
    }
  }
  d.unlink(victims);
}

Stamp Store::stamp(std::string_view key) const { return impl_->stamps.stamp(key_hash(key)); }
bool Store::current(const Stamp& s) const { return impl_->stamps.current(s); }


Stats Store::stats() const {
  const Impl& d = *impl_;
  Stats s;
  {
    std::lock_guard lock(d.write_mu);
    s.bytes = d.accounting.bytes;
    s.objects = d.accounting.objects;
    s.evictions = d.accounting.evictions;
    s.evicted_bytes = d.accounting.evicted_bytes;
  }
  s.orphans_removed = d.scan.removed();
  s.index_errors = d.index.lookup_errors();
  s.commits = d.index.commits();
  s.syncs = d.index.syncs() + d.files.syncs();
  return s;
}

const Options& Store::options() const { return impl_->opts; }

std::string Store::body_path(std::string_view key, std::uint64_t generation) const {
  return impl_->files.path_of(key_hash(key), generation);
}

void Store::wait_for_reconcile() const { impl_->scan.wait(); }

Result<void> Store::put_raw_record_for_testing(std::string_view key, std::string_view bytes) {
  Impl& d = *impl_;
  const std::string hash = key_hash(key);
  std::lock_guard lock(d.write_mu);
  auto r = d.in_write_txn([&](lmdb::Txn& txn) { return d.index.put_raw(txn, hash, bytes); });
  if (r) {
    d.stamps.bump(hash);
  }
  return r;
}

}  // namespace cache
