// Vary (RFC 9111 §4.1): responses stored per variant of the request headers they name.
// An object whose origin answers with `Vary: a, b` is stored under one cache key per variant:
// the object's key plus the normalised values of a and b in the request (variant_key). Which
// names an object varies on is learnt from its responses and kept in the VaryIndex, in memory:
// the first response of a varying object (and the first after a restart) teaches the index and
// is stored as the variant of the request that brought it; from then on requests look up, fill
// and store their own variant.
// Pure functions plus one small thread-safe map; no I/O.
// Tricky: `*` anywhere in any Vary line means "never matches" (never stored, never reused); an
// absent header and an empty one are different variants; a request header that is sent twice
// counts as its lines joined with ", ".
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "proxy/http_text.h"

namespace proxy {

// Names a response varies on, beyond which it is not stored (passed through).
inline constexpr std::size_t kMaxVaryNames = 8;

struct VarySpec {
  bool star = false;               // `*` in any form: never stored, never reused
  std::vector<std::string> names;  // lower case, sorted, no duplicates; empty: does not vary
  bool too_many = false;           // more than kMaxVaryNames names: not stored
};
// Every Vary line of a response, as one list.
VarySpec vary_of(const Headers& response);

// The cache key of the variant of `base_key` that a request with `request` headers selects
// among `names` (sorted, lower case). Each name's value: its lines joined with ",", each member
// trimmed of whitespace; an absent header is marked apart from an empty one. The suffix starts
// with "\n#", which no object key can hold (routes refuse control characters).
std::string variant_key(const std::string& base_key, const std::vector<std::string>& names,
                        const Headers& request);

// Which names each varying object varies on, learnt from its responses, and which of its
// variants are stored (at most kMaxVariants per object; more are passed through). Memory only,
// at most kMaxObjects objects (then the oldest learnt are forgotten: their next response
// teaches them again). Any thread.
class VaryIndex {
 public:
  static constexpr std::size_t kMaxVariants = 32;
  static constexpr std::size_t kMaxObjects = 65536;

  // The names `base_key` varies on; nullopt when it is not known to vary. Lock-free while no
  // object varies (S3 and Walrus send no Vary): the common case costs one atomic load.
  std::optional<std::vector<std::string>> find(const std::string& base_key) const;
  // A response of `base_key` said it varies on `names` (empty: it does not vary any more).
  void learn(const std::string& base_key, const std::vector<std::string>& names);
  // Whether the variant `key` of `base_key` may be stored: it is one already counted, or there
  // is room for one more. Counts it.
  bool admit(const std::string& base_key, const std::string& key);
  std::size_t size() const;

 private:
  struct Entry {
    std::vector<std::string> names;
    std::unordered_set<std::size_t> variants;  // hashes of the stored variants' keys
  };
  mutable std::mutex mu_;
  std::unordered_map<std::string, Entry> map_;
  std::vector<std::string> order_;  // learning order, for forgetting the oldest
  std::atomic<std::size_t> count_{0};
};

}  // namespace proxy
