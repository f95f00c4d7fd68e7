// Pins, batched touches and the LRU walk. Tricky: the walk reads the pins under pin_mu_ while it
// picks victims; a pin taken after that does not save a victim already picked, which is harmless
// because a reader holding an fd keeps its bytes (files are unlinked, not truncated).
#include "cache/evictor.h"

#include <utility>

#include "conf/check.h"

namespace cache {

void Evictor::pin(const std::string& hash) {
  std::lock_guard lock(pin_mu_);
  pins_[hash] += 1;
}

void Evictor::unpin(const std::string& hash) {
  std::lock_guard lock(pin_mu_);
  auto it = pins_.find(hash);
  TUSK_CHECK(it != pins_.end());
  if (--it->second == 0) {
    pins_.erase(it);
  }
}

bool Evictor::pinned_any() const {
  std::lock_guard lock(pin_mu_);
  return !pins_.empty();
}

void Evictor::touch(std::string hash, std::int64_t at) {
  std::lock_guard lock(touch_mu_);
  touched_[std::move(hash)] = at;
}

bool Evictor::touched_any() const {
  std::lock_guard lock(touch_mu_);
  return !touched_.empty();
}

Result<void> Evictor::apply_touches(lmdb::Txn& txn, const Index& index) {
  std::unordered_map<std::string, std::int64_t> batch;
  {
    std::lock_guard lock(touch_mu_);
    batch.swap(touched_);
  }
  for (const auto& [hash, at] : batch) {
    auto m = index.get(txn, hash);
    if (!m) {
      return conf::unexpected(std::move(m).error());
    }
    if (!*m || (*m)->accessed_at >= at) {
      continue;  // gone, or a newer create already stamped it
    }
    const std::int64_t old_at = (*m)->accessed_at;
    (*m)->accessed_at = at;
    if (auto r = index.put(txn, hash, **m, old_at); !r) {
      return r;
    }
  }
  return {};
}

Result<std::optional<std::vector<Victim>>> Evictor::make_room(lmdb::Txn& txn, const Index& index,
                                                              std::string_view exclude,
                                                              const Budget& b, std::uint64_t size) {
  auto enough = [&](std::uint64_t freed) {
    const std::uint64_t after = b.used > freed ? b.used - freed : 0;
    return after + size <= b.max_size &&
           (b.min_free == 0 || b.disk_free + freed >= b.min_free + size);
  };
  if (enough(0)) {
    return std::optional<std::vector<Victim>>(std::vector<Victim>{});
  }
  return evict(txn, index, exclude, /*partial=*/false, enough);
}

bool Evictor::must_shrink(const Budget& b) {
  return b.used > b.max_size || (b.min_free > 0 && b.disk_free < b.min_free);
}

Result<std::vector<Victim>> Evictor::shrink(lmdb::Txn& txn, const Index& index, const Budget& b,
                                            double low_watermark) {
  const bool over = b.used > b.max_size;
  const bool low_disk = b.min_free > 0 && b.disk_free < b.min_free;
  const auto target = static_cast<std::uint64_t>(low_watermark * static_cast<double>(b.max_size));
  auto enough = [&](std::uint64_t freed) {
    const std::uint64_t after = b.used > freed ? b.used - freed : 0;
    return (!over || after <= target) && (!low_disk || b.disk_free + freed >= b.min_free);
  };
  auto picked = evict(txn, index, {}, /*partial=*/true, enough);
  if (!picked) {
    return conf::unexpected(std::move(picked).error());
  }
  return std::move(**picked);
}

Result<std::optional<std::vector<Victim>>> Evictor::evict(
    lmdb::Txn& txn, const Index& index, std::string_view exclude, bool partial,
    const std::function<bool(std::uint64_t)>& enough) {
  if (auto r = apply_touches(txn, index); !r) {
    return conf::unexpected(std::move(r).error());
  }
  std::vector<Victim> victims;
  std::vector<std::int64_t> accessed_at;  // of each victim: its LRU entry goes with it
  std::vector<std::string> dead_entries;
  std::uint64_t freed = 0;
  {
    auto cursor = index.lru_cursor(txn);
    if (!cursor) {
      return conf::unexpected(std::move(cursor).error());
    }
    std::lock_guard pin_lock(pin_mu_);
    for (auto e = cursor->first(); !enough(freed); e = cursor->next()) {
      if (!e) {
        return conf::unexpected(Error{
            Errc::kIndex, "cannot walk the LRU in " + index.dir() + ": " + e.error().message});
      }
      if (!*e) {
        break;
      }
      const std::string_view key = (*e)->key;
      const auto hash = lru_hash(key);
      if (!hash) {
        dead_entries.emplace_back(key);
        continue;
      }
      if (*hash == exclude || pins_.count(std::string(*hash)) != 0) {
        continue;
      }
      auto m = index.get(txn, *hash);
      if (!m) {
        return conf::unexpected(std::move(m).error());
      }
      if (!*m || lru_key((*m)->accessed_at, *hash) != key) {
        dead_entries.emplace_back(key);
        continue;
      }
      freed += (*m)->size;
      victims.push_back(Victim{std::string(*hash), (*m)->generation, (*m)->size});
      accessed_at.push_back((*m)->accessed_at);
    }
  }
  if (!partial && !enough(freed)) {
    return std::optional<std::vector<Victim>>{};
  }
  for (const auto& key : dead_entries) {
    if (auto r = index.erase_lru(txn, key); !r) {
      return conf::unexpected(std::move(r).error());
    }
  }
  for (std::size_t i = 0; i < victims.size(); ++i) {
    if (auto r = index.erase(txn, victims[i].hash, accessed_at[i]); !r) {
      return conf::unexpected(std::move(r).error());
    }
  }
  return std::optional<std::vector<Victim>>(std::move(victims));
}

}  // namespace cache
