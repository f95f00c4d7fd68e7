// A scripted upstream for the state-machine tests (fetch_test.cc, request_test.cc): it records
// the requests a fill sends; the test answers them through the recorded callbacks, on the fetch
// loop, unless the fill cancelled the request meanwhile.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>

#include "proxy/fetch.h"

namespace proxy {

class ScriptedOrigin : public Origin {
 public:
  struct Sent {
    s3::Request req;
    s3::Callbacks cb;
    std::shared_ptr<bool> cancelled;
  };
  class ScriptedCall : public Call {
   public:
    explicit ScriptedCall(std::shared_ptr<bool> c) : cancelled_(std::move(c)) {}
    ~ScriptedCall() override { *cancelled_ = true; }
    void cancel() override { *cancelled_ = true; }

   private:
    std::shared_ptr<bool> cancelled_;
  };
  std::unique_ptr<Call> start(s3::Request req, s3::Callbacks cb) override {
    auto cancelled = std::make_shared<bool>(false);
    {
      std::lock_guard lock(mu_);
      sent_.push_back(Sent{std::move(req), std::move(cb), cancelled});
    }
    cv_.notify_all();
    return std::make_unique<ScriptedCall>(cancelled);
  }
  int retries() const override { return retries_; }
  void set_retries(int n) { retries_ = n; }

  // Waits for the n-th request (0-based) the fetch sent.
  Sent* request(std::size_t n) {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(5), [&] { return sent_.size() > n; })) {
      return nullptr;
    }
    return &sent_[n];
  }
  std::size_t count() {
    std::lock_guard lock(mu_);
    return sent_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Sent> sent_;
  int retries_ = 3;
};

}  // namespace proxy
