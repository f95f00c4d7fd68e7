// The private state of cache::Store (cache/store.h), shared by its two sources: store.cc (open,
// lookups, removal, listing, pins, flush) and store_write.cc (the write path: reserve, commit,
// chunk marks). Not part of the cache's interface.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cache/body_files.h"
#include "cache/evictor.h"
#include "cache/index.h"
#include "cache/store.h"

namespace cache::store_detail {

inline auto fail(Errc code, std::string message) {
  return conf::unexpected(Error{code, std::move(message)});
}
template <class R>
auto pass(R&& r) {
  return conf::unexpected(std::forward<R>(r).error());
}

}  // namespace cache::store_detail

namespace cache {

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
      return store_detail::pass(std::move(txn));
    }
    auto r = body(*txn);
    if (!r) {
      return r;
    }
    if (auto c = index.commit(*txn); !c) {
      return store_detail::pass(std::move(c));
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

}  // namespace cache
