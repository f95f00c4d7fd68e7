// The cache index over cache/lmdb.h. Tricky: load() runs before any reader exists and is the one
// place that repairs the index (drops what does not decode, restores lost LRU entries); every
// other function leaves unreadable records alone. lookup() is the readers' path: its failures
// are answered as misses, so they are counted and logged here or nobody would see them.
#include "cache/index.h"

#include <openssl/evp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <vector>

#include "conf/check.h"

namespace cache {
namespace {

// The map is address space only (the file grows with the data), so it is sized generously
// from the cache's max_size: one byte of map per byte of cache, at least 64 GiB, at most
// 64 TiB. A record with its LRU entry takes ~900 bytes of index (tusk-fill-index, 10^5 keys),
// and every object takes at least a 4 KiB block, so a cache of small objects fills its disk
// long before its index (issue 13: no fixed limit short of what the cache can hold).
constexpr std::size_t kMinMapSize = std::size_t{64} << 30;
constexpr std::size_t kMaxMapSize = std::size_t{64} << 40;
// MDB_NOTLS gives every read txn its own reader slot; many workers may read at once.
constexpr unsigned kMaxReaders = 1024;
constexpr std::string_view kNextGenerationKey = "next_generation";
constexpr std::size_t kLruKeyLen = 8 + kHashHexLen;

// An LMDB failure as the cache reports it: kIndex, what was being done, LMDB's text.
template <class R>
conf::Unexpected<Error> index_failure(const R& r, const std::string& what) {
  return conf::unexpected(Error{Errc::kIndex, what + ": " + r.error().message});
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

// One line per kLogEvery seconds at most; the failures in between are counted in the next line.
class RateLimitedLog {
 public:
  static constexpr std::int64_t kLogEvery = 10;
  void error(std::int64_t now, const std::string& what) {
    std::int64_t next = next_at_.load(std::memory_order_relaxed);
    if (now < next || !next_at_.compare_exchange_strong(next, now + kLogEvery)) {
      quiet_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (const std::uint64_t quiet = quiet_.exchange(0); quiet > 0) {
      spdlog::error("cache: lookup: {} ({} more since the last report)", what, quiet);
    } else {
      spdlog::error("cache: lookup: {}", what);
    }
  }

 private:
  std::atomic<std::int64_t> next_at_{std::numeric_limits<std::int64_t>::min()};
  std::atomic<std::uint64_t> quiet_{0};
};

}  // namespace

struct Index::LookupErrors {
  std::atomic<std::uint64_t> count{0};
  RateLimitedLog lmdb;    // LMDB failed
  RateLimitedLog record;  // a record that does not decode

  void add(RateLimitedLog& log, std::int64_t now, const std::string& what) {
    count.fetch_add(1, std::memory_order_relaxed);
    log.error(now, what);
  }
};

Index::Index() : errors_(std::make_unique<LookupErrors>()) {}
Index::Index(Index&&) noexcept = default;
Index& Index::operator=(Index&&) noexcept = default;
Index::~Index() = default;

std::string key_hash(std::string_view key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // Cannot fail for SHA-256 over memory short of allocation failure, which we do not handle.
  const int ok = EVP_Digest(key.data(), key.size(), md, &len, EVP_sha256(), nullptr);
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

std::string lru_key(std::int64_t accessed_at, std::string_view hash) {
  const auto at = static_cast<std::uint64_t>(std::max<std::int64_t>(accessed_at, 0));
  std::string k(8, '\0');
  for (int i = 0; i < 8; ++i) {
    k[i] = static_cast<char>((at >> (8 * (7 - i))) & 0xff);
  }
  k.append(hash);
  return k;
}

std::optional<std::string_view> lru_hash(std::string_view lru_key) {
  if (lru_key.size() != kLruKeyLen) {
    return std::nullopt;
  }
  return lru_key.substr(8);
}

void Accounting::published(std::uint64_t size, const std::optional<Meta>& replaced) {
  if (replaced) {
    bytes -= replaced->size;
  } else {
    objects += 1;
  }
  bytes += size;
}

void Accounting::removed(std::uint64_t size) {
  bytes -= size;
  objects -= 1;
}

void Accounting::evicted(std::uint64_t size) {
  removed(size);
  evictions += 1;
  evicted_bytes += size;
}

std::size_t Index::map_size_for(std::uint64_t max_size) {
  return static_cast<std::size_t>(
      std::clamp<std::uint64_t>(max_size, kMinMapSize, std::uint64_t{kMaxMapSize}));
}

Result<Index> Index::open(const std::string& dir, std::uint64_t max_size) {
  Index index;
  index.dir_ = dir;
  lmdb::EnvOptions o;
  o.map_size = map_size_for(max_size);
  o.max_dbs = 4;
  o.max_readers = kMaxReaders;
  // NOMETASYNC: a system crash may undo the last commit, which only loses a chunk bit or a
  // record (refetched later); data pages are still synced, so the index never lies.
  o.no_meta_sync = true;
  o.no_tls = true;
  auto env = lmdb::Env::open(dir, o);
  if (!env) {
    return index_failure(env, "cache index");
  }
  index.env_ = std::move(*env);
  auto txn = index.write();
  if (!txn) {
    return conf::unexpected(std::move(txn).error());
  }
  const std::pair<const char*, lmdb::Dbi*> dbs[] = {
      {"meta", &index.meta_}, {"lru", &index.lru_}, {"state", &index.state_}};
  for (const auto& [name, dbi] : dbs) {
    auto opened = txn->open_dbi(name, /*create=*/true);
    if (!opened) {
      return index_failure(opened, "cannot open a database in " + dir);
    }
    *dbi = *opened;
  }
  if (auto r = index.commit(*txn); !r) {
    return conf::unexpected(std::move(r).error());
  }
  return index;
}

Result<Loaded> Index::load() {
  auto txn = write();
  if (!txn) {
    return conf::unexpected(std::move(txn).error());
  }
  Loaded out;
  std::vector<std::string> bad;
  std::vector<std::string> missing_lru;
  std::uint64_t max_generation = 0;
  // Every record has one LRU entry (they change in one transaction), so when the counts agree
  // the per-record LRU check is skipped: at 10^6 records it was most of a restart's second
  // (issue 13). Unequal counts (debris of a crash or of older builds) check every record.
  auto records = txn->entries(meta_);
  auto lru_entries = txn->entries(lru_);
  if (!records || !lru_entries) {
    return index_failure(!records ? records : lru_entries, "cannot count " + dir_);
  }
  const bool check_lru = *records != *lru_entries;
  {
    auto cursor = lmdb::Cursor::open(*txn, meta_);
    if (!cursor) {
      return index_failure(cursor, "cannot scan " + dir_);
    }
    for (auto e = cursor->first();; e = cursor->next()) {
      if (!e) {
        return index_failure(e, "cannot scan " + dir_);
      }
      if (!*e) {
        break;
      }
      const auto m = decode_meta((*e)->value);
      if (!m || (*e)->key.size() != kHashHexLen) {
        bad.emplace_back((*e)->key);
        continue;
      }
      out.accounting.bytes += m->size;
      out.accounting.objects += 1;
      max_generation = std::max(max_generation, m->generation);
      if (!check_lru) {
        continue;
      }
      std::string lk = lru_key(m->accessed_at, (*e)->key);
      auto entry = txn->get(lru_, lk);
      if (!entry) {
        return index_failure(entry, "cannot read the LRU in " + dir_);
      }
      if (!*entry) {
        missing_lru.push_back(std::move(lk));
      }
    }
  }
  for (const auto& k : bad) {
    if (auto r = txn->del(meta_, k); !r) {
      return index_failure(r, "cannot drop a record in " + dir_);
    }
  }
  for (const auto& k : missing_lru) {
    if (auto r = txn->put(lru_, k, {}); !r) {
      return index_failure(r, "cannot restore an LRU entry in " + dir_);
    }
  }
  if (!bad.empty()) {
    spdlog::warn("cache: dropped {} unreadable records from {}", bad.size(), dir_);
  }
  auto stored = txn->get(state_, kNextGenerationKey);
  if (!stored) {
    return index_failure(stored, "cannot read state in " + dir_);
  }
  const std::uint64_t counter = *stored && (*stored)->size() == 8 ? decode_u64(**stored) : 1;
  // Defensive: never hand out a generation a record already has.
  out.next_generation = std::max(counter, max_generation + 1);
  if (auto r = commit(*txn); !r) {
    return conf::unexpected(std::move(r).error());
  }
  return out;
}

Result<lmdb::Txn> Index::read() const {
  auto txn = lmdb::Txn::read(env_);
  if (!txn) {
    return index_failure(txn, "index " + dir_);
  }
  return std::move(*txn);
}

Result<lmdb::Txn> Index::write() const {
  auto txn = lmdb::Txn::write(env_);
  if (!txn) {
    return index_failure(txn, "index " + dir_);
  }
  return std::move(*txn);
}

Result<void> Index::commit(lmdb::Txn& txn) const {
  if (auto r = txn.commit(); !r) {
    return index_failure(r, "index " + dir_);
  }
  return {};
}

std::optional<Meta> Index::lookup(std::string_view hash,
                                  const std::function<std::int64_t()>& now) const {
  auto txn = read();
  if (!txn) {
    errors_->add(errors_->lmdb, now(), txn.error().message);
    return std::nullopt;
  }
  auto record = read_record(*txn, hash);
  if (!record) {
    errors_->add(errors_->lmdb, now(), record.error().message);
    return std::nullopt;
  }
  if (record->corrupt) {
    errors_->add(
        errors_->record, now(),
        "the record " + std::string(hash) + " in " + dir_ + " does not decode; answered as a miss");
  }
  return std::move(record->meta);
}

std::uint64_t Index::lookup_errors() const {
  return errors_->count.load(std::memory_order_relaxed);
}

Result<Index::Record> Index::read_record(const lmdb::Txn& txn, std::string_view hash) const {
  auto bytes = txn.get(meta_, hash);
  if (!bytes) {
    return index_failure(bytes, "cannot read record in " + dir_);
  }
  Record out;
  if (*bytes) {
    out.meta = decode_meta(**bytes);
    out.corrupt = !out.meta && !meta_is_newer(**bytes);
  }
  return out;
}

Result<std::optional<Meta>> Index::get(const lmdb::Txn& txn, std::string_view hash) const {
  auto r = read_record(txn, hash);
  if (!r) {
    return conf::unexpected(std::move(r).error());
  }
  return std::move(r->meta);
}

Result<Meta> Index::at_generation(const lmdb::Txn& txn, std::string_view hash,
                                  std::uint64_t generation) const {
  auto m = get(txn, hash);
  if (!m) {
    return conf::unexpected(std::move(m).error());
  }
  if (!*m) {
    return conf::unexpected(Error{Errc::kNotFound, "no record for " + std::string(hash)});
  }
  if ((*m)->generation != generation) {
    return conf::unexpected(Error{Errc::kStale, "record " + std::string(hash) +
                                                    " is at generation " +
                                                    std::to_string((*m)->generation) + ", not " +
                                                    std::to_string(generation)});
  }
  return std::move(**m);
}

Result<Meta> Index::change(lmdb::Txn& txn, std::string_view hash, std::uint64_t generation,
                           const std::function<Result<void>(Meta&)>& apply) const {
  auto m = at_generation(txn, hash, generation);
  if (!m) {
    return m;
  }
  const std::int64_t old_at = m->accessed_at;
  if (auto r = apply(*m); !r) {
    return conf::unexpected(std::move(r).error());
  }
  if (auto r = put(txn, hash, *m, old_at); !r) {
    return conf::unexpected(std::move(r).error());
  }
  return m;
}

Result<void> Index::put(lmdb::Txn& txn, std::string_view hash, const Meta& m,
                        std::optional<std::int64_t> old_accessed_at) const {
  if (old_accessed_at && *old_accessed_at != m.accessed_at) {
    if (auto r = erase_lru(txn, lru_key(*old_accessed_at, hash)); !r) {
      return r;
    }
  }
  if (auto r = txn.put(meta_, hash, encode_meta(m)); !r) {
    return index_failure(r, "cannot write record in " + dir_);
  }
  if (auto r = txn.put(lru_, lru_key(m.accessed_at, hash), {}); !r) {
    return index_failure(r, "cannot write the LRU in " + dir_);
  }
  return {};
}

Result<void> Index::erase(lmdb::Txn& txn, std::string_view hash, std::int64_t accessed_at) const {
  if (auto r = txn.del(meta_, hash); !r) {
    return index_failure(r, "cannot drop record in " + dir_);
  }
  return erase_lru(txn, lru_key(accessed_at, hash));
}

Result<void> Index::put_raw(lmdb::Txn& txn, std::string_view hash, std::string_view bytes) const {
  if (auto r = txn.put(meta_, hash, bytes); !r) {
    return index_failure(r, "cannot write record in " + dir_);
  }
  return {};
}

Result<void> Index::put_generation_limit(lmdb::Txn& txn, std::uint64_t limit) const {
  if (auto r = txn.put(state_, kNextGenerationKey, encode_u64(limit)); !r) {
    return index_failure(r, "cannot write state in " + dir_);
  }
  return {};
}

Result<lmdb::Cursor> Index::meta_cursor(const lmdb::Txn& txn) const {
  auto c = lmdb::Cursor::open(txn, meta_);
  if (!c) {
    return index_failure(c, "cannot walk the records in " + dir_);
  }
  return std::move(*c);
}

Result<lmdb::Cursor> Index::lru_cursor(const lmdb::Txn& txn) const {
  auto c = lmdb::Cursor::open(txn, lru_);
  if (!c) {
    return index_failure(c, "cannot walk the LRU in " + dir_);
  }
  return std::move(*c);
}

Result<void> Index::erase_lru(lmdb::Txn& txn, std::string_view lru_key) const {
  if (auto r = txn.del(lru_, lru_key); !r) {
    return index_failure(r, "cannot write the LRU in " + dir_);
  }
  return {};
}

}  // namespace cache
