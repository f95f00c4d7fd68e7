// The work queue between `tusk subscribe sync` (publishes one event per new or changed image)
// and `tusk worker` (takes, registers, acknowledges). Two implementations behind one interface:
// an embedded persistent queue beside the registry (one machine), and RabbitMQ (several worker
// machines share one queue). A message body is opaque here: JSON whose "identifier" field names
// the image (`tusk queue ls` shows it). At-least-once: a message taken and never acknowledged
// (the worker crashed) is delivered again; nothing is lost.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "installer/error.h"

namespace installer {

struct Delivery {
  std::string body;
  std::uint64_t tag = 0;  // the implementation's handle for ack/retry/park
  int attempts = 0;       // deliveries before this one that ended in retry()
};

struct QueuedMessage {
  std::string body;
  int attempts = 0;
  std::string state;       // "ready", "delayed" (retry not yet due), "taken", "parked"
  std::string last_error;  // of the last retry/park ("" when none)
};

class Queue {
 public:
  virtual ~Queue() = default;

  // Durable when it returns (the embedded queue committed; RabbitMQ confirmed a persistent
  // message on a durable queue).
  virtual Result<void> publish(const std::string& body) = 0;

  // The next message that is ready, waiting up to `wait` for one; nullopt when none came.
  // The message is invisible to other takers until ack/retry/park or until its taker dies.
  virtual Result<std::optional<Delivery>> take(std::chrono::milliseconds wait) = 0;

  // Done with it: removed for good.
  virtual Result<void> ack(const Delivery& d) = 0;
  // Failed: delivered again (attempts + 1) no sooner than `delay` from now, with `error` kept.
  virtual Result<void> retry(const Delivery& d, std::chrono::milliseconds delay,
                             const std::string& error) = 0;
  // Failed too often: moved aside (listed as "parked", never delivered again until requeued by
  // an operator or drained).
  virtual Result<void> park(const Delivery& d, const std::string& error) = 0;

  // What waits, in delivery order, parked last. Does not change what is delivered. The embedded
  // queue also shows messages held by live takers ("taken"); RabbitMQ cannot see those.
  virtual Result<std::vector<QueuedMessage>> list() = 0;
  // Removes every message (ready, delayed and parked); returns how many. Messages held by a live
  // taker stay (it will ack, retry or park them), as RabbitMQ's purge leaves unacked ones.
  virtual Result<std::size_t> drain() = 0;

  // For messages: "embedded queue /path" or "amqp://user@host:port/vhost queue tusk.images"
  // (never the password).
  virtual std::string describe() const = 0;
};

// A RabbitMQ URI as RabbitMQ reads it: amqp://USER:PASS@HOST:PORT/VHOST with each part
// percent-decoded (so vhost "/" is written %2F). Port defaults to 5672; an absent or empty path
// means vhost "/" (an empty vhost name is never meant); without USER:PASS@, guest/guest.
struct AmqpUrl {
  std::string user = "guest";
  std::string password = "guest";
  std::string host;  // a name, an IPv4 address or an IPv6 address without its brackets
  int port = 5672;
  std::string vhost = "/";
};

// Pure. Errors (kUsage) say what is wrong and never quote the URL or any part of it, so a
// password can never leak into a message: other schemes (amqps is not supported), a missing
// host, a port that is not 1..65535, a bad %-escape, an unencoded '/' or '@' inside a part, a
// query or fragment.
Result<AmqpUrl> parse_amqp_url(std::string_view url);

// `url` empty: the embedded queue in <registry_dir>/queue (created). "amqp://USER:PASS@HOST:PORT
// [/VHOST]": RabbitMQ, default vhost "/", queue "tusk.images" (with its retry and parked
// companions). Errors: a malformed URL (kUsage), an unreachable or refusing broker (kNetwork),
// an unopenable store (kIo).
Result<std::unique_ptr<Queue>> open_queue(const std::string& url, const std::string& registry_dir);

}  // namespace installer
