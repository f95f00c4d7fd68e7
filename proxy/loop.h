// EventLoop: one libevent event_base run by one thread, plus a thread-safe way for other threads
// to hand it work (post). Every worker, the fetch loop and the admin listener are EventLoops.
// Tricky: posted closures run on the loop thread in FIFO order; closures posted after stop() are
// dropped (their captures are destroyed on the stopping thread).
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

struct event_base;
struct event;

namespace proxy {

class EventLoop {
 public:
  // `changelist`: coalesce the event changes of one loop iteration into one epoll_ctl per fd
  // (a connection arms its write event per answer and libevent drops it once written: an
  // epoll_ctl pair per small hit without it). For loops whose fds are never dup()ed, as libevent
  // requires: the HTTP workers.
  explicit EventLoop(std::string name, bool changelist = false);
  ~EventLoop();  // stops and joins

  event_base* base() const { return base_; }
  const std::string& name() const { return name_; }

  // Runs the loop on a new thread.
  void start();
  // Runs the loop on the calling thread until stop() (used by tests and single-threaded tools).
  void run();
  // Asks the loop to exit after the current iteration; joins when started with start().
  void stop();

  // After stop(): runs what was posted before it, on the calling thread (the loop's owner
  // tearing down), so that no posted closure outlives what it points to.
  void run_pending() { drain(); }

  // Queues `fn` to run on the loop thread. Safe from any thread, including the loop's own.
  void post(std::function<void()> fn);

  bool in_loop_thread() const { return std::this_thread::get_id() == loop_thread_.load(); }

  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

 private:
  static void on_wakeup(int, short, void* self);
  void drain();

  std::string name_;
  event_base* base_ = nullptr;
  event* wakeup_ = nullptr;
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
  std::atomic<std::thread::id> loop_thread_{};
};

}  // namespace proxy
