// The cache::Store facade: the index (cache/index.h), the body files and their orphan scan
// (cache/body_files.h) and eviction (cache/evictor.h) under one writer lock.
// Tricky: create() runs in three steps so a slow fallocate/fsync never holds the writer lock:
// reserve (locked: evict, allocate a generation, mark it in flight), make the file durable
// (unlocked), publish (locked). The orphan scan judges under the same lock and keeps in-flight
// generations, so it can never unlink a file between its creation and its publication. Stamps
// move after the commit they announce, still under the lock.
#include "cache/store.h"

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
namespace {

auto fail(Errc code, std::string message) {
  return conf::unexpected(Error{code, std::move(message)});
}
template <class R>
auto pass(R&& r) {
  return conf::unexpected(std::forward<R>(r).error());
}

// The change mark_chunks and mark_many make to a record.
auto mark_range(std::uint64_t first, std::uint64_t count) {
  return [first, count](Meta& m) -> Result<void> {
    const std::uint64_t n = m.chunk_count();
    if (first > n || count > n - first) {
      return fail(Errc::kInvalidArgument, "chunks [" + std::to_string(first) + ", +" +
                                              std::to_string(count) + ") outside an object of " +
                                              std::to_string(n) + " chunks");
    }
    for (std::uint64_t i = first; i < first + count; ++i) {
      m.set_chunk(i);
    }
    return {};
  };
}

}  // namespace

struct Store::Impl {
  Impl(Options o, Index i)
      : opts(std::move(o)), index(std::move(i)), files(opts.dir + "/objects") {}

  Options opts;
  Index index;
  BodyFiles files;
  Evictor evictor;
  StampTable stamps;

  // LMDB allows one writer; this also guards every field below it and the orphan scan's verdicts.
  mutable std::mutex write_mu;
  Accounting accounting;
  std::uint64_t reserved = 0;  // sizes of creates between reserve and publish
  std::uint64_t next_generation = 1;
  std::uint64_t generation_limit = 1;  // next_generation may grow up to this without a commit
  // Reservations: generation -> hash, for files that exist but are not yet published. The
  // orphan scan leaves them alone; remove() cancels those of its key.
  struct Reservation {
    std::string hash;
    std::uint64_t size = 0;
  };
  std::map<std::uint64_t, Reservation> in_flight;

  OrphanScan scan;  // last: its thread uses the fields above

  // Runs `body(txn)` in a write transaction of its own and commits it when `body` succeeds.
  // Caller holds write_mu.
  template <class Body>
  auto in_write_txn(Body&& body) -> decltype(body(std::declval<lmdb::Txn&>())) {
    auto txn = index.write();
    if (!txn) {
      return pass(std::move(txn));
    }
    auto r = body(*txn);
    if (!r) {
      return r;
    }
    if (auto c = index.commit(*txn); !c) {
      return pass(std::move(c));
    }
    return r;
  }

  // Free disk space, read only when a floor is set.
  Result<std::uint64_t> disk_free() const {
    return opts.min_free > 0 ? files.free_disk() : Result<std::uint64_t>(0);
  }
  Budget budget(std::uint64_t disk) const {
    return Budget{opts.max_size, opts.min_free, disk, accounting.bytes};
  }

  // Drops the reservations of `hash` (only `generation`'s when given); returns their
  // generations. The caller unlinks their files. cancel_locked: the caller holds write_mu.
  std::vector<std::uint64_t> cancel_locked(const std::string& hash,
                                           std::optional<std::uint64_t> generation) {
    std::vector<std::uint64_t> gone;
    for (auto it = in_flight.begin(); it != in_flight.end();) {
      if (it->second.hash == hash && (!generation || it->first == *generation)) {
        reserved -= it->second.size;
        gone.push_back(it->first);
        it = in_flight.erase(it);
      } else {
        ++it;
      }
    }
    return gone;
  }

  // After a committed eviction: counters and stamps. Caller holds write_mu.
  void evicted(const std::vector<Victim>& victims) {
    for (const auto& v : victims) {
      accounting.evicted(v.size);
      stamps.bump(v.hash);
    }
  }
  void unlink(const std::vector<Victim>& victims) const {
    for (const auto& v : victims) {
      files.unlink(v.hash, v.generation);
    }
  }

  // Index::change in a write txn of its own, committed, the key's stamp moved.
  Result<Meta> update(std::string_view key, std::uint64_t generation,
                      const std::function<Result<void>(Meta&)>& apply) {
    const std::string hash = key_hash(key);
    std::lock_guard lock(write_mu);
    auto m =
        in_write_txn([&](lmdb::Txn& txn) { return index.change(txn, hash, generation, apply); });
    if (m) {
      stamps.bump(hash);
    }
    return m;
  }
};

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

Result<Store::Created> Store::reserve(std::string_view key, Meta meta) {
  return reserve_impl(key, std::move(meta), /*durable=*/false);
}

Result<Store::Created> Store::reserve_impl(std::string_view key, Meta meta, bool durable) {
  Impl& d = *impl_;
  const std::string hash = key_hash(key);
  if (meta.size > d.opts.max_size) {
    return fail(Errc::kTooLarge, "object of " + std::to_string(meta.size) +
                                     " bytes exceeds the cache size " +
                                     std::to_string(d.opts.max_size));
  }
  meta.chunk_size = d.opts.chunk_size;
  meta.bitmap.assign((meta.chunk_count() + 7) / 8, 0);
  meta.verified = false;
  meta.key = std::string(key);
  meta.accessed_at = d.opts.now();

  // Step one: room and a generation.
  std::vector<Victim> victims;
  {
    std::lock_guard lock(d.write_mu);
    auto txn = d.index.write();
    if (!txn) {
      return pass(std::move(txn));
    }
    auto old = d.index.get(*txn, hash);
    if (!old) {
      return pass(std::move(old));
    }
    auto disk = d.disk_free();
    if (!disk) {
      return pass(std::move(disk));
    }
    Budget budget = d.budget(*disk);
    // Creates in flight hold their room; the previous generation leaves when this one arrives.
    const std::uint64_t credit = std::min(*old ? (*old)->size : 0, budget.used);
    budget.used = budget.used + d.reserved - credit;
    auto picked = d.evictor.make_room(*txn, d.index, hash, budget, meta.size);
    if (!picked) {
      return pass(std::move(picked));
    }
    if (!*picked) {
      (void)d.index.commit(*txn);  // keeps the access times just applied; nothing else changed
      return fail(Errc::kNoSpace,
                  "no room for " + std::to_string(meta.size) + " bytes in " + d.opts.dir + ": " +
                      std::to_string(d.accounting.bytes) + " of " +
                      std::to_string(d.opts.max_size) + " used, the rest pinned or filling" +
                      (d.opts.min_free > 0 ? ", " + std::to_string(*disk) + " free on disk"
                                           : std::string()));
    }
    victims = std::move(**picked);
    const bool new_block = d.next_generation == d.generation_limit;
    if (new_block) {
      auto r = d.index.put_generation_limit(*txn, d.generation_limit + Index::kGenerationBlock);
      if (!r) {
        return pass(std::move(r));
      }
    }
    if (!victims.empty() || new_block) {
      if (auto r = d.index.commit(*txn); !r) {
        return pass(std::move(r));
      }
    }
    if (new_block) {
      d.generation_limit += Index::kGenerationBlock;
    }
    d.evicted(victims);
    meta.generation = d.next_generation++;
    d.in_flight.emplace(meta.generation, Impl::Reservation{hash, meta.size});
    d.reserved += meta.size;
  }
  d.unlink(victims);

  // Step two, unlocked: the file; when not `durable`, commit() wants it synced by the caller.
  auto fd = d.files.make(hash, meta.generation, meta.size, durable);
  if (!fd) {
    std::lock_guard lock(d.write_mu);
    d.in_flight.erase(meta.generation);
    d.reserved -= meta.size;
    return pass(std::move(fd));
  }
  return Created{std::move(meta), *fd};
}


void Store::abandon(std::string_view key, std::uint64_t generation) {
  Impl& d = *impl_;
  const std::string hash = key_hash(key);
  bool cancelled = false;
  {
    std::lock_guard lock(d.write_mu);
    cancelled = !d.cancel_locked(hash, generation).empty();
  }
  if (cancelled) {
    d.files.unlink(hash, generation);
  }
}

Result<Store::Created> Store::create(std::string_view key, Meta meta) {
  // The file exists on disk with its name before any record names it.
  auto r = reserve_impl(key, std::move(meta), /*durable=*/true);
  if (!r) {
    return r;
  }
  Committed c = commit({r->meta}, {}, /*names_synced=*/true);
  if (!c.published[0]) {
    ::close(r->fd);
    return conf::unexpected(std::move(c.published[0]).error());
  }
  return r;
}

Store::Committed Store::commit(const std::vector<Meta>& publish,
                               const std::vector<ChunkMark>& marks, bool names_synced) {
  Impl& d = *impl_;
  Committed out;
  if (publish.empty() && marks.empty()) {
    return out;
  }
  std::vector<std::string> pub_hashes;
  pub_hashes.reserve(publish.size());
  for (const Meta& m : publish) {
    pub_hashes.push_back(key_hash(m.key));
  }
  std::vector<std::string> mark_hashes;
  mark_hashes.reserve(marks.size());
  for (const auto& m : marks) {
    mark_hashes.push_back(key_hash(m.key));
  }
  // Directories first, unlocked: a file's name is durable before a record names it.
  out.published.assign(publish.size(), Result<void>());
  std::vector<std::string> synced;
  std::vector<std::pair<std::string, std::uint64_t>> dropped;  // files to unlink afterwards
  for (std::size_t i = 0; i < publish.size() && !names_synced; ++i) {
    std::string dir = d.files.dir_of(pub_hashes[i]);
    if (std::find(synced.begin(), synced.end(), dir) != synced.end()) {
      continue;
    }
    if (auto r = d.files.sync_names_of(pub_hashes[i]); !r) {
      out.published[i] = pass(std::move(r));
      continue;
    }
    synced.push_back(std::move(dir));
  }
  std::vector<std::optional<Meta>> replaced(publish.size());
  std::vector<bool> live(publish.size(), false);
  std::lock_guard lock(d.write_mu);
  for (std::size_t i = 0; i < publish.size(); ++i) {
    auto it = d.in_flight.find(publish[i].generation);
    if (it == d.in_flight.end() || it->second.hash != pub_hashes[i]) {
      out.published[i] = fail(Errc::kStale, "the reservation was cancelled");
      dropped.emplace_back(pub_hashes[i], publish[i].generation);
    } else if (!out.published[i]) {
      d.cancel_locked(pub_hashes[i], publish[i].generation);
      dropped.emplace_back(pub_hashes[i], publish[i].generation);
    } else {
      live[i] = true;
    }
  }
  auto applied = d.in_write_txn([&](lmdb::Txn& txn) -> Result<std::vector<Result<Meta>>> {
    for (std::size_t i = 0; i < publish.size(); ++i) {
      if (!live[i]) {
        continue;
      }
      auto old = d.index.get(txn, pub_hashes[i]);
      if (!old) {
        return pass(std::move(old));
      }
      std::optional<std::int64_t> old_at;
      if (*old) {
        old_at = (*old)->accessed_at;
      }
      if (auto r = d.index.put(txn, pub_hashes[i], publish[i], old_at); !r) {
        return pass(std::move(r));
      }
      replaced[i] = std::move(*old);
    }
    std::vector<Result<Meta>> marked;
    marked.reserve(marks.size());
    for (std::size_t i = 0; i < marks.size(); ++i) {
      const ChunkMark& m = marks[i];
      auto r = d.index.change(txn, mark_hashes[i], m.generation, mark_range(m.first, m.count));
      if (!r && r.error().code == Errc::kIndex) {
        return pass(std::move(r));  // the txn is dead: LMDB refuses further writes in it
      }
      marked.push_back(std::move(r));
    }
    return marked;
  });
  if (!applied) {
    for (std::size_t i = 0; i < publish.size(); ++i) {
      if (live[i]) {
        d.cancel_locked(pub_hashes[i], publish[i].generation);
        dropped.emplace_back(pub_hashes[i], publish[i].generation);
        out.published[i] = conf::unexpected(applied.error());
      }
    }
    out.marked.assign(marks.size(), conf::unexpected(applied.error()));
  } else {
    for (std::size_t i = 0; i < publish.size(); ++i) {
      if (!live[i]) {
        continue;
      }
      d.in_flight.erase(publish[i].generation);
      d.reserved -= publish[i].size;
      d.accounting.published(publish[i].size, replaced[i]);
      d.stamps.bump(pub_hashes[i]);
      if (replaced[i]) {
        dropped.emplace_back(pub_hashes[i], replaced[i]->generation);
      }
    }
    for (std::size_t i = 0; i < marks.size(); ++i) {
      if ((*applied)[i]) {
        d.stamps.bump(mark_hashes[i]);
      }
    }
    out.marked = std::move(*applied);
  }
  // Unlinking under the lock keeps the order simple; it is rare (replacements, cancellations).
  for (const auto& [hash, gen] : dropped) {
    d.files.unlink(hash, gen);
  }
  return out;
}

Result<Meta> Store::mark_chunks(std::string_view key, std::uint64_t generation, std::uint64_t first,
                                std::uint64_t count) {
  return impl_->update(key, generation, mark_range(first, count));
}

std::vector<Result<Meta>> Store::mark_many(const std::vector<ChunkMark>& marks) {
  return commit({}, marks).marked;
}

Result<void> Store::refresh(std::string_view key, std::uint64_t generation, std::int64_t stored_at,
                            std::int64_t expires_at, std::uint32_t flags,
                            std::vector<std::pair<std::string, std::string>> headers) {
  auto r = impl_->update(key, generation, [&](Meta& m) -> Result<void> {
    m.stored_at = stored_at;
    m.expires_at = expires_at;
    m.flags = flags;
    m.headers = std::move(headers);
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
