// An in-memory Queue for the unit tests of what drives a queue (subscription sync, the worker):
// records every call. The queues themselves are tested for real in queue_test.cc and against
// RabbitMQ in tests/integration.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include "installer/queue.h"

namespace installer {

class FakeQueue : public Queue {
 public:
  Result<void> publish(const std::string& body) override {
    if (fail_publish_after >= 0 && static_cast<int>(published.size()) >= fail_publish_after) {
      return fail(Errc::kNetwork, "broker gone");
    }
    published.push_back(body);
    ready.push_back({body, next_tag++, 0});
    return {};
  }
  Result<std::optional<Delivery>> take(std::chrono::milliseconds) override {
    if (ready.empty()) return std::optional<Delivery>();
    Delivery d = ready.front();
    ready.pop_front();
    return std::optional<Delivery>(d);
  }
  Result<void> ack(const Delivery& d) override {
    acked.push_back(d.body);
    return {};
  }
  Result<void> retry(const Delivery& d, std::chrono::milliseconds delay,
                     const std::string& error) override {
    retried.push_back({d.body, delay, error});
    ready.push_back({d.body, next_tag++, d.attempts + 1});
    return {};
  }
  Result<void> park(const Delivery& d, const std::string& error) override {
    parked.push_back({d.body, error});
    return {};
  }
  Result<std::vector<QueuedMessage>> list() override { return std::vector<QueuedMessage>(); }
  Result<std::size_t> drain() override { return std::size_t{0}; }
  std::string describe() const override { return "fake queue"; }

  struct Retry {
    std::string body;
    std::chrono::milliseconds delay;
    std::string error;
  };
  std::vector<std::string> published, acked;
  std::vector<Retry> retried;
  std::vector<std::pair<std::string, std::string>> parked;
  std::deque<Delivery> ready;
  std::uint64_t next_tag = 1;
  int fail_publish_after = -1;
};

}  // namespace installer
