// The disk cache: an LMDB index (cache/index.h, over cache/lmdb.h, the only includer of <lmdb.h>)
// plus one sparse body file per object generation under <dir>/objects/xx/yy/<hash>.<generation>
// (cache/body_files.h); eviction is cache/evictor.h. Knows nothing of HTTP. Invariants: a
// chunk's bit is set only after the caller made its bytes durable (fdatasync); a body file
// exists before the index names it; replacing or evicting an object never disturbs a reader that
// already holds its fd (files are unlinked, not truncated).
// Thread rule: every method may be called from any thread; writes are serialised inside.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cache/meta.h"
#include "cache/stamp.h"
#include "conf/result.h"

namespace cache {

enum class Errc {
  kIo,        // open/read/write/fallocate failed (message has errno text)
  kIndex,     // LMDB error
  kNoSpace,   // cannot fit the object within max_size even after evicting everything evictable
  kTooLarge,  // object larger than the cache could ever hold
  kStale,     // the key now has another generation (replaced or evicted meanwhile)
  kNotFound,
  kInvalidArgument,  // bad Options, or chunks outside the object (a caller bug, not disk data)
};
struct Error {
  Errc code = Errc::kIo;
  std::string message;
};

template <class T>
using Result = conf::Result<T, Error>;

struct Options {
  std::string dir;
  std::uint64_t max_size = 0;
  std::uint32_t chunk_size = 8u << 20;
  std::uint64_t min_free = 0;         // keep this much real free disk space
  double low_watermark = 0.95;        // eviction evicts down to low_watermark * max_size
  std::function<std::int64_t()> now;  // unix seconds; defaults to the system clock
};

struct Stats {
  std::uint64_t bytes = 0;  // reserved body bytes of all indexed objects
  std::uint64_t objects = 0;
  std::uint64_t evictions = 0;  // since open
  std::uint64_t evicted_bytes = 0;
  std::uint64_t orphans_removed = 0;  // body files unlinked by the background scan since open
  // Lookups that failed on an LMDB error or found a record that does not decode (both answered
  // as a miss, counted and logged). A record a newer build wrote is an ordinary miss, not counted.
  std::uint64_t index_errors = 0;
  std::uint64_t commits = 0;  // LMDB write transactions committed since open (open's own too)
  // fsync/fdatasync calls the store made since open: a new body file and its directory (and the
  // parent of a directory it had to make), and LMDB's one data sync per commit that wrote
  // (counted by rule, see lmdb::Env::syncs). The callers' fdatasyncs of chunk bytes are theirs.
  std::uint64_t syncs = 0;
};

// Keeps an object from being evicted while alive (a reader or a fill holds one). Move-only.
// Must not outlive the Store that made it. remove() and replacement still drop the record.
class Pin {
 public:
  Pin() = default;
  Pin(Pin&&) noexcept;
  Pin& operator=(Pin&&) noexcept;
  ~Pin();

 private:
  friend class Store;
  Pin(class Store* s, std::string hash);
  class Store* store_ = nullptr;
  std::string hash_;
};

class Store {
 public:
  // Opens (creating if needed) the cache under opts.dir. Errors: kIo (dir not writable), kIndex,
  // kInvalidArgument (chunk_size 0, empty dir, low_watermark outside (0, 1]). At most one Store per
  // dir per process (an LMDB rule). Starts a background scan that unlinks orphan body files.
  static Result<std::unique_ptr<Store>> open(Options opts);
  ~Store();  // flushes batched access times

  // The stored record for `key` (any bytes; hashed internally), or nullopt: absent, written by a
  // newer build, or unreadable. An LMDB error or a record that does not decode is also answered
  // nullopt (the caller treats it as a miss), but counted in Stats::index_errors and logged, at
  // most one line per kind (LMDB, record) every 10 s of Options::now.
  std::optional<Meta> lookup(std::string_view key) const;

  // Starts a new generation of `key` sized meta.size: evicts least-recently-used unpinned
  // objects until it fits, creates the sparse body file and reserves its blocks (fallocate),
  // then publishes the record with an empty bitmap. The previous generation, if any, is
  // unlinked. meta.chunk_size is set from the options; meta.generation is assigned.
  // Returns the published Meta and an fd open for writing (caller closes it).
  // Errors: kTooLarge (size > max_size), kNoSpace (pinned objects or the disk leave no room, or
  // fallocate said ENOSPC), kIo, kIndex. On error nothing is published and no file is left.
  struct Created {
    Meta meta;
    int fd = -1;
  };
  Result<Created> create(std::string_view key, Meta meta);

  // create() in two halves, so that a miss streams to its clients before anything of it is
  // durable (issue 13): reserve() makes room and a generation (evicting as create() does) and
  // the sparse body file, neither synced nor published: lookups do not see it, its size counts
  // against max_size. commit() publishes it later, after the caller's fdatasync of the file.
  // Until then the reservation is the caller's to give up (abandon); remove(key) and
  // remove(key, generation) cancel it (the file is unlinked, its publish is then kStale). A crash
  // before the publish leaves an unnamed file, which the orphan scan removes. Errors as create().
  Result<Created> reserve(std::string_view key, Meta meta);
  // Drops a reservation that will not be published (its file is unlinked). No-op when it was
  // published, cancelled or abandoned already.
  void abandon(std::string_view key, std::uint64_t generation);

  // Sets chunks [first, first+count) durable. The caller has fdatasync'ed their bytes.
  // Errors: kStale when `generation` is no longer the key's current one (kNotFound: no record),
  // kInvalidArgument when the range passes the last chunk.
  Result<Meta> mark_chunks(std::string_view key, std::uint64_t generation, std::uint64_t first,
                           std::uint64_t count);

  // mark_chunks for many ranges at once, in ONE write transaction and one commit (one LMDB sync
  // for the batch). Returns a result per mark, in order, each as mark_chunks would give it:
  // kStale, kNotFound and kInvalidArgument fail that mark alone. An index error (kIndex) fails the
  // batch: nothing is applied and every result carries it. Marks of one key apply in order, each
  // seeing the ones before. An empty batch commits nothing.
  struct ChunkMark {
    std::string key;
    std::uint64_t generation = 0;
    std::uint64_t first = 0;
    std::uint64_t count = 0;
  };
  std::vector<Result<Meta>> mark_many(const std::vector<ChunkMark>& marks);

  // Group commit: the reserved generations in `publish` (each the Meta that reserve() returned,
  // whose file the caller has fdatasync'ed since its last write) become their keys' current
  // generations, replacing any other; then `marks` apply as in mark_many. The directories of the
  // published files (and the two above each) are fsync'ed first, once each, unless
  // `names_synced`; the whole batch is ONE write transaction
  // and one commit. Results per item, in order: a publish is kStale when its reservation was
  // cancelled or abandoned, kIo when its directory cannot be synced (the reservation is then
  // dropped); a mark as mark_many gives it, seeing the publishes. An index error (kIndex) fails
  // every item and drops the reservations of the batch.
  struct Committed {
    std::vector<Result<void>> published;
    std::vector<Result<Meta>> marked;
  };
  // `names_synced`: the caller made the whole file system durable since the files were made
  // (syncfs), so their directories need no fsync of their own.
  Committed commit(const std::vector<Meta>& publish, const std::vector<ChunkMark>& marks,
                   bool names_synced = false);

  // Updates freshness and replayed headers of the current generation (after revalidation).
  // Errors of refresh and set_verified: kStale / kNotFound as for mark_chunks, kIndex.
  Result<void> refresh(std::string_view key, std::uint64_t generation, std::int64_t stored_at,
                       std::int64_t expires_at, std::uint32_t flags,
                       std::vector<std::pair<std::string, std::string>> headers,
                       std::optional<std::string> content_type = std::nullopt);
  Result<void> set_verified(std::string_view key, std::uint64_t generation);

  // Opens the body of `generation` read-only. kStale/kNotFound when it is gone.
  // `for_write` opens it read-write, to go on filling the missing chunks of a partial object.
  Result<int> open_body(std::string_view key, std::uint64_t generation,
                        bool for_write = false) const;

  // Drops the key (record and body), pinned or not. Readers with open fds are unaffected.
  // Errors: kNotFound when the key has no record.
  Result<void> remove(std::string_view key);
  // remove() of that generation only: kStale when the key now has another one.
  Result<void> remove(std::string_view key, std::uint64_t generation);
  // remove() of many keys in one transaction and one commit (a purge by prefix); keys without
  // a record are skipped. Returns how many were removed. Errors: kIndex (nothing removed).
  Result<std::size_t> remove_many(const std::vector<std::string>& keys);

  // A page of the index in hash order, for listings and bulk work: the records after `after` (a
  // cursor from a previous page's `next`; "" starts at the beginning) that `match` accepts, at
  // most `limit` of them, reading at most `max_scan` records (the work of one call is bounded
  // whatever `match` rejects). `next` is "" when the scan reached the end, else the cursor to
  // pass as `after` for the rest (a page may be short, even empty, and still have a `next`).
  // Records that do not decode are skipped. Errors: kIndex.
  struct Listed {
    std::string hash;
    Meta meta;
  };
  struct Page {
    std::vector<Listed> items;
    std::string next;
  };
  Result<Page> list(std::string_view after, std::size_t limit,
                    const std::function<bool(const Meta&)>& match,
                    std::size_t max_scan = 100000) const;

  // Pins the key's current and future generations against eviction while the Pin lives.
  Pin pin(std::string_view key);

  // Records an access for LRU; batched in memory, written by flush().
  void touch(std::string_view key);
  // Writes batched access times; evicts when above max_size. Called periodically.
  void flush();

  Stats stats() const;

  // Per-object validity (cache/stamp.h). Take stamp(key) BEFORE lookup(key): what the lookup
  // returned may be used for as long as current(stamp) holds. The rule: the key's stamp moves
  // after every committed change of its record that a reader could hold: create (its publish),
  // mark_chunks / mark_many, refresh, set_verified, remove, eviction of that object (by create or
  // flush), and put_raw_record_for_testing. Access times (touch, flush) move no stamp. Keys share
  // stamp slots, so a change of one key may also end another's stamp (never the reverse).
  // stamp() hashes the key; current() is one atomic load. A default Stamp is never current.
  // Any thread.
  Stamp stamp(std::string_view key) const;
  bool current(const Stamp& s) const;

  const Options& options() const;

  // Path of a body file (for tests and tools).
  std::string body_path(std::string_view key, std::uint64_t generation) const;

  // Blocks until the orphan scan started by open() has finished (for tests and tools).
  void wait_for_reconcile() const;

  // Stores `bytes` as the raw record of `key` without decoding or accounting; lets tests plant a
  // record of a version this build does not know, or a damaged one. Never used by the server.
  Result<void> put_raw_record_for_testing(std::string_view key, std::string_view bytes);

  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

 private:
  friend class Pin;
  struct Impl;
  explicit Store(std::unique_ptr<Impl> impl);
  void unpin(const std::string& hash);
  Result<Created> reserve_impl(std::string_view key, Meta meta, bool durable);
  Result<void> remove_impl(std::string_view key, std::optional<std::uint64_t> generation);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cache
