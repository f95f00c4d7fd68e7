#include "proxy/hasher.h"

namespace proxy {

Hasher::Hasher(std::int64_t budget_bytes) : budget_(budget_bytes), thread_([this] { run(); }) {}

Hasher::~Hasher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Hasher::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(fn));
  }
  cv_.notify_one();
}

void Hasher::drain() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

void Hasher::run() {
  std::unique_lock lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) {
      return;  // stop_ and nothing left
    }
    std::deque<std::function<void()>> items;
    items.swap(queue_);
    busy_ = true;
    lock.unlock();
    for (auto& fn : items) {
      fn();
      fn = nullptr;  // its captures (buffers, files) go now, not with the batch
    }
    lock.lock();
    busy_ = false;
    idle_cv_.notify_all();
  }
}

}  // namespace proxy
