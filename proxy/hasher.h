// The integrity hasher: a thread that runs the fills' digests (cache/digest.h) off the fetch
// loop. MD5 costs about 1.5 s of CPU per GiB; on the fetch loop it would halve the fill rate of
// every upstream transfer of the process (bench/integrity.py). Closures run in FIFO order, so a
// fill's feeds, catch-ups and final check run in the order its fetch posted them.
// The fetch loop copies the bytes it hashes into the closures while `budget()` allows (bytes
// queued plus bytes a digest holds ahead of its frontier); what the budget refuses is read back
// from the body file (the page cache) when the digest gets there.
// Threads: post() from any thread; the closures run on the hasher's own thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace proxy {

class Hasher {
 public:
  explicit Hasher(std::int64_t budget_bytes);
  ~Hasher();  // runs what is queued, then joins

  void post(std::function<void()> fn);
  // Blocks until everything posted so far has run (tests).
  void drain();
  std::atomic<std::int64_t>& budget() { return budget_; }

  Hasher(const Hasher&) = delete;
  Hasher& operator=(const Hasher&) = delete;

 private:
  void run();

  std::atomic<std::int64_t> budget_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<std::function<void()>> queue_;
  bool busy_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace proxy
