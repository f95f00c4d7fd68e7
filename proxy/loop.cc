// EventLoop implementation: a persistent user-triggered event drains the posted queue.
#include "proxy/loop.h"

#include <event2/event.h>
#include <event2/thread.h>

#include <cstdlib>

#include "conf/check.h"

namespace proxy {
namespace {
// libevent needs its locking callbacks before the first event_base exists; do it once.
void init_libevent_threads() {
  static const bool done = [] {
    if (evthread_use_pthreads() != 0) {
      std::abort();
    }
    return true;
  }();
  (void)done;
}
}  // namespace

EventLoop::EventLoop(std::string name, bool changelist) : name_(std::move(name)) {
  init_libevent_threads();
  event_config* cfg = event_config_new();
  if (changelist) {
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
  }
  base_ = event_base_new_with_config(cfg);
  event_config_free(cfg);
  TUSK_CHECK(base_ != nullptr);
  wakeup_ = event_new(base_, -1, EV_PERSIST, &EventLoop::on_wakeup, this);
  event_add(wakeup_, nullptr);
}

EventLoop::~EventLoop() {
  stop();
  drain();  // run what is left so posted closures release their captures on a known thread
  event_free(wakeup_);
  event_base_free(base_);
}

void EventLoop::start() {
  thread_ = std::thread([this] { run(); });
}

void EventLoop::run() {
  loop_thread_.store(std::this_thread::get_id());
  event_base_loop(base_, EVLOOP_NO_EXIT_ON_EMPTY);
  loop_thread_.store(std::thread::id{});
}

void EventLoop::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  // A loopbreak before the thread enters event_base_loop is lost (the loop clears the flag
  // when it starts): the wakeup event, processed however late the loop starts, breaks too.
  event_active(wakeup_, EV_READ, 0);
  event_base_loopbreak(base_);
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) {
    thread_.join();
  }
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) {
      return;
    }
    queue_.push_back(std::move(fn));
  }
  event_active(wakeup_, EV_READ, 0);
}

void EventLoop::on_wakeup(int, short, void* self) { static_cast<EventLoop*>(self)->drain(); }

void EventLoop::drain() {
  std::vector<std::function<void()>> batch;
  bool stopping = false;
  {
    std::lock_guard lock(mu_);
    batch.swap(queue_);
    stopping = stopping_;
  }
  if (stopping) {
    event_base_loopbreak(base_);
  }
  for (auto& fn : batch) {
    fn();
  }
}

}  // namespace proxy
