// The embedded queue over cache/lmdb.h. Tricky: every state change is one short write transaction
// (LMDB serialises writers across processes), and a take scans from the oldest message so that a
// message leased by a dead process is found again in order; the scan is linear, fine for a queue
// of image events (hundreds), not for millions.
#include "installer/queue_embedded.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <thread>

#include "installer/registry.h"

namespace installer {
namespace {

namespace lmdb = cache::lmdb;

constexpr char kMagic = 'Q';
constexpr std::uint8_t kVersion = 1;
constexpr int kMdbMapFull = -30792;  // MDB_MAP_FULL in <lmdb.h> (only cache/lmdb.cc includes it)
constexpr const char* kMessagesDb = "messages";
constexpr const char* kMetaDb = "meta";
constexpr std::string_view kNextSeq = "next_seq";

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}
void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) {
    out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
}

// Reads big-endian integers and length-prefixed strings; any overrun sets `ok` to false.
struct Reader {
  std::string_view in;
  bool ok = true;
  std::uint64_t uint(int bytes) {
    if (in.size() < static_cast<std::size_t>(bytes)) {
      ok = false;
      return 0;
    }
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      v = (v << 8) | static_cast<unsigned char>(in[i]);
    }
    in.remove_prefix(bytes);
    return v;
  }
  std::string string() {
    auto n = uint(4);
    if (!ok || in.size() < n) {
      ok = false;
      return {};
    }
    std::string s(in.substr(0, n));
    in.remove_prefix(n);
    return s;
  }
};

std::string seq_key(std::uint64_t seq) {
  std::string k;
  put_u64(k, seq);
  return k;
}

std::uint64_t key_seq(std::string_view key) {
  Reader r{key};
  auto v = r.uint(8);
  return r.ok && r.in.empty() ? v : 0;
}

}  // namespace

std::string encode_queue_record(const QueueRecord& r) {
  std::string out;
  out.reserve(40 + r.error.size() + r.body.size());
  out.push_back(kMagic);
  out.push_back(static_cast<char>(kVersion));
  out.push_back(static_cast<char>(r.state));
  put_u32(out, r.attempts);
  put_u32(out, static_cast<std::uint32_t>(r.pid));
  put_u64(out, r.pid_start);
  put_u64(out, static_cast<std::uint64_t>(r.not_before));
  put_u64(out, static_cast<std::uint64_t>(r.published));
  put_u32(out, static_cast<std::uint32_t>(r.error.size()));
  out += r.error;
  put_u32(out, static_cast<std::uint32_t>(r.body.size()));
  out += r.body;
  return out;
}

std::optional<QueueRecord> decode_queue_record(std::string_view data) {
  Reader in{data};
  if (in.uint(1) != static_cast<unsigned char>(kMagic) || in.uint(1) != kVersion) {
    return std::nullopt;
  }
  QueueRecord r;
  auto state = in.uint(1);
  if (state > static_cast<std::uint8_t>(RecordState::kParked)) {
    return std::nullopt;
  }
  r.state = static_cast<RecordState>(state);
  r.attempts = static_cast<std::uint32_t>(in.uint(4));
  r.pid = static_cast<std::int32_t>(in.uint(4));
  r.pid_start = in.uint(8);
  r.not_before = static_cast<std::int64_t>(in.uint(8));
  r.published = static_cast<std::int64_t>(in.uint(8));
  r.error = in.string();
  r.body = in.string();
  if (!in.ok || !in.in.empty()) {
    return std::nullopt;
  }
  return r;
}

Result<std::unique_ptr<EmbeddedQueue>> EmbeddedQueue::open(const std::string& dir,
                                                           EmbeddedQueueOptions options) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return fail(Errc::kIo, "embedded queue " + dir + ": " + ec.message());
  }
  lmdb::EnvOptions o;
  o.map_size = options.map_size;
  o.max_dbs = 2;
  o.mode = 0600;
  auto env = lmdb::Env::open(dir, o);
  if (!env) {
    return fail(Errc::kIo, "embedded queue " + dir + ": " + env.error().message);
  }
  std::unique_ptr<EmbeddedQueue> q(new EmbeddedQueue());
  q->dir_ = dir;
  q->options_ = std::move(options);
  q->env_ = std::move(*env);
  q->pid_ = static_cast<int>(::getpid());
  q->pid_start_ = process_start_time(q->pid_);
  auto txn = lmdb::Txn::write(q->env_);
  if (!txn) {
    return fail(Errc::kIo, "embedded queue " + dir + ": " + txn.error().message);
  }
  auto messages = txn->open_dbi(kMessagesDb, /*create=*/true);
  auto meta = messages ? txn->open_dbi(kMetaDb, /*create=*/true) : messages;
  if (!meta) {
    return fail(Errc::kIo, "embedded queue " + dir + ": " + meta.error().message);
  }
  if (auto c = txn->commit(); !c) {
    return fail(Errc::kIo, "embedded queue " + dir + ": " + c.error().message);
  }
  q->messages_ = *messages;
  q->meta_ = *meta;
  return q;
}

std::int64_t EmbeddedQueue::now() const {
  if (options_.now_ms) {
    return options_.now_ms();
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string EmbeddedQueue::describe() const { return "embedded queue " + dir_; }

namespace {

// LMDB's error as the queue's: a full map gets its own message (what to do about it).
Error store_error(const std::string& dir, std::size_t map_size, const lmdb::Error& e) {
  if (e.rc == kMdbMapFull) {
    return Error{Errc::kIo, "embedded queue " + dir + " is full (" +
                                std::to_string(map_size >> 20) +
                                " MiB): ack, park or drain messages first"};
  }
  return Error{Errc::kIo, "embedded queue " + dir + ": " + e.message};
}

Error corrupt(const std::string& dir, std::uint64_t seq) {
  return Error{Errc::kFormat, "embedded queue " + dir + ": message " + std::to_string(seq) +
                                  " is corrupt (unknown version or damaged record); " +
                                  "`tusk queue drain` removes it"};
}

}  // namespace

#define TUSK_QUEUE_TRY(expr)                                                   \
  if (const auto& r_ = (expr); !r_) {                                          \
    return conf::unexpected(store_error(dir_, options_.map_size, r_.error())); \
  }

Result<void> EmbeddedQueue::publish(const std::string& body) {
  if (body.size() > kMaxQueueBody) {
    return fail(Errc::kFormat, "a queue message is at most " + std::to_string(kMaxQueueBody) +
                                   " bytes; this one has " + std::to_string(body.size()));
  }
  auto txn = lmdb::Txn::write(env_);
  TUSK_QUEUE_TRY(txn);
  auto next = txn->get(meta_, kNextSeq);
  TUSK_QUEUE_TRY(next);
  std::uint64_t seq = 1;
  if (*next) {
    seq = key_seq(**next);
    if (seq == 0) {
      return fail(Errc::kFormat, "embedded queue " + dir_ + ": its sequence counter is corrupt");
    }
  }
  QueueRecord r;
  r.published = now();
  r.body = body;
  TUSK_QUEUE_TRY(txn->put(messages_, seq_key(seq), encode_queue_record(r)));
  TUSK_QUEUE_TRY(txn->put(meta_, kNextSeq, seq_key(seq + 1)));
  TUSK_QUEUE_TRY(txn->commit());
  return {};
}

Result<void> EmbeddedQueue::walk(
    const lmdb::Txn& txn,
    const std::function<bool(std::string_view, std::optional<QueueRecord>)>& visit) {
  auto cursor = lmdb::Cursor::open(txn, messages_);
  TUSK_QUEUE_TRY(cursor);
  for (auto e = cursor->first();; e = cursor->next()) {
    TUSK_QUEUE_TRY(e);
    if (!*e || !visit((*e)->key, decode_queue_record((*e)->value))) {
      return {};
    }
  }
}

Result<std::optional<Delivery>> EmbeddedQueue::try_take() {
  auto txn = lmdb::Txn::write(env_);
  TUSK_QUEUE_TRY(txn);
  const std::int64_t t = now();
  std::optional<std::pair<std::uint64_t, QueueRecord>> found;
  std::optional<std::uint64_t> damaged;
  auto walked = walk(*txn, [&](std::string_view key, std::optional<QueueRecord> rec) {
    if (!rec) {
      damaged = key_seq(key);
      return false;
    }
    bool ready = (rec->state == RecordState::kReady && rec->not_before <= t) ||
                 (rec->state == RecordState::kTaken && !process_alive(rec->pid, rec->pid_start));
    if (ready) {
      found.emplace(key_seq(key), std::move(*rec));
    }
    return !ready;
  });
  if (!walked) {
    return conf::unexpected(walked.error());
  }
  if (damaged) {
    return conf::unexpected(corrupt(dir_, *damaged));
  }
  if (!found) {
    return std::optional<Delivery>();
  }
  auto& [seq, rec] = *found;
  rec.state = RecordState::kTaken;
  rec.pid = pid_;
  rec.pid_start = pid_start_;
  TUSK_QUEUE_TRY(txn->put(messages_, seq_key(seq), encode_queue_record(rec)));
  TUSK_QUEUE_TRY(txn->commit());
  Delivery d;
  d.body = std::move(rec.body);
  d.tag = seq;
  d.attempts = static_cast<int>(rec.attempts);
  return std::optional<Delivery>(std::move(d));
}

Result<std::optional<Delivery>> EmbeddedQueue::take(std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto d = try_take();
    if (!d || *d) {
      return d;
    }
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      return d;
    }
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
        left, std::chrono::milliseconds(std::max<std::int64_t>(1, options_.poll.count()))));
  }
}

Result<void> EmbeddedQueue::settle(
    const Delivery& d, const std::function<std::optional<QueueRecord>(QueueRecord)>& change) {
  auto txn = lmdb::Txn::write(env_);
  TUSK_QUEUE_TRY(txn);
  const std::string key = seq_key(d.tag);
  auto value = txn->get(messages_, key);
  TUSK_QUEUE_TRY(value);
  if (!*value) {
    return fail(Errc::kUsage, "embedded queue " + dir_ + ": message " + std::to_string(d.tag) +
                                  " is no longer queued (acknowledged or drained)");
  }
  auto rec = decode_queue_record(**value);
  if (!rec) {
    return conf::unexpected(corrupt(dir_, d.tag));
  }
  if (rec->state != RecordState::kTaken || rec->pid != pid_ || rec->pid_start != pid_start_) {
    return fail(Errc::kBusy, "embedded queue " + dir_ + ": message " + std::to_string(d.tag) +
                                 " is not held by this process");
  }
  auto next = change(std::move(*rec));
  if (next) {
    TUSK_QUEUE_TRY(txn->put(messages_, key, encode_queue_record(*next)));
  } else {
    TUSK_QUEUE_TRY(txn->del(messages_, key));
  }
  TUSK_QUEUE_TRY(txn->commit());
  return {};
}

Result<void> EmbeddedQueue::ack(const Delivery& d) {
  return settle(d, [](QueueRecord) { return std::optional<QueueRecord>(); });
}

Result<void> EmbeddedQueue::retry(const Delivery& d, std::chrono::milliseconds delay,
                                  const std::string& error) {
  const std::int64_t due = now() + std::max<std::int64_t>(0, delay.count());
  return settle(d, [&](QueueRecord r) {
    r.state = RecordState::kReady;
    r.pid = 0;
    r.pid_start = 0;
    r.attempts += 1;
    r.not_before = due;
    r.error = error;
    return std::optional<QueueRecord>(std::move(r));
  });
}

Result<void> EmbeddedQueue::park(const Delivery& d, const std::string& error) {
  return settle(d, [&](QueueRecord r) {
    r.state = RecordState::kParked;
    r.pid = 0;
    r.pid_start = 0;
    r.error = error;
    return std::optional<QueueRecord>(std::move(r));
  });
}

Result<std::vector<QueuedMessage>> EmbeddedQueue::list() {
  auto txn = lmdb::Txn::read(env_);
  TUSK_QUEUE_TRY(txn);
  const std::int64_t t = now();
  std::vector<QueuedMessage> waiting, parked;
  std::optional<std::uint64_t> damaged;
  auto walked = walk(*txn, [&](std::string_view key, std::optional<QueueRecord> rec) {
    if (!rec) {
      damaged = key_seq(key);
      return false;
    }
    QueuedMessage m;
    m.body = std::move(rec->body);
    m.attempts = static_cast<int>(rec->attempts);
    m.last_error = std::move(rec->error);
    switch (rec->state) {
      case RecordState::kReady:
        m.state = rec->not_before > t ? "delayed" : "ready";
        break;
      case RecordState::kTaken:
        m.state = process_alive(rec->pid, rec->pid_start) ? "taken" : "ready";
        break;
      case RecordState::kParked:
        m.state = "parked";
        break;
    }
    (rec->state == RecordState::kParked ? parked : waiting).push_back(std::move(m));
    return true;
  });
  if (!walked) {
    return conf::unexpected(walked.error());
  }
  if (damaged) {
    return conf::unexpected(corrupt(dir_, *damaged));
  }
  for (auto& m : parked) {
    waiting.push_back(std::move(m));
  }
  return waiting;
}

Result<std::size_t> EmbeddedQueue::drain() {
  auto txn = lmdb::Txn::write(env_);
  TUSK_QUEUE_TRY(txn);
  std::vector<std::string> doomed;
  auto walked = walk(*txn, [&](std::string_view key, std::optional<QueueRecord> rec) {
    // A corrupt record goes too: drain is how an operator gets rid of it.
    if (!rec || rec->state != RecordState::kTaken || !process_alive(rec->pid, rec->pid_start)) {
      doomed.emplace_back(key);
    }
    return true;
  });
  if (!walked) {
    return conf::unexpected(walked.error());
  }
  for (const auto& key : doomed) {
    TUSK_QUEUE_TRY(txn->del(messages_, key));
  }
  TUSK_QUEUE_TRY(txn->commit());
  return doomed.size();
}

#undef TUSK_QUEUE_TRY

}  // namespace installer
