// Owners of LMDB handles, shared by the cache index (cache/index.cc) and the installer's registry
// (installer/registry.cc). The only includer of <lmdb.h> is cache/lmdb.cc: callers see string
// views, database numbers and this file's Error. Tricky: a view returned by get() or a cursor
// points into LMDB's memory map and is valid only until its transaction ends (in a write
// transaction, only until the next put or del); copy what must outlive that.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "conf/result.h"

struct MDB_env;
struct MDB_txn;
struct MDB_cursor;

namespace cache::lmdb {

// `rc` is LMDB's or errno's code; `message` says what failed, then mdb_strerror(rc).
struct Error {
  int rc = 0;
  std::string message;
};

template <class T>
using Result = conf::Result<T, Error>;

// mdb_strerror: LMDB's text for its own codes, strerror's for errno values.
std::string error_text(int rc);

using Dbi = unsigned int;  // MDB_dbi

struct EnvOptions {
  std::size_t map_size = 0;   // bytes of address space (the file grows with the data); 0: default
  unsigned max_dbs = 0;       // named databases; 0: only the unnamed one
  unsigned max_readers = 0;   // 0: LMDB's default (126)
  bool no_meta_sync = false;  // MDB_NOMETASYNC: the meta page is not written synchronously
  bool no_tls = false;        // MDB_NOTLS: read transactions are not tied to their thread
  unsigned mode = 0640;       // of data.mdb and lock.mdb
};

// Owns an MDB_env. Closing it invalidates every dbi, so it must outlive every Txn begun on it.
// Move-only.
class Env {
 public:
  // Creates and opens the environment in the existing directory `dir`. Errors carry LMDB's code.
  static Result<Env> open(const std::string& dir, const EnvOptions& options);

  Env();
  Env(Env&&) noexcept;
  Env& operator=(Env&&) noexcept;
  ~Env();

  // Write transactions committed through this Env, and the fdatasync calls LMDB made for them:
  // one per commit that wrote, none for one that wrote nothing (mdb_txn_commit returns early).
  // Without no_meta_sync the meta page is also written through an O_DSYNC descriptor, a durable
  // write but not a call counted here. Counted by that rule, not measured: LMDB has no hook.
  // Any thread.
  std::uint64_t commits() const;
  std::uint64_t syncs() const;

 private:
  friend class Txn;
  struct State;
  explicit Env(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

// Owns an MDB_txn. A write transaction aborts in its destructor unless committed, so an early
// error return never publishes half an update. LMDB allows one write transaction per Env at a
// time: callers serialise writers (the begin blocks otherwise). Move-only.
class Txn {
 public:
  static Result<Txn> read(const Env& env);
  static Result<Txn> write(const Env& env);

  Txn(Txn&& o) noexcept;
  Txn& operator=(Txn&&) = delete;
  ~Txn();

  // Write transactions only. LMDB frees the transaction whether or not the commit succeeds;
  // the Txn is spent either way.
  Result<void> commit();

  // The named database `name` (nullptr: the unnamed one). `create` makes it when absent (write
  // transactions only). A dbi stays valid for the life of the Env.
  Result<Dbi> open_dbi(const char* name, bool create);

  // The value of `key`, nullopt when absent. The view follows the rule in the file comment.
  Result<std::optional<std::string_view>> get(Dbi dbi, std::string_view key) const;
  // How many entries the database holds (mdb_stat: O(1)).
  Result<std::uint64_t> entries(Dbi dbi) const;
  Result<void> put(Dbi dbi, std::string_view key, std::string_view value);
  // Deleting an absent key is not an error: callers delete what they believe is there.
  Result<void> del(Dbi dbi, std::string_view key);

 private:
  friend class Cursor;
  Txn(MDB_txn* txn, Env::State* env, bool writable);
  MDB_txn* txn_ = nullptr;
  Env::State* env_ = nullptr;
  bool writable_ = false;
  bool wrote_ = false;
};

// Owns an MDB_cursor over one database; walks it in key order (memcmp of the keys). Must be
// destroyed before its transaction ends: scope it inside. Move-only.
class Cursor {
 public:
  struct Entry {
    std::string_view key;
    std::string_view value;
  };
  static Result<Cursor> open(const Txn& txn, Dbi dbi);
  Cursor(Cursor&& o) noexcept;
  Cursor& operator=(Cursor&&) = delete;
  ~Cursor();

  // The first entry / the one after the last returned; nullopt past the end.
  Result<std::optional<Entry>> first();
  Result<std::optional<Entry>> next();
  // The first entry whose key is >= `key` (MDB_SET_RANGE); nullopt past the end.
  Result<std::optional<Entry>> seek(std::string_view key);

 private:
  explicit Cursor(MDB_cursor* c) : cursor_(c) {}
  Result<std::optional<Entry>> step(int op);
  MDB_cursor* cursor_ = nullptr;
};

}  // namespace cache::lmdb
