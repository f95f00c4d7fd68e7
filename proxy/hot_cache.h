// A worker's cache of recently hit, complete objects: their record, an open body fd and, for
// small objects, the bytes themselves. It saves the index lookup, the open() and the file read
// on repeated hits of hot objects (catalog.json is asked for far more often than images).
// An entry is valid only while the store says the stamp taken before its lookup is current
// (cache::Store::stamp / current): a replaced, refreshed or evicted object is never served from
// here, and a change of one object leaves the other entries alone. One per worker loop; not
// thread-safe by design.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "cache/meta.h"
#include "cache/store.h"
#include "proxy/body_file.h"

namespace proxy {

struct HotEntry {
  cache::Meta meta;
  BodyFilePtr body;
  std::shared_ptr<const std::string> bytes;  // the whole body when small, else null
  std::int64_t touched_at = 0;               // last access reported to the store's LRU
  cache::Stamp stamp;  // store.stamp(key) read before the lookup that returned `meta`
};

class HotCache {
 public:
  static constexpr std::size_t kMaxEntries = 1024;
  static constexpr std::uint64_t kMaxInlineBytes = 64 * 1024;

  // The entry for `key` while store.current(entry.stamp); a stale entry is dropped. One atomic
  // load: the store does not hash the key again.
  HotEntry* find(const std::string& key, const cache::Store& store) {
    auto it = map_.find(key);
    if (it == map_.end()) {
      return nullptr;
    }
    if (!store.current(it->second.stamp)) {
      map_.erase(it);
      return nullptr;
    }
    return &it->second;
  }

  void put(const std::string& key, HotEntry entry) {
    if (map_.size() >= kMaxEntries) {
      map_.clear();  // crude but bounded: hot objects come straight back
    }
    map_[key] = std::move(entry);
  }

 private:
  std::unordered_map<std::string, HotEntry> map_;
};

}  // namespace proxy
