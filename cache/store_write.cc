// cache::Store's write path: reserve() (room, a generation and the sparse file, on the caller's
// loop; no sync, no commit), commit() (the disk thread's group commit: publish reservations and
// apply chunk marks in one transaction), create() (both at once, durably), abandon() and the
// chunk marks.
// Tricky: create() runs in three steps so a slow fallocate/fsync never holds the writer lock:
// reserve (locked: evict, allocate a generation, mark it in flight), make the file durable
// (unlocked), publish (locked).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "cache/store.h"
#include "cache/store_impl.h"

namespace cache {

using store_detail::fail;
using store_detail::pass;

namespace {

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

}  // namespace cache
