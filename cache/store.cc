// The disk cache: an LMDB index ("meta", "lru", "state") plus one body file per generation.
// Tricky: create() runs in three steps so a slow fallocate/fsync never holds the writer lock:
// reserve (locked: evict, allocate a generation, mark it in flight), make the file durable
// (unlocked), publish (locked). The background orphan scan decides under the same lock and keeps
// in-flight generations, so it can never unlink a file between its creation and its publication.
#include "cache/store.h"

#include <fcntl.h>
#include <lmdb.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <set>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "conf/check.h"

namespace cache {
namespace {
// Bumps the store's epoch when it goes out of scope, i.e. after the change is committed.
struct EpochBump {
  explicit EpochBump(std::atomic<std::uint64_t>& e) : epoch(e) {}
  ~EpochBump() { epoch.fetch_add(1, std::memory_order_release); }
  std::atomic<std::uint64_t>& epoch;
};
}  // namespace
namespace {

// Sparse: LMDB only reserves address space; the file grows with the data.
constexpr std::size_t kMapSize = std::size_t{64} << 30;
// MDB_NOTLS gives every read txn its own reader slot; many workers may read at once.
constexpr unsigned kMaxReaders = 1024;
// Generations are persisted in blocks so a create does not need its own commit for the counter.
constexpr std::uint64_t kGenerationBlock = 1024;
constexpr std::string_view kNextGenerationKey = "next_generation";
constexpr std::size_t kHashHexLen = 64;
constexpr std::size_t kLruKeyLen = 8 + kHashHexLen;

auto fail(Errc code, std::string message) {
  return conf::unexpected(Error{code, std::move(message)});
}
template <class R>
auto pass(R&& r) {
  return conf::unexpected(std::forward<R>(r).error());
}

std::string sys_error(std::string_view what, const std::string& path, int e) {
  return std::string(what) + " " + path + ": " +
         std::error_code(e, std::system_category()).message();
}

std::string hex_sha256(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // Cannot fail for SHA-256 over memory short of allocation failure, which we do not handle.
  const int ok = EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  TUSK_CHECK(ok == 1 && len == 32);
  (void)ok;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * len, '\0');
  for (unsigned i = 0; i < len; ++i) {
    out[2 * i] = kHex[md[i] >> 4];
    out[2 * i + 1] = kHex[md[i] & 0xf];
  }
  return out;
}

// Big-endian time first: LMDB's default memcmp order is then oldest-first.
std::string lru_key(std::int64_t accessed_at, std::string_view hash) {
  const auto at = static_cast<std::uint64_t>(std::max<std::int64_t>(accessed_at, 0));
  std::string k(8, '\0');
  for (int i = 0; i < 8; ++i) {
    k[i] = static_cast<char>((at >> (8 * (7 - i))) & 0xff);
  }
  k.append(hash);
  return k;
}

// The generation counter in "state", little-endian like the records.
std::string encode_u64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  }
  return out;
}
std::uint64_t decode_u64(std::string_view s) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8 && i < s.size(); ++i) {
    v |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[i])) << (8 * i);
  }
  return v;
}

MDB_val mdb_val(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
std::string_view view(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

// Owns an MDB_env; closing it invalidates every dbi, so it outlives all transactions.
class Env {
 public:
  Env() = default;
  explicit Env(MDB_env* env) : env_(env) {}
  Env(Env&& o) noexcept : env_(std::exchange(o.env_, nullptr)) {}
  Env& operator=(Env&& o) noexcept {
    if (this != &o) {
      reset();
      env_ = std::exchange(o.env_, nullptr);
    }
    return *this;
  }
  ~Env() { reset(); }
  MDB_env* get() const { return env_; }

 private:
  void reset() {
    if (env_ != nullptr) {
      mdb_env_close(env_);
      env_ = nullptr;
    }
  }
  MDB_env* env_ = nullptr;
};

// Owns an MDB_txn: aborts in the destructor unless committed, so an early error return can
// never publish half an update.
class Txn {
 public:
  Txn(Txn&& o) noexcept : txn_(std::exchange(o.txn_, nullptr)) {}
  Txn& operator=(Txn&&) = delete;
  ~Txn() {
    if (txn_ != nullptr) {
      mdb_txn_abort(txn_);
    }
  }
  static Result<Txn> begin(MDB_env* env, unsigned flags) {
    MDB_txn* t = nullptr;
    if (int rc = mdb_txn_begin(env, nullptr, flags, &t); rc != 0) {
      return fail(Errc::kIndex, std::string("cannot begin LMDB transaction: ") + mdb_strerror(rc));
    }
    return Txn(t);
  }
  // LMDB frees the txn whether or not the commit succeeds.
  Result<void> commit() {
    const int rc = mdb_txn_commit(std::exchange(txn_, nullptr));
    if (rc != 0) {
      return fail(Errc::kIndex, std::string("LMDB commit failed: ") + mdb_strerror(rc));
    }
    return {};
  }
  MDB_txn* get() const { return txn_; }

 private:
  explicit Txn(MDB_txn* t) : txn_(t) {}
  MDB_txn* txn_ = nullptr;
};

// Owns an MDB_cursor. Must be destroyed before its transaction ends (scope it inside).
class Cursor {
 public:
  static Result<Cursor> open(const Txn& txn, MDB_dbi dbi) {
    MDB_cursor* c = nullptr;
    if (int rc = mdb_cursor_open(txn.get(), dbi, &c); rc != 0) {
      return fail(Errc::kIndex, std::string("cannot open LMDB cursor: ") + mdb_strerror(rc));
    }
    return Cursor(c);
  }
  Cursor(Cursor&& o) noexcept : cursor_(std::exchange(o.cursor_, nullptr)) {}
  Cursor& operator=(Cursor&&) = delete;
  ~Cursor() {
    if (cursor_ != nullptr) {
      mdb_cursor_close(cursor_);
    }
  }
  // 0, MDB_NOTFOUND at the end, or an LMDB error.
  int get(MDB_val& k, MDB_val& v, MDB_cursor_op op) { return mdb_cursor_get(cursor_, &k, &v, op); }

 private:
  explicit Cursor(MDB_cursor* c) : cursor_(c) {}
  MDB_cursor* cursor_ = nullptr;
};

Result<void> db_put(const Txn& txn, MDB_dbi dbi, std::string_view k, std::string_view v) {
  MDB_val key = mdb_val(k);
  MDB_val val = mdb_val(v);
  if (int rc = mdb_put(txn.get(), dbi, &key, &val, 0); rc != 0) {
    return fail(Errc::kIndex, std::string("LMDB put failed: ") + mdb_strerror(rc));
  }
  return {};
}

// Deleting an absent key is not an error: callers delete what they believe is there.
Result<void> db_del(const Txn& txn, MDB_dbi dbi, std::string_view k) {
  MDB_val key = mdb_val(k);
  if (int rc = mdb_del(txn.get(), dbi, &key, nullptr); rc != 0 && rc != MDB_NOTFOUND) {
    return fail(Errc::kIndex, std::string("LMDB delete failed: ") + mdb_strerror(rc));
  }
  return {};
}

void unlink_quietly(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cache: {}", sys_error("cannot unlink", path, errno));
  }
}

Result<void> fsync_dir(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return fail(Errc::kIo, sys_error("cannot open directory", path, errno));
  }
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0) {
    return fail(Errc::kIo, sys_error("cannot fsync directory", path, e));
  }
  return {};
}

// mkdir that tolerates an existing directory; a new one is made durable in its parent.
Result<void> ensure_dir(const std::string& parent, const std::string& path) {
  if (::mkdir(path.c_str(), 0750) == 0) {
    return fsync_dir(parent);
  }
  if (errno != EEXIST) {
    return fail(Errc::kIo, sys_error("cannot create directory", path, errno));
  }
  return {};
}

struct Victim {
  std::string hash;
  std::string lru_key;
  std::uint64_t generation = 0;
  std::uint64_t size = 0;
};

}  // namespace

struct Store::Impl {
  Options opts;
  std::string index_dir;
  std::string objects_dir;
  Env env;
  MDB_dbi meta_db = 0;
  MDB_dbi lru_db = 0;
  MDB_dbi state_db = 0;

  // LMDB allows one writer; this also guards every counter below it.
  mutable std::mutex write_mu;
  std::atomic<std::uint64_t> epoch{0};
  std::uint64_t used = 0;      // sizes of indexed objects
  std::uint64_t reserved = 0;  // sizes of creates between reserve and publish
  std::uint64_t objects = 0;
  std::uint64_t evictions = 0;
  std::uint64_t evicted_bytes = 0;
  std::uint64_t orphans_removed = 0;
  std::uint64_t next_generation = 1;
  std::uint64_t generation_limit = 1;  // next_generation may grow up to this without a commit
  std::set<std::uint64_t> in_flight;   // generations whose file exists but is not yet published

  // Lock order: write_mu, then pin_mu.
  std::mutex pin_mu;
  std::unordered_map<std::string, std::uint64_t> pins;

  std::mutex touch_mu;
  std::unordered_map<std::string, std::int64_t> touched;

  std::atomic<bool> stop{false};
  mutable std::mutex reconcile_mu;
  mutable std::condition_variable reconcile_cv;
  bool reconciled = false;
  std::thread reconciler;

  std::string dir_of(std::string_view hash) const {
    return objects_dir + "/" + std::string(hash.substr(0, 2)) + "/" +
           std::string(hash.substr(2, 2));
  }
  std::string path_of(std::string_view hash, std::uint64_t generation) const {
    return dir_of(hash) + "/" + std::string(hash) + "." + std::to_string(generation);
  }

  // The decoded record; nullopt when absent or undecodable (an unknown version is a miss).
  Result<std::optional<Meta>> get_meta(const Txn& txn, std::string_view hash) const {
    MDB_val k = mdb_val(hash);
    MDB_val v;
    const int rc = mdb_get(txn.get(), meta_db, &k, &v);
    if (rc == MDB_NOTFOUND) {
      return std::optional<Meta>{};
    }
    if (rc != 0) {
      return fail(Errc::kIndex, "cannot read record in " + index_dir + ": " + mdb_strerror(rc));
    }
    return decode_meta(view(v));
  }

  // Writes `m` as the record of `hash` and moves its LRU entry from `old_accessed_at`.
  Result<void> put_meta(const Txn& txn, std::string_view hash, const Meta& m,
                        std::optional<std::int64_t> old_accessed_at) const {
    if (old_accessed_at && *old_accessed_at != m.accessed_at) {
      if (auto r = db_del(txn, lru_db, lru_key(*old_accessed_at, hash)); !r) {
        return pass(std::move(r));
      }
    }
    if (auto r = db_put(txn, meta_db, hash, encode_meta(m)); !r) {
      return pass(std::move(r));
    }
    return db_put(txn, lru_db, lru_key(m.accessed_at, hash), {});
  }

  Result<std::uint64_t> free_disk() const {
    struct statvfs st {};
    if (::statvfs(objects_dir.c_str(), &st) != 0) {
      return fail(Errc::kIo, sys_error("cannot statvfs", objects_dir, errno));
    }
    return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
  }

  // Writes the access times batched by touch() into `txn`. Called before every eviction walk
  // (and by flush), so that a hit counts as a use at once: the LRU the walk reads is never
  // older than the hits already served. Caller holds write_mu; takes touch_mu inside it.
  Result<void> apply_touches(const Txn& txn) {
    std::unordered_map<std::string, std::int64_t> batch;
    {
      std::lock_guard lock(touch_mu);
      batch.swap(touched);
    }
    for (const auto& [hash, at] : batch) {
      auto m = get_meta(txn, hash);
      if (!m) {
        return pass(std::move(m));
      }
      if (!*m || (*m)->accessed_at >= at) {
        continue;  // gone, or a newer create already stamped it
      }
      const std::int64_t old_at = (*m)->accessed_at;
      (*m)->accessed_at = at;
      if (auto r = put_meta(txn, hash, **m, old_at); !r) {
        return r;
      }
    }
    return {};
  }

  // Walks the LRU oldest first and deletes, inside `txn`, unpinned records other than `exclude`
  // until `enough(freed_bytes)` holds. Without `partial`, deletes nothing when it cannot get
  // there. LRU entries that do not match a record are debris of older crashes: dropped.
  // Returns the victims (their files are the caller's to unlink after the commit).
  template <class Enough>
  Result<std::optional<std::vector<Victim>>> evict(const Txn& txn, std::string_view exclude,
                                                   bool partial, Enough enough) {
    std::vector<Victim> victims;
    std::vector<std::string> dead_entries;
    std::uint64_t freed = 0;
    {
      auto cursor = Cursor::open(txn, lru_db);
      if (!cursor) {
        return pass(std::move(cursor));
      }
      std::lock_guard pin_lock(pin_mu);
      MDB_val k;
      MDB_val v;
      for (int rc = cursor->get(k, v, MDB_FIRST); !enough(freed);
           rc = cursor->get(k, v, MDB_NEXT)) {
        if (rc == MDB_NOTFOUND) {
          break;
        }
        if (rc != 0) {
          return fail(Errc::kIndex, "cannot walk LRU in " + index_dir + ": " + mdb_strerror(rc));
        }
        const std::string_view key = view(k);
        if (key.size() != kLruKeyLen) {
          dead_entries.emplace_back(key);
          continue;
        }
        const std::string_view hash = key.substr(8);
        if (hash == exclude || pins.count(std::string(hash)) != 0) {
          continue;
        }
        auto m = get_meta(txn, hash);
        if (!m) {
          return pass(std::move(m));
        }
        if (!*m || lru_key((*m)->accessed_at, hash) != key) {
          dead_entries.emplace_back(key);
          continue;
        }
        freed += (*m)->size;
        victims.push_back(
            Victim{std::string(hash), std::string(key), (*m)->generation, (*m)->size});
      }
    }
    if (!partial && !enough(freed)) {
      return std::optional<std::vector<Victim>>{};
    }
    for (const auto& key : dead_entries) {
      if (auto r = db_del(txn, lru_db, key); !r) {
        return pass(std::move(r));
      }
    }
    for (const auto& victim : victims) {
      if (auto r = db_del(txn, meta_db, victim.hash); !r) {
        return pass(std::move(r));
      }
      if (auto r = db_del(txn, lru_db, victim.lru_key); !r) {
        return pass(std::move(r));
      }
    }
    return std::optional<std::vector<Victim>>(std::move(victims));
  }

  // After a committed eviction: counters. Caller holds write_mu.
  void account_evicted(const std::vector<Victim>& victims) {
    for (const auto& v : victims) {
      used -= v.size;
      objects -= 1;
      evictions += 1;
      evicted_bytes += v.size;
    }
  }

  void unlink_victims(const std::vector<Victim>& victims) const {
    for (const auto& v : victims) {
      unlink_quietly(path_of(v.hash, v.generation));
    }
  }

  // Step two of create(): the body file, sized, its blocks reserved, durable with its name.
  Result<int> make_body_file(std::string_view hash, std::uint64_t generation, std::uint64_t size) {
    const std::string xx = objects_dir + "/" + std::string(hash.substr(0, 2));
    const std::string dir = dir_of(hash);
    if (auto r = ensure_dir(objects_dir, xx); !r) {
      return pass(std::move(r));
    }
    if (auto r = ensure_dir(xx, dir); !r) {
      return pass(std::move(r));
    }
    const std::string path = path_of(hash, generation);
    int fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0640);
    if (fd < 0 && errno == EEXIST) {
      // This generation was never published by this index (it was just allocated), so the file
      // is debris from a crash that also lost the counter's last commit: not anyone's body.
      spdlog::warn("cache: removing stale body file {}", path);
      unlink_quietly(path);
      fd = ::open(path.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0640);
    }
    if (fd < 0) {
      return fail(Errc::kIo, sys_error("cannot create body file", path, errno));
    }
    auto give_up = [&](Errc code, std::string_view what, int e) {
      ::close(fd);
      unlink_quietly(path);
      return fail(code, sys_error(what, path, e));
    };
    if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
      return give_up(errno == ENOSPC ? Errc::kNoSpace : Errc::kIo, "cannot size", errno);
    }
    if (size > 0 && ::fallocate(fd, 0, 0, static_cast<off_t>(size)) != 0 && errno != EOPNOTSUPP) {
      return give_up(errno == ENOSPC ? Errc::kNoSpace : Errc::kIo, "cannot reserve blocks of",
                     errno);
    }
    // The size and the reservation must survive a crash as well as the name.
    if (::fsync(fd) != 0) {
      return give_up(Errc::kIo, "cannot fsync", errno);
    }
    if (auto r = fsync_dir(dir); !r) {
      ::close(fd);
      unlink_quietly(path);
      return pass(std::move(r));
    }
    return fd;
  }

  // Loads, checks the generation of, changes and stores one record in one write txn.
  template <class Change>
  Result<Meta> update(std::string_view key, std::uint64_t generation, Change change) {
    const std::string hash = hex_sha256(key);
    std::lock_guard lock(write_mu);
    auto txn = Txn::begin(env.get(), 0);
    if (!txn) {
      return pass(std::move(txn));
    }
    auto cur = get_meta(*txn, hash);
    if (!cur) {
      return pass(std::move(cur));
    }
    if (!*cur) {
      return fail(Errc::kNotFound, "no record for " + hash);
    }
    Meta m = std::move(**cur);
    if (m.generation != generation) {
      return fail(Errc::kStale, "record " + hash + " is at generation " +
                                    std::to_string(m.generation) + ", not " +
                                    std::to_string(generation));
    }
    if (auto r = change(m); !r) {
      return pass(std::move(r));
    }
    if (auto r = put_meta(*txn, hash, m, m.accessed_at); !r) {
      return pass(std::move(r));
    }
    if (auto r = txn->commit(); !r) {
      return pass(std::move(r));
    }
    return m;
  }

  // Parses "<objects>/xx/yy/<hash>.<generation>"; nullopt for anything create() would not make.
  std::optional<std::pair<std::string, std::uint64_t>> parse_body_path(
      const std::filesystem::path& p) const {
    const std::string name = p.filename().string();
    const auto dot = name.find('.');
    if (dot != kHashHexLen || dot + 1 >= name.size()) {
      return std::nullopt;
    }
    const std::string hash = name.substr(0, dot);
    if (hash.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return std::nullopt;
    }
    std::uint64_t generation = 0;
    const char* first = name.data() + dot + 1;
    const char* last = name.data() + name.size();
    auto [end, ec] = std::from_chars(first, last, generation);
    if (ec != std::errc() || end != last) {
      return std::nullopt;
    }
    if (p.parent_path() != std::filesystem::path(dir_of(hash))) {
      return std::nullopt;
    }
    return std::make_pair(hash, generation);
  }

  // Background: unlinks body files that no record names (replaced/evicted before a crash,
  // creates that crashed before publishing, records dropped at open). Stops early on `stop`.
  void reconcile() {
    std::uint64_t kept = 0;
    std::uint64_t removed = 0;
    std::error_code ec;
    namespace fs = std::filesystem;
    fs::recursive_directory_iterator it(objects_dir, ec);
    for (; !ec && it != fs::recursive_directory_iterator() && !stop.load();) {
      const fs::path path = it->path();
      std::error_code type_ec;
      const bool regular = it->symlink_status(type_ec).type() == fs::file_type::regular;
      it.increment(ec);
      if (!regular) {
        continue;  // directories are shared with creates running now; never removed
      }
      const auto parsed = parse_body_path(path);
      std::lock_guard lock(write_mu);
      bool orphan = true;
      if (parsed && in_flight.count(parsed->second) != 0) {
        orphan = false;
      } else if (parsed) {
        auto txn = Txn::begin(env.get(), MDB_RDONLY);
        if (!txn) {
          spdlog::error("cache: orphan scan stopped: {}", txn.error().message);
          break;
        }
        auto m = get_meta(*txn, parsed->first);
        if (!m) {
          spdlog::error("cache: orphan scan stopped: {}", m.error().message);
          break;
        }
        orphan = !*m || (*m)->generation != parsed->second;
      }
      if (!orphan) {
        ++kept;
        continue;
      }
      if (::unlink(path.c_str()) == 0) {
        ++removed;
        ++orphans_removed;
      } else if (errno != ENOENT) {
        spdlog::warn("cache: {}", sys_error("cannot unlink orphan", path.string(), errno));
      }
    }
    if (ec) {
      spdlog::warn("cache: orphan scan of {} incomplete: {}", objects_dir, ec.message());
    }
    spdlog::info("cache: orphan scan of {}: kept {} body files, removed {}", objects_dir, kept,
                 removed);
    {
      std::lock_guard lock(reconcile_mu);
      reconciled = true;
    }
    reconcile_cv.notify_all();
  }

  // At open: counters from "meta" (no directory walk); undecodable records are dropped (their
  // files go in the orphan scan); a record missing its LRU entry gets one back.
  Result<void> load(const Txn& txn) {
    std::vector<std::string> bad;
    std::vector<std::string> missing_lru;
    std::uint64_t max_generation = 0;
    {
      auto cursor = Cursor::open(txn, meta_db);
      if (!cursor) {
        return pass(std::move(cursor));
      }
      MDB_val k;
      MDB_val v;
      for (int rc = cursor->get(k, v, MDB_FIRST);; rc = cursor->get(k, v, MDB_NEXT)) {
        if (rc == MDB_NOTFOUND) {
          break;
        }
        if (rc != 0) {
          return fail(Errc::kIndex, "cannot scan " + index_dir + ": " + mdb_strerror(rc));
        }
        const auto m = decode_meta(view(v));
        if (!m || k.mv_size != kHashHexLen) {
          bad.emplace_back(view(k));
          continue;
        }
        used += m->size;
        objects += 1;
        max_generation = std::max(max_generation, m->generation);
        std::string lk = lru_key(m->accessed_at, view(k));
        MDB_val lkv = mdb_val(lk);
        MDB_val ignored;
        if (mdb_get(txn.get(), lru_db, &lkv, &ignored) == MDB_NOTFOUND) {
          missing_lru.push_back(std::move(lk));
        }
      }
    }
    for (const auto& k : bad) {
      if (auto r = db_del(txn, meta_db, k); !r) {
        return pass(std::move(r));
      }
    }
    for (const auto& k : missing_lru) {
      if (auto r = db_put(txn, lru_db, k, {}); !r) {
        return pass(std::move(r));
      }
    }
    if (!bad.empty()) {
      spdlog::warn("cache: dropped {} unreadable records from {}", bad.size(), index_dir);
    }

    MDB_val k = mdb_val(kNextGenerationKey);
    MDB_val v;
    std::uint64_t stored = 1;
    if (int rc = mdb_get(txn.get(), state_db, &k, &v); rc == 0 && v.mv_size == 8) {
      stored = decode_u64(view(v));
    } else if (rc != 0 && rc != MDB_NOTFOUND) {
      return fail(Errc::kIndex, "cannot read state in " + index_dir + ": " + mdb_strerror(rc));
    }
    // Defensive: never hand out a generation a record already has.
    next_generation = std::max(stored, max_generation + 1);
    generation_limit = next_generation;
    return {};
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
  Impl& d = *impl_;
  d.stop.store(true);
  if (d.reconciler.joinable()) {
    d.reconciler.join();
  }
  flush();
  {
    std::lock_guard lock(d.pin_mu);
    // A live Pin would call into freed memory later.
    TUSK_CHECK(d.pins.empty() && "a cache::Pin outlived its Store");
  }
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
  auto impl = std::make_unique<Impl>();
  Impl& d = *impl;
  d.opts = std::move(opts);
  d.index_dir = d.opts.dir + "/index";
  d.objects_dir = d.opts.dir + "/objects";
  for (const auto& dir : {d.opts.dir, d.index_dir, d.objects_dir}) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return fail(Errc::kIo, "cannot create directory " + dir + ": " + ec.message());
    }
    if (::access(dir.c_str(), R_OK | W_OK | X_OK) != 0) {
      return fail(Errc::kIo, sys_error("cannot write to", dir, errno));
    }
  }

  MDB_env* raw = nullptr;
  if (int rc = mdb_env_create(&raw); rc != 0) {
    return fail(Errc::kIndex, std::string("cannot create LMDB env: ") + mdb_strerror(rc));
  }
  d.env = Env(raw);
  auto lmdb_fail = [&](const char* what, int rc) {
    return fail(Errc::kIndex, std::string(what) + " " + d.index_dir + ": " + mdb_strerror(rc));
  };
  if (int rc = mdb_env_set_maxdbs(d.env.get(), 4); rc != 0) {
    return lmdb_fail("cannot set max dbs of", rc);
  }
  if (int rc = mdb_env_set_mapsize(d.env.get(), kMapSize); rc != 0) {
    return lmdb_fail("cannot set map size of", rc);
  }
  if (int rc = mdb_env_set_maxreaders(d.env.get(), kMaxReaders); rc != 0) {
    return lmdb_fail("cannot set max readers of", rc);
  }
  // NOMETASYNC: a system crash may undo the last commit, which only loses a chunk bit or a
  // record (refetched later); data pages are still synced, so the index never lies.
  if (int rc = mdb_env_open(d.env.get(), d.index_dir.c_str(), MDB_NOMETASYNC | MDB_NOTLS, 0640);
      rc != 0) {
    return lmdb_fail("cannot open LMDB index", rc);
  }
  {
    auto txn = Txn::begin(d.env.get(), 0);
    if (!txn) {
      return pass(std::move(txn));
    }
    const std::pair<const char*, MDB_dbi*> dbs[] = {
        {"meta", &d.meta_db}, {"lru", &d.lru_db}, {"state", &d.state_db}};
    for (const auto& [name, dbi] : dbs) {
      if (int rc = mdb_dbi_open(txn->get(), name, MDB_CREATE, dbi); rc != 0) {
        return lmdb_fail("cannot open database in", rc);
      }
    }
    if (auto r = d.load(*txn); !r) {
      return pass(std::move(r));
    }
    if (auto r = txn->commit(); !r) {
      return pass(std::move(r));
    }
  }
  spdlog::info("cache: opened {}: {} objects, {} bytes", d.opts.dir, d.objects, d.used);
  std::unique_ptr<Store> store(new Store(std::move(impl)));
  Impl* self = store->impl_.get();
  store->impl_->reconciler = std::thread([self] { self->reconcile(); });
  return store;
}

std::optional<Meta> Store::lookup(std::string_view key) const {
  const Impl& d = *impl_;
  auto txn = Txn::begin(d.env.get(), MDB_RDONLY);
  if (!txn) {
    spdlog::error("cache: lookup: {}", txn.error().message);
    return std::nullopt;
  }
  auto m = d.get_meta(*txn, hex_sha256(key));
  if (!m) {
    spdlog::error("cache: lookup: {}", m.error().message);
    return std::nullopt;
  }
  return std::move(*m);
}

Result<Store::Created> Store::create(std::string_view key, Meta meta) {
  const EpochBump bump(impl_->epoch);  // after the change, on every path
  Impl& d = *impl_;
  const std::string hash = hex_sha256(key);
  if (meta.size > d.opts.max_size) {
    return fail(Errc::kTooLarge, "object of " + std::to_string(meta.size) +
                                     " bytes exceeds the cache size " +
                                     std::to_string(d.opts.max_size));
  }
  meta.chunk_size = d.opts.chunk_size;
  meta.bitmap.assign((meta.chunk_count() + 7) / 8, 0);
  meta.verified = false;
  meta.accessed_at = d.opts.now();

  // Step one: room and a generation.
  std::vector<Victim> victims;
  {
    std::lock_guard lock(d.write_mu);
    auto txn = Txn::begin(d.env.get(), 0);
    if (!txn) {
      return pass(std::move(txn));
    }
    auto old = d.get_meta(*txn, hash);
    if (!old) {
      return pass(std::move(old));
    }
    // The previous generation leaves the index when this one is published.
    const std::uint64_t credit = *old ? (*old)->size : 0;
    std::uint64_t disk = 0;
    if (d.opts.min_free > 0) {
      auto free = d.free_disk();
      if (!free) {
        return pass(std::move(free));
      }
      disk = *free;
    }
    const std::uint64_t others = d.used + d.reserved - std::min(credit, d.used);
    auto enough = [&](std::uint64_t freed) {
      const std::uint64_t after = others > freed ? others - freed : 0;
      return after + meta.size <= d.opts.max_size &&
             (d.opts.min_free == 0 || disk + freed >= d.opts.min_free + meta.size);
    };
    bool dirty = false;
    if (!enough(0)) {
      if (auto r = d.apply_touches(*txn); !r) {
        return pass(std::move(r));
      }
      auto picked = d.evict(*txn, hash, /*partial=*/false, enough);
      if (!picked) {
        return pass(std::move(picked));
      }
      if (!*picked) {
        (void)txn->commit();  // keeps the access times just applied; nothing else changed
        return fail(Errc::kNoSpace,
                    "no room for " + std::to_string(meta.size) + " bytes in " + d.opts.dir + ": " +
                        std::to_string(d.used) + " of " + std::to_string(d.opts.max_size) +
                        " used, the rest pinned or filling" +
                        (d.opts.min_free > 0 ? ", " + std::to_string(disk) + " free on disk"
                                             : std::string()));
      }
      victims = std::move(**picked);
      dirty = true;
    }
    if (d.next_generation == d.generation_limit) {
      const std::uint64_t limit = d.generation_limit + kGenerationBlock;
      if (auto r = db_put(*txn, d.state_db, kNextGenerationKey, encode_u64(limit)); !r) {
        return pass(std::move(r));
      }
      dirty = true;
      if (auto r = txn->commit(); !r) {
        return pass(std::move(r));
      }
      d.generation_limit = limit;
    } else if (dirty) {
      if (auto r = txn->commit(); !r) {
        return pass(std::move(r));
      }
    }
    d.account_evicted(victims);
    meta.generation = d.next_generation++;
    d.in_flight.insert(meta.generation);
    d.reserved += meta.size;
  }
  d.unlink_victims(victims);

  // Step two, unlocked: the bytes exist on disk before any record names them.
  auto fd = d.make_body_file(hash, meta.generation, meta.size);
  if (!fd) {
    std::lock_guard lock(d.write_mu);
    d.in_flight.erase(meta.generation);
    d.reserved -= meta.size;
    return pass(std::move(fd));
  }

  // Step three: publish, replacing whatever generation is current now.
  std::optional<Meta> replaced;
  {
    std::lock_guard lock(d.write_mu);
    d.in_flight.erase(meta.generation);
    d.reserved -= meta.size;
    auto published = [&]() -> Result<std::optional<Meta>> {
      auto txn = Txn::begin(d.env.get(), 0);
      if (!txn) {
        return pass(std::move(txn));
      }
      auto old = d.get_meta(*txn, hash);
      if (!old) {
        return pass(std::move(old));
      }
      std::optional<std::int64_t> old_at;
      if (*old) {
        old_at = (*old)->accessed_at;
      }
      if (auto r = d.put_meta(*txn, hash, meta, old_at); !r) {
        return pass(std::move(r));
      }
      if (auto r = txn->commit(); !r) {
        return pass(std::move(r));
      }
      return std::move(*old);
    }();
    if (!published) {
      ::close(*fd);
      unlink_quietly(d.path_of(hash, meta.generation));
      return pass(std::move(published));
    }
    replaced = std::move(*published);
    if (replaced) {
      d.used -= replaced->size;
    } else {
      d.objects += 1;
    }
    d.used += meta.size;
  }
  if (replaced) {
    unlink_quietly(d.path_of(hash, replaced->generation));
  }
  return Created{std::move(meta), *fd};
}

Result<Meta> Store::mark_chunks(std::string_view key, std::uint64_t generation, std::uint64_t first,
                                std::uint64_t count) {
  return impl_->update(key, generation, [&](Meta& m) -> Result<void> {
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
  });
}

Result<void> Store::refresh(std::string_view key, std::uint64_t generation, std::int64_t stored_at,
                            std::int64_t expires_at, std::uint32_t flags,
                            std::vector<std::pair<std::string, std::string>> headers) {
  const EpochBump bump(impl_->epoch);  // after the change, on every path
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
  const EpochBump bump(impl_->epoch);  // after the change, on every path
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
  const std::string hash = hex_sha256(key);
  {
    auto txn = Txn::begin(d.env.get(), MDB_RDONLY);
    if (!txn) {
      return pass(std::move(txn));
    }
    auto m = d.get_meta(*txn, hash);
    if (!m) {
      return pass(std::move(m));
    }
    if (!*m) {
      return fail(Errc::kNotFound, "no record for " + hash);
    }
    if ((*m)->generation != generation) {
      return fail(Errc::kStale, "record " + hash + " is at generation " +
                                    std::to_string((*m)->generation) + ", not " +
                                    std::to_string(generation));
    }
  }
  const std::string path = d.path_of(hash, generation);
  const int fd = ::open(path.c_str(), (for_write ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    // Replaced or evicted between the read and the open: the file went with its record.
    return fail(errno == ENOENT ? Errc::kStale : Errc::kIo,
                sys_error("cannot open body", path, errno));
  }
  return fd;
}

Result<void> Store::remove(std::string_view key) {
  const EpochBump bump(impl_->epoch);  // after the change, on every path
  Impl& d = *impl_;
  const std::string hash = hex_sha256(key);
  std::uint64_t generation = 0;
  {
    std::lock_guard lock(d.write_mu);
    auto txn = Txn::begin(d.env.get(), 0);
    if (!txn) {
      return pass(std::move(txn));
    }
    auto m = d.get_meta(*txn, hash);
    if (!m) {
      return pass(std::move(m));
    }
    if (!*m) {
      return fail(Errc::kNotFound, "no record for " + hash);
    }
    if (auto r = db_del(*txn, d.meta_db, hash); !r) {
      return r;
    }
    if (auto r = db_del(*txn, d.lru_db, lru_key((*m)->accessed_at, hash)); !r) {
      return r;
    }
    if (auto r = txn->commit(); !r) {
      return r;
    }
    d.used -= (*m)->size;
    d.objects -= 1;
    generation = (*m)->generation;
  }
  unlink_quietly(d.path_of(hash, generation));
  return {};
}

Pin Store::pin(std::string_view key) {
  std::string hash = hex_sha256(key);
  {
    std::lock_guard lock(impl_->pin_mu);
    impl_->pins[hash] += 1;
  }
  return Pin(this, std::move(hash));
}

void Store::unpin(const std::string& hash) {
  std::lock_guard lock(impl_->pin_mu);
  auto it = impl_->pins.find(hash);
  TUSK_CHECK(it != impl_->pins.end());
  if (--it->second == 0) {
    impl_->pins.erase(it);
  }
}

void Store::touch(std::string_view key) {
  const std::int64_t now = impl_->opts.now();
  std::string hash = hex_sha256(key);
  std::lock_guard lock(impl_->touch_mu);
  impl_->touched[std::move(hash)] = now;
}

void Store::flush() {
  // Access times change no record a reader serves: only an eviction moves the epoch (it used
  // to move every 2 s, emptying every worker's hot cache for nothing; issue 9, defect 3).
  Impl& d = *impl_;
  std::vector<Victim> victims;
  {
    std::lock_guard lock(d.write_mu);
    auto written = [&]() -> Result<void> {
      {
        std::lock_guard touch_lock(d.touch_mu);
        if (d.touched.empty()) {
          return {};
        }
      }
      auto txn = Txn::begin(d.env.get(), 0);
      if (!txn) {
        return pass(std::move(txn));
      }
      auto applied = d.apply_touches(*txn);
      if (!applied) {
        return applied;
      }
      return txn->commit();
    }();
    if (!written) {
      spdlog::error("cache: cannot write access times: {}", written.error().message);
    }
    std::uint64_t disk = 0;
    if (d.opts.min_free > 0) {
      auto free = d.free_disk();
      if (!free) {
        spdlog::error("cache: {}", free.error().message);
      } else {
        disk = *free;
      }
    }
    const bool over = d.used > d.opts.max_size;
    const bool low_disk = d.opts.min_free > 0 && disk < d.opts.min_free;
    if (over || low_disk) {
      // Over max_size: go down to the low watermark so the next creates find room without
      // evicting one by one. Low disk alone: free just what the floor needs.
      const auto target =
          static_cast<std::uint64_t>(d.opts.low_watermark * static_cast<double>(d.opts.max_size));
      auto enough = [&](std::uint64_t freed) {
        const std::uint64_t after = d.used > freed ? d.used - freed : 0;
        return (!over || after <= target) && (!low_disk || disk + freed >= d.opts.min_free);
      };
      auto evicted = [&]() -> Result<std::vector<Victim>> {
        auto txn = Txn::begin(d.env.get(), 0);
        if (!txn) {
          return pass(std::move(txn));
        }
        auto picked = d.evict(*txn, {}, /*partial=*/true, enough);
        if (!picked) {
          return pass(std::move(picked));
        }
        if (auto r = txn->commit(); !r) {
          return pass(std::move(r));
        }
        return std::move(**picked);
      }();
      if (!evicted) {
        spdlog::error("cache: eviction failed: {}", evicted.error().message);
      } else {
        victims = std::move(*evicted);
        d.account_evicted(victims);
        if (!victims.empty()) {
          d.epoch.fetch_add(1, std::memory_order_release);
        }
      }
    }
  }
  d.unlink_victims(victims);
}

std::uint64_t Store::epoch() const { return impl_->epoch.load(std::memory_order_acquire); }

Stats Store::stats() const {
  std::lock_guard lock(impl_->write_mu);
  return Stats{impl_->used, impl_->objects, impl_->evictions, impl_->evicted_bytes,
               impl_->orphans_removed};
}

const Options& Store::options() const { return impl_->opts; }

std::string Store::body_path(std::string_view key, std::uint64_t generation) const {
  return impl_->path_of(hex_sha256(key), generation);
}

void Store::wait_for_reconcile() const {
  std::unique_lock lock(impl_->reconcile_mu);
  impl_->reconcile_cv.wait(lock, [&] { return impl_->reconciled; });
}

Result<void> Store::put_raw_record_for_testing(std::string_view key, std::string_view bytes) {
  Impl& d = *impl_;
  std::lock_guard lock(d.write_mu);
  auto txn = Txn::begin(d.env.get(), 0);
  if (!txn) {
    return pass(std::move(txn));
  }
  if (auto r = db_put(*txn, d.meta_db, hex_sha256(key), bytes); !r) {
    return r;
  }
  return txn->commit();
}

}  // namespace cache
