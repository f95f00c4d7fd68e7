// The LMDB handle owners. Tricky: the counters live in a heap State that every Txn points to, so
// moving an Env (the registry is movable) never leaves a Txn counting into freed memory; and a
// commit counts a sync only when the transaction wrote, because mdb_txn_commit returns before
// its fdatasync when nothing is dirty.
#include "cache/lmdb.h"

#include <lmdb.h>

#include <utility>

namespace cache::lmdb {
namespace {

auto fail(int rc, std::string_view what) {
  return conf::unexpected(Error{rc, std::string(what) + ": " + mdb_strerror(rc)});
}

MDB_val val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

}  // namespace

std::string error_text(int rc) { return mdb_strerror(rc); }

struct Env::State {
  MDB_env* env = nullptr;
  std::atomic<std::uint64_t> commits{0};
  std::atomic<std::uint64_t> syncs{0};
  ~State() {
    if (env != nullptr) {
      mdb_env_close(env);
    }
  }
};

Env::Env() = default;
Env::Env(std::unique_ptr<State> state) : state_(std::move(state)) {}
Env::Env(Env&&) noexcept = default;
Env& Env::operator=(Env&&) noexcept = default;
Env::~Env() = default;

Result<Env> Env::open(const std::string& dir, const EnvOptions& o) {
  auto state = std::make_unique<State>();
  if (int rc = mdb_env_create(&state->env); rc != 0) {
    return fail(rc, "cannot create LMDB environment for " + dir);
  }
  if (o.max_dbs > 0) {
    if (int rc = mdb_env_set_maxdbs(state->env, o.max_dbs); rc != 0) {
      return fail(rc, "cannot set max dbs of " + dir);
    }
  }
  if (o.map_size > 0) {
    if (int rc = mdb_env_set_mapsize(state->env, o.map_size); rc != 0) {
      return fail(rc, "cannot set map size of " + dir);
    }
  }
  if (o.max_readers > 0) {
    if (int rc = mdb_env_set_maxreaders(state->env, o.max_readers); rc != 0) {
      return fail(rc, "cannot set max readers of " + dir);
    }
  }
  const unsigned flags = (o.no_meta_sync ? MDB_NOMETASYNC : 0u) | (o.no_tls ? MDB_NOTLS : 0u);
  if (int rc = mdb_env_open(state->env, dir.c_str(), flags, o.mode); rc != 0) {
    return fail(rc, "cannot open LMDB environment " + dir);
  }
  return Env(std::move(state));
}

std::uint64_t Env::commits() const { return state_->commits.load(std::memory_order_relaxed); }
std::uint64_t Env::syncs() const { return state_->syncs.load(std::memory_order_relaxed); }

Txn::Txn(MDB_txn* txn, Env::State* env, bool writable)
    : txn_(txn), env_(env), writable_(writable) {}
Txn::Txn(Txn&& o) noexcept
    : txn_(std::exchange(o.txn_, nullptr)),
      env_(o.env_),
      writable_(o.writable_),
      wrote_(o.wrote_) {}
Txn::~Txn() {
  if (txn_ != nullptr) {
    mdb_txn_abort(txn_);
  }
}

Result<Txn> Txn::read(const Env& env) {
  MDB_txn* t = nullptr;
  if (int rc = mdb_txn_begin(env.state_->env, nullptr, MDB_RDONLY, &t); rc != 0) {
    return fail(rc, "cannot begin LMDB read transaction");
  }
  return Txn(t, env.state_.get(), false);
}

Result<Txn> Txn::write(const Env& env) {
  MDB_txn* t = nullptr;
  if (int rc = mdb_txn_begin(env.state_->env, nullptr, 0, &t); rc != 0) {
    return fail(rc, "cannot begin LMDB write transaction");
  }
  return Txn(t, env.state_.get(), true);
}

Result<void> Txn::commit() {
  TUSK_CHECK(txn_ != nullptr && writable_);
  if (int rc = mdb_txn_commit(std::exchange(txn_, nullptr)); rc != 0) {
    return fail(rc, "LMDB commit failed");
  }
  env_->commits.fetch_add(1, std::memory_order_relaxed);
  if (wrote_) {
    env_->syncs.fetch_add(1, std::memory_order_relaxed);
  }
  return {};
}

Result<Dbi> Txn::open_dbi(const char* name, bool create) {
  MDB_dbi dbi = 0;
  int rc = mdb_dbi_open(txn_, name, 0, &dbi);
  if (rc == MDB_NOTFOUND && create) {
    rc = mdb_dbi_open(txn_, name, MDB_CREATE, &dbi);
    wrote_ = wrote_ || rc == 0;
  }
  if (rc != 0) {
    return fail(rc,
                std::string("cannot open LMDB database ") + (name != nullptr ? name : "(main)"));
  }
  return dbi;
}

Result<std::uint64_t> Txn::entries(Dbi dbi) const {
  MDB_stat st{};
  if (int rc = mdb_stat(txn_, dbi, &st); rc != 0) {
    return fail(rc, "LMDB stat failed");
  }
  return static_cast<std::uint64_t>(st.ms_entries);
}

Result<std::optional<std::string_view>> Txn::get(Dbi dbi, std::string_view key) const {
  MDB_val k = val(key);
  MDB_val v;
  const int rc = mdb_get(txn_, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) {
    return std::optional<std::string_view>{};
  }
  if (rc != 0) {
    return fail(rc, "LMDB get failed");
  }
  return std::optional<std::string_view>(view(v));
}

Result<void> Txn::put(Dbi dbi, std::string_view key, std::string_view value) {
  MDB_val k = val(key);
  MDB_val v = val(value);
  if (int rc = mdb_put(txn_, dbi, &k, &v, 0); rc != 0) {
    return fail(rc, "LMDB put failed");
  }
  wrote_ = true;
  return {};
}

Result<void> Txn::del(Dbi dbi, std::string_view key) {
  MDB_val k = val(key);
  const int rc = mdb_del(txn_, dbi, &k, nullptr);
  if (rc == MDB_NOTFOUND) {
    return {};
  }
  if (rc != 0) {
    return fail(rc, "LMDB delete failed");
  }
  wrote_ = true;
  return {};
}

Result<Cursor> Cursor::open(const Txn& txn, Dbi dbi) {
  MDB_cursor* c = nullptr;
  if (int rc = mdb_cursor_open(txn.txn_, dbi, &c); rc != 0) {
    return fail(rc, "cannot open LMDB cursor");
  }
  return Cursor(c);
}

Cursor::Cursor(Cursor&& o) noexcept : cursor_(std::exchange(o.cursor_, nullptr)) {}
Cursor::~Cursor() {
  if (cursor_ != nullptr) {
    mdb_cursor_close(cursor_);
  }
}

Result<std::optional<Cursor::Entry>> Cursor::first() { return step(MDB_FIRST); }
Result<std::optional<Cursor::Entry>> Cursor::next() { return step(MDB_NEXT); }

Result<std::optional<Cursor::Entry>> Cursor::seek(std::string_view key) {
  MDB_val k = val(key);
  MDB_val v;
  const int rc = mdb_cursor_get(cursor_, &k, &v, MDB_SET_RANGE);
  if (rc == MDB_NOTFOUND) {
    return std::optional<Entry>{};
  }
  if (rc != 0) {
    return fail(rc, "LMDB cursor failed");
  }
  return std::optional<Entry>(Entry{view(k), view(v)});
}

Result<std::optional<Cursor::Entry>> Cursor::step(int op) {
  MDB_val k;
  MDB_val v;
  const int rc = mdb_cursor_get(cursor_, &k, &v, static_cast<MDB_cursor_op>(op));
  if (rc == MDB_NOTFOUND) {
    return std::optional<Entry>{};
  }
  if (rc != 0) {
    return fail(rc, "LMDB cursor failed");
  }
  return std::optional<Entry>(Entry{view(k), view(v)});
}

}  // namespace cache::lmdb
