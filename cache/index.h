// The cache's LMDB index: "meta" maps a key's hash to its encoded Meta (cache/meta.h), "lru"
// orders hashes by access time and "state" keeps the generation counter; plus the accounting
// the store keeps beside it. Functions work inside the transaction they are given, except
// load() and lookup() (their own) and commit(). Tricky: a record and its LRU entry change together,
// and the LRU key embeds accessed_at, so whoever rewrites a record must say which accessed_at it
// replaces.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cache/lmdb.h"
#include "cache/meta.h"
#include "cache/store.h"

namespace cache {

inline constexpr std::size_t kHashHexLen = 64;

// Hex SHA-256 of a cache key: the record's key in "meta" and the body file's name.
std::string key_hash(std::string_view key);

// The LRU entry of `hash` accessed at `accessed_at`: big-endian seconds first, so LMDB's memcmp
// order is oldest first, then the hash.
std::string lru_key(std::int64_t accessed_at, std::string_view hash);
// The hash an LRU key names; nullopt for a key of the wrong length (debris of older builds).
std::optional<std::string_view> lru_hash(std::string_view lru_key);

// Counts of what the index holds and what eviction let go. Changed only after the commit that
// made the change, under the store's writer lock.
struct Accounting {
  std::uint64_t bytes = 0;  // sizes of indexed objects
  std::uint64_t objects = 0;
  std::uint64_t evictions = 0;  // since open
  std::uint64_t evicted_bytes = 0;

  void published(std::uint64_t size, const std::optional<Meta>& replaced);
  void removed(std::uint64_t size);
  void evicted(std::uint64_t size);
};

// What load() found.
struct Loaded {
  Accounting accounting;
  std::uint64_t next_generation = 1;  // above every record's generation and the stored counter
};

class Index {
 public:
  Index(Index&&) noexcept;
  Index& operator=(Index&&) noexcept;
  ~Index();

  // Generations are persisted in blocks, so a create needs no commit of its own for the counter.
  static constexpr std::uint64_t kGenerationBlock = 1024;

  // Opens (creating) the LMDB environment in the existing directory `dir` and its databases,
  // its map sized for a cache of `max_size` bytes.
  // Errors: kIndex. At most one Index per dir per process (an LMDB rule).
  static Result<Index> open(const std::string& dir, std::uint64_t max_size = 0);
  // The LMDB map size for a cache of max_size bytes (see index.cc). Pure.
  static std::size_t map_size_for(std::uint64_t max_size);

  // Once, right after open, in a write transaction of its own: drops undecodable records (their
  // body files go in the orphan scan), gives a record missing its LRU entry one back, and counts
  // what is left. Errors: kIndex.
  Result<Loaded> load();

  // Transactions. read(): a snapshot, any thread. write(): the one writer; callers serialise
  // (the store's writer lock). Errors: kIndex.
  Result<lmdb::Txn> read() const;
  Result<lmdb::Txn> write() const;
  Result<void> commit(lmdb::Txn& txn) const;

  // The record of `hash` for a reader, in a read transaction of its own: nullopt when absent,
  // written by a newer build, or unreadable. An LMDB error or a record that does not decode is
  // answered nullopt as well, but counted (lookup_errors) and logged, at most one line per kind
  // every 10 s of `now` (unix seconds; called only on failure). A broken index fails every
  // lookup: one line each would drown the log. Any thread.
  std::optional<Meta> lookup(std::string_view hash, const std::function<std::int64_t()>& now) const;
  std::uint64_t lookup_errors() const;

  // The record of `hash`; nullopt when absent or unreadable. Errors: kIndex (LMDB failed; a
  // record that does not decode is not an error).
  Result<std::optional<Meta>> get(const lmdb::Txn& txn, std::string_view hash) const;

  // The record of `hash` when it is at `generation`. Errors: kNotFound (no record, or one that
  // does not decode), kStale (the key has another generation now), kIndex.
  Result<Meta> at_generation(const lmdb::Txn& txn, std::string_view hash,
                             std::uint64_t generation) const;
  // at_generation(), then `apply` changes it and the result is written back. Errors:
  // at_generation's, those of `apply` (nothing is written then), kIndex.
  Result<Meta> change(lmdb::Txn& txn, std::string_view hash, std::uint64_t generation,
                      const std::function<Result<void>(Meta&)>& apply) const;

  // Writes `m` as the record of `hash` and its LRU entry, dropping the entry of
  // `old_accessed_at` (the record's previous access time; nullopt when it had no record).
  Result<void> put(lmdb::Txn& txn, std::string_view hash, const Meta& m,
                   std::optional<std::int64_t> old_accessed_at) const;
  // Drops the record of `hash` and its LRU entry of `accessed_at`.
  Result<void> erase(lmdb::Txn& txn, std::string_view hash, std::int64_t accessed_at) const;
  // Stores `bytes` as the record without decoding it or touching the LRU (tests only).
  Result<void> put_raw(lmdb::Txn& txn, std::string_view hash, std::string_view bytes) const;
  Result<void> put_generation_limit(lmdb::Txn& txn, std::uint64_t limit) const;

  // The records in hash order; entries are (hash, encoded Meta).
  Result<lmdb::Cursor> meta_cursor(const lmdb::Txn& txn) const;
  // The LRU, oldest first; entries are lru_key()s with empty values.
  Result<lmdb::Cursor> lru_cursor(const lmdb::Txn& txn) const;
  Result<void> erase_lru(lmdb::Txn& txn, std::string_view lru_key) const;

  // Write commits since open and the syncs LMDB made for them (lmdb::Env). Any thread.
  std::uint64_t commits() const { return env_.commits(); }
  std::uint64_t syncs() const { return env_.syncs(); }
  const std::string& dir() const { return dir_; }

 private:
  // A record as read. `corrupt`: a record is there but does not decode, and not because a newer
  // build wrote it (meta_is_newer): that one is an ordinary miss.
  struct Record {
    std::optional<Meta> meta;
    bool corrupt = false;
  };
  Result<Record> read_record(const lmdb::Txn& txn, std::string_view hash) const;

  Index();
  struct LookupErrors;
  std::string dir_;
  std::unique_ptr<LookupErrors> errors_;  // on the heap: atomics, and Index moves
  lmdb::Env env_;
  lmdb::Dbi meta_ = 0;
  lmdb::Dbi lru_ = 0;
  lmdb::Dbi state_ = 0;
};

}  // namespace cache
