// The one wall clock of a tuskd (issue 9): unix seconds, built in main and handed to the store,
// the fill table and every request, so that every freshness and LRU decision of one process
// reads the same time, and tests can move it (ManualClock).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>

namespace conf {

using Clock = std::function<std::int64_t()>;

inline Clock system_clock() {
  return [] {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  };
}

// A clock that stands still until a test moves it. Clocks made by clock() share its time.
class ManualClock {
 public:
  explicit ManualClock(std::int64_t start) : t_(std::make_shared<std::atomic<std::int64_t>>(start)) {}
  Clock clock() const {
    return [t = t_] { return t->load(std::memory_order_relaxed); };
  }
  void advance(std::int64_t seconds) { t_->fetch_add(seconds, std::memory_order_relaxed); }
  void set(std::int64_t t) { t_->store(t, std::memory_order_relaxed); }
  std::int64_t now() const { return t_->load(std::memory_order_relaxed); }

 private:
  std::shared_ptr<std::atomic<std::int64_t>> t_;
};

}  // namespace conf
