// Who leaves the cache first: the least recently used objects that no one has pinned. Holds the
// pins and the access times batched by touch(), and walks the index's LRU.
// Tricky: every walk first writes the batched access times, so a hit counts as a use at once, not
// at the next flush (issue 9, defect 1). Lock order: the store's writer lock, then pin_mu_ or
// touch_mu_ (never both).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "cache/index.h"

namespace cache {

// A record an eviction deleted; its body file is the caller's to unlink after the commit.
struct Victim {
  std::string hash;
  std::uint64_t generation = 0;
  std::uint64_t size = 0;
};

// What eviction weighs: the cache's limits and, at the moment of the decision, what it holds.
struct Budget {
  std::uint64_t max_size = 0;
  std::uint64_t min_free = 0;   // keep this much free disk space; 0: no floor
  std::uint64_t disk_free = 0;  // free disk space now (only read when min_free > 0)
  std::uint64_t used = 0;       // bytes that stay unless evicted
};

class Evictor {
 public:
  // A hash pinned n times is passed over by walks until unpinned n times. Any thread.
  void pin(const std::string& hash);
  void unpin(const std::string& hash);  // the hash must be pinned
  bool pinned_any() const;

  // Batches an access of `hash` at `at` (unix seconds). Any thread.
  void touch(std::string hash, std::int64_t at);
  bool touched_any() const;
  // Writes the batched access times into `txn`, skipping records that are gone or already
  // accessed later. Errors: kIndex (the batch is lost; access times only steer eviction).
  // Caller holds the writer lock.
  Result<void> apply_touches(lmdb::Txn& txn, const Index& index);

  // Deletes inside `txn` what a new object of `size` needs to fit within max_size and above the
  // disk floor, never `exclude` (the object itself): nothing when it fits already. All or
  // nothing: nullopt when pinned objects leave no room (the batched touches are applied in
  // `txn` then; commit it to keep them). Errors: kIndex. Caller holds the writer lock.
  Result<std::optional<std::vector<Victim>>> make_room(lmdb::Txn& txn, const Index& index,
                                                       std::string_view exclude,
                                                       const Budget& budget, std::uint64_t size);

  // The periodic eviction: above max_size, down to low_watermark * max_size so the next creates
  // find room without evicting one by one; below the disk floor alone, just what the floor
  // needs. As much as it can (pins permitting). Errors: kIndex. Caller holds the writer lock.
  static bool must_shrink(const Budget& budget);
  Result<std::vector<Victim>> shrink(lmdb::Txn& txn, const Index& index, const Budget& budget,
                                     double low_watermark);

 private:
  // Applies the batched touches, then walks the LRU oldest first and deletes, inside `txn`,
  // unpinned records other than `exclude` until `enough(freed_bytes)` holds. Without `partial`
  // it deletes nothing when it cannot get there (nullopt). LRU entries that match no record are
  // debris of older crashes: dropped.
  Result<std::optional<std::vector<Victim>>> evict(
      lmdb::Txn& txn, const Index& index, std::string_view exclude, bool partial,
      const std::function<bool(std::uint64_t)>& enough);

  mutable std::mutex pin_mu_;
  std::unordered_map<std::string, std::uint64_t> pins_;
  mutable std::mutex touch_mu_;
  std::unordered_map<std::string, std::int64_t> touched_;
};

}  // namespace cache
