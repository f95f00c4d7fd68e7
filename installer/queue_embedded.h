// The embedded work queue: one LMDB environment in <registry>/queue/ (its own files: LMDB forbids
// a second env on the registry's file in one process). Several processes may share it; LMDB's
// writer lock serialises them. Tricky: a lease is "taken by pid P started at T", so a taker that
// dies (kill -9) leaves no lock behind — the next take sees P gone and delivers the message
// again; the start time guards against a recycled pid. One thread per EmbeddedQueue; never use
// one across fork() (open another in the child).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "cache/lmdb.h"
#include "installer/queue.h"

namespace installer {

// The largest body publish() accepts (kFormat beyond): an event is a small JSON object.
inline constexpr std::size_t kMaxQueueBody = 1u << 20;

enum class RecordState : std::uint8_t { kReady = 0, kTaken = 1, kParked = 2 };

// One message as stored, keyed by its sequence number (8 bytes, big-endian: key order is FIFO).
struct QueueRecord {
  RecordState state = RecordState::kReady;
  std::uint32_t attempts = 0;
  std::int32_t pid = 0;         // the taker while kTaken
  std::uint64_t pid_start = 0;  // its start time (process_start_time)
  std::int64_t not_before = 0;  // unix ms: not delivered before (retry delay)
  std::int64_t published = 0;   // unix ms
  std::string error;            // of the last retry/park
  std::string body;
};

// Versioned binary encoding (a leading 'Q', version 1, fixed fields, then error and body with
// their lengths). decode() returns nullopt for another version, a wrong length or an unknown
// state: the queue reports such a record as corrupt (kFormat), never guesses.
std::string encode_queue_record(const QueueRecord& r);
std::optional<QueueRecord> decode_queue_record(std::string_view data);

struct EmbeddedQueueOptions {
  // Address space of the LMDB map = the most the queue can hold; publish() beyond it fails with
  // a clear kIo "full" error and the queue stays usable.
  std::size_t map_size = std::size_t{256} << 20;
  // Wall clock in unix milliseconds (stored in records, so shared by processes). Tests inject a
  // manual one; empty: std::chrono::system_clock.
  std::function<std::int64_t()> now_ms;
  // How often take(wait) looks again while nothing is ready (another process may publish).
  std::chrono::milliseconds poll{50};
};

class EmbeddedQueue final : public Queue {
 public:
  // Creates `dir` and the environment in it when absent. Errors: kIo naming `dir`.
  static Result<std::unique_ptr<EmbeddedQueue>> open(const std::string& dir,
                                                     EmbeddedQueueOptions options = {});

  // Queue's contract, plus: publish refuses a body over kMaxQueueBody (kFormat); take returns the
  // ready message with the lowest sequence number (a retried message keeps its place and is
  // ready again once its delay has passed); ack/retry/park of a message this process does not
  // hold: kBusy (another live process holds it) or kUsage (no longer queued); a corrupt record
  // makes take/list fail with kFormat naming its sequence number (drain removes it).
  // list() shows a message held by a live process as "taken", one whose taker died as "ready".
  // drain() leaves messages held by live processes (as RabbitMQ's purge leaves unacked ones):
  // their takers will ack, retry or park them.
  Result<void> publish(const std::string& body) override;
  Result<std::optional<Delivery>> take(std::chrono::milliseconds wait) override;
  Result<void> ack(const Delivery& d) override;
  Result<void> retry(const Delivery& d, std::chrono::milliseconds delay,
                     const std::string& error) override;
  Result<void> park(const Delivery& d, const std::string& error) override;
  Result<std::vector<QueuedMessage>> list() override;
  Result<std::size_t> drain() override;
  std::string describe() const override;

 private:
  EmbeddedQueue() = default;
  std::int64_t now() const;
  Result<std::optional<Delivery>> try_take();
  // Visits the messages in sequence order (`record` nullopt: corrupt) until `visit` returns
  // false. The key view lives for the call only.
  Result<void> walk(
      const cache::lmdb::Txn& txn,
      const std::function<bool(std::string_view key, std::optional<QueueRecord> record)>& visit);
  // Applies `change` to a message this process holds: the new record, or nullopt to delete it.
  Result<void> settle(const Delivery& d,
                      const std::function<std::optional<QueueRecord>(QueueRecord)>& change);

  std::string dir_;
  EmbeddedQueueOptions options_;
  cache::lmdb::Env env_;
  cache::lmdb::Dbi messages_ = 0;
  cache::lmdb::Dbi meta_ = 0;
  int pid_ = 0;
  std::uint64_t pid_start_ = 0;
};

}  // namespace installer
