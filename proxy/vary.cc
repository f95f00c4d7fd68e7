#include "proxy/vary.h"

#include <algorithm>
#include <functional>

namespace proxy {
VarySpec vary_of(const Headers& response) {
  VarySpec spec;
  for (const auto& [k, v] : response) {
    if (!iequals(k, "vary")) {
      continue;
    }
    for_each_list_member(v, [&](std::string_view m) {
      if (m == "*") {
        spec.star = true;
      } else if (!m.empty()) {
        spec.names.push_back(ascii_lowered(m));
      }
    });
  }
  std::sort(spec.names.begin(), spec.names.end());
  spec.names.erase(std::unique(spec.names.begin(), spec.names.end()), spec.names.end());
  spec.too_many = spec.names.size() > kMaxVaryNames;
  return spec;
}

std::string variant_key(const std::string& base_key, const std::vector<std::string>& names,
                        const Headers& request) {
  std::string key = base_key;
  key += "\n#";
  for (const std::string& name : names) {
    key += '\n';
    key += name;
    bool present = false;
    std::string value;
    for (const auto& [k, v] : request) {
      if (!iequals(k, name)) {
        continue;
      }
      for_each_list_member(v, [&](std::string_view m) {
        if (present || !value.empty()) {
          value += ',';
        }
        value += m;
        present = true;
      });
      present = true;
    }
    key += present ? "=" + value : "!";
  }
  return key;
}

std::optional<std::vector<std::string>> VaryIndex::find(const std::string& base_key) const {
  if (count_.load(std::memory_order_acquire) == 0) {
    return std::nullopt;
  }
  std::lock_guard lock(mu_);
  auto it = map_.find(base_key);
  if (it == map_.end()) {
    return std::nullopt;
  }
  return it->second.names;
}

void VaryIndex::learn(const std::string& base_key, const std::vector<std::string>& names) {
  std::lock_guard lock(mu_);
  auto it = map_.find(base_key);
  if (names.empty()) {
    if (it != map_.end()) {
      map_.erase(it);
      order_.erase(std::find(order_.begin(), order_.end(), base_key));
    }
  } else if (it != map_.end()) {
    if (it->second.names != names) {
      it->second = Entry{names, {}};  // the origin varies differently now: variants anew
    }
  } else {
    if (map_.size() >= kMaxObjects) {
      map_.erase(order_.front());
      order_.erase(order_.begin());
    }
    map_.emplace(base_key, Entry{names, {}});
    order_.push_back(base_key);
  }
  count_.store(map_.size(), std::memory_order_release);
}

bool VaryIndex::admit(const std::string& base_key, const std::string& key) {
  std::lock_guard lock(mu_);
  auto it = map_.find(base_key);
  if (it == map_.end()) {
    return false;
  }
  const std::size_t h = std::hash<std::string>{}(key);
  if (it->second.variants.count(h) != 0) {
    return true;
  }
  if (it->second.variants.size() >= kMaxVariants) {
    return false;
  }
  it->second.variants.insert(h);
  return true;
}

std::size_t VaryIndex::size() const { return count_.load(std::memory_order_acquire); }

}  // namespace proxy
