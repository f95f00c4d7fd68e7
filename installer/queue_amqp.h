// The work queue on RabbitMQ (librabbitmq), for several worker machines sharing one queue.
// Three durable queues on the default exchange: `tusk.images` (ready), `tusk.images.retry`
// (delayed: per-message expiration, dead-lettered back to tusk.images when it runs out) and
// `tusk.images.parked`. Messages are persistent and every publish waits for the broker's confirm.
// Tricky: AMQP has no "look without taking", so list() takes every message on a second channel
// without acknowledging and closes that channel, which requeues them (briefly invisible to
// workers meanwhile; messages held by workers are not seen at all). A delay is a TTL on a queue
// head, so a short delay behind a long one waits for it (backoff delays only grow, so in practice
// they queue in order). One thread per AmqpQueue.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "installer/queue.h"

namespace installer {

inline constexpr const char* kAmqpQueue = "tusk.images";
inline constexpr const char* kAmqpRetryQueue = "tusk.images.retry";
inline constexpr const char* kAmqpParkedQueue = "tusk.images.parked";

struct AmqpOptions {
  std::chrono::milliseconds connect_timeout{5000};  // TCP connect
  std::chrono::milliseconds io_timeout{10000};      // login, every reply and confirm, each send
  std::chrono::milliseconds poll{200};              // take(wait): how often basic.get asks again
  std::size_t list_limit = 10000;                   // list(): per queue, at most this many
};

class AmqpQueue final : public Queue {
 public:
  // Connects, logs in, opens a channel in confirm mode and declares the three queues.
  // Errors: kNetwork naming host:port (unreachable, timeout, refused login, a queue declared
  // elsewhere with other arguments), never the password.
  static Result<std::unique_ptr<AmqpQueue>> open(const AmqpUrl& url, AmqpOptions options = {});
  ~AmqpQueue() override;

  // Queue's contract, plus: attempts and the last error travel in the headers x-tusk-attempts
  // and x-tusk-error; retry and park publish a copy (confirmed) before acknowledging the original,
  // so a crash between the two duplicates a message but never loses one. A connection the broker
  // closed (or that timed out) fails the call with kNetwork; the next call connects again, and a
  // Delivery taken on the old connection can no longer be settled (kNetwork: the broker has
  // already requeued it). drain() purges the three queues; messages held by workers stay.
  Result<void> publish(const std::string& body) override;
  Result<std::optional<Delivery>> take(std::chrono::milliseconds wait) override;
  Result<void> ack(const Delivery& d) override;
  Result<void> retry(const Delivery& d, std::chrono::milliseconds delay,
                     const std::string& error) override;
  Result<void> park(const Delivery& d, const std::string& error) override;
  Result<std::vector<QueuedMessage>> list() override;
  Result<std::size_t> drain() override;
  std::string describe() const override;

  struct Connection;  // librabbitmq's handles (queue_amqp.cc)

 private:
  AmqpQueue(AmqpUrl url, AmqpOptions options);
  Result<Connection*> connection();
  Result<void> publish_to(const char* queue, const std::string& body, int attempts,
                          const std::string& error, std::int64_t expiration_ms);
  Result<void> settle(const Delivery& d, const char* to, std::int64_t expiration_ms,
                      const std::string& error, int attempts);

  AmqpUrl url_;
  AmqpOptions options_;
  std::unique_ptr<Connection> conn_;
  std::uint64_t generation_ = 0;  // of conn_: the high bits of a Delivery's tag
};

}  // namespace installer
