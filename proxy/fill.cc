// Fill implementation. FillRunner is the fetch-loop side of one Fill: it learns the object's head
// (from a ranged probe, a HEAD, a full GET or a revalidation), splits the missing bytes into
// chunk-sized ranged GETs (at most `fill.parallel` at once, urgent chunks first), accepts an
// upstream answer only when it is exactly what was asked, and writes each byte at its offset.
// Every chunk has one owner segment and is appended to in order, so a chunk's bytes
// [0, filled) are always on disk without a gap, and resuming is "ask again from filled".
#include "proxy/fill.h"

#include <event2/event.h>
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <ctime>
#include <limits>
#include <list>

#include "s3/printable.h"

namespace proxy {

// ---------------------------------------------------------------- DiskQueue

DiskQueue::DiskQueue() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;  // stop_ and nothing left
      }
      auto fn = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
      lock.unlock();
      fn();
      lock.lock();
      busy_ = false;
      if (queue_.empty()) {
        idle_cv_.notify_all();
      }
    }
  });
}

DiskQueue::~DiskQueue() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void DiskQueue::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(fn));
  }
  cv_.notify_one();
}

void DiskQueue::drain() {
  std::unique_lock lock(mu_);
  idle_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

// ---------------------------------------------------------------- Fill

Fill::Snapshot Fill::snapshot() const {
  std::lock_guard lock(mu_);
  return snap_;
}

std::uint64_t Fill::available_locked(std::uint64_t pos) const {
  if (!snap_.head || chunk_size_ == 0) {
    return 0;
  }
  const std::uint64_t size = snap_.head->size;
  std::uint64_t p = pos;
  while (p < size) {
    std::uint64_t c = p / chunk_size_;
    std::uint64_t in = p % chunk_size_;
    std::uint64_t have = filled_[c];
    if (have <= in) {
      break;
    }
    p = c * chunk_size_ + have;
    std::uint64_t chunk_len = std::min(chunk_size_, size - c * chunk_size_);
    if (have < chunk_len) {
      break;  // the rest of this chunk is still on its way
    }
  }
  return p - pos;
}

std::uint64_t Fill::available_from(std::uint64_t pos) const {
  std::lock_guard lock(mu_);
  return available_locked(pos);
}

bool Fill::wait_head(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  if (snap_.phase != Phase::kStarting) {
    return false;
  }
  head_waiters_.push_back(std::move(wake));
  return true;
}

bool Fill::wait(std::uint64_t pos, std::function<void()> wake, bool eager) {
  std::function<void()> poke;
  {
    std::lock_guard lock(mu_);
    bool ended = snap_.phase == Phase::kDone || snap_.phase == Phase::kFailed;
    if (ended || available_locked(pos) > 0) {
      return false;
    }
    waiters_.push_back(Waiter{pos, std::move(wake), eager});
    if (chunk_size_ > 0) {
      wants_.emplace_back(pos / chunk_size_, pos / chunk_size_, true);
      poke = poke_;
    }
  }
  if (poke) {
    poke();
  }
  return true;
}

void Fill::want(std::uint64_t first, std::uint64_t last) {
  std::function<void()> poke;
  {
    std::lock_guard lock(mu_);
    if (chunk_size_ == 0 || snap_.phase != Phase::kStreaming) {
      return;
    }
    wants_.emplace_back(first / chunk_size_, last / chunk_size_, false);
    poke = poke_;
  }
  if (poke) {
    poke();
  }
}

bool Fill::wake_ready(std::unique_lock<std::mutex>& lock, bool force) {
  std::vector<std::function<void()>> wake;
  bool ended = snap_.phase == Phase::kDone || snap_.phase == Phase::kFailed;
  if (snap_.phase != Phase::kStarting) {
    for (auto& w : head_waiters_) {
      wake.push_back(std::move(w));
    }
    head_waiters_.clear();
  }
  bool deferred = false;
  auto it = std::partition(waiters_.begin(), waiters_.end(), [&](const Waiter& w) {
    if (ended) {
      return false;
    }
    const std::uint64_t n = available_locked(w.pos);
    if (n == 0) {
      return true;
    }
    if (force || w.eager || n >= kWakeBytes) {
      return false;
    }
    // Its chunk is complete (what is readable ends at a chunk boundary or the object's end):
    // nothing more will arrive for it from this transfer, so do not make it wait.
    const std::uint64_t end = w.pos + n;
    if (end % chunk_size_ == 0 || end == snap_.head->size) {
      return false;
    }
    deferred = true;
    return true;
  });
  for (auto w = it; w != waiters_.end(); ++w) {
    wake.push_back(std::move(w->wake));
  }
  waiters_.erase(it, waiters_.end());
  lock.unlock();
  for (auto& fn : wake) {
    fn();
  }
  return deferred;
}

void Fill::set_head(std::shared_ptr<const ObjectHead> head, BodyFilePtr body, std::uint64_t chunk,
                    std::vector<std::uint32_t> filled) {
  std::unique_lock lock(mu_);
  snap_.phase = Phase::kStreaming;
  snap_.head = std::move(head);
  snap_.body = std::move(body);
  chunk_size_ = chunk;
  filled_ = std::move(filled);
  wake_ready(lock);
}

bool Fill::progress(std::uint64_t chunk, std::uint32_t filled) {
  std::unique_lock lock(mu_);
  filled_[chunk] = filled;
  if (waiters_.empty()) {
    return false;
  }
  return wake_ready(lock, /*force=*/false);
}

void Fill::flush() {
  std::unique_lock lock(mu_);
  if (!waiters_.empty() || !head_waiters_.empty()) {
    wake_ready(lock);
  }
}

bool Fill::wait_retired(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  if (retired_) {
    return false;
  }
  retire_waiters_.push_back(std::move(wake));
  return true;
}

void Fill::retire() {
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard lock(mu_);
    retired_ = true;
    wake.swap(retire_waiters_);
  }
  for (auto& fn : wake) {
    fn();
  }
}

void Fill::end(Phase phase, bool not_modified, std::optional<s3::Error> error) {
  std::unique_lock lock(mu_);
  snap_.phase = phase;
  snap_.not_modified = not_modified;
  snap_.error = std::move(error);
  poke_ = nullptr;
  wake_ready(lock);
}

// ---------------------------------------------------------------- helpers

std::optional<ContentRange> parse_content_range(std::string_view v) {
  ContentRange cr;
  if (v.starts_with("bytes ")) {
    v.remove_prefix(6);
    cr.unit = true;
  }
  auto dash = v.find('-');
  auto slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash) {
    return std::nullopt;
  }
  auto num = [](std::string_view s, std::uint64_t& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc() && p == s.data() + s.size();
  };
  if (!num(v.substr(0, dash), cr.first) || !num(v.substr(dash + 1, slash - dash - 1), cr.last) ||
      cr.last < cr.first) {
    return std::nullopt;
  }
  std::uint64_t t = 0;
  if (num(v.substr(slash + 1), t)) {
    if (cr.unit && t <= cr.last) {
      return std::nullopt;  // RFC 9110 §14.4: a complete length at or below last-pos is invalid
    }
    cr.total = t;
  } else if (v.substr(slash + 1) != "*") {
    return std::nullopt;
  }
  return cr;
}

namespace {

bool retriable(const s3::Error& e) {
  switch (e.code) {
    case s3::Errc::kRefused:
    case s3::Errc::kTimeout:
    case s3::Errc::kProtocol:
    case s3::Errc::kServer:
      return true;
    default:
      return false;
  }
}

int open_spool(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) {
    return fd;
  }
  std::string templ = dir + "/spool.XXXXXX";
  fd = ::mkostemp(templ.data(), O_CLOEXEC);
  if (fd >= 0) {
    ::unlink(templ.c_str());
  }
  return fd;
}

s3::Error local_error(std::string message) {
  return s3::Error{s3::Errc::kProtocol, 0, "", std::move(message)};
}

constexpr std::uint64_t kUnknown = std::numeric_limits<std::uint64_t>::max();
// Chunks clients are blocked on may add this many requests beyond fill.parallel: each such
// client (aria2c -x16 opens sixteen) waits on its own chunk and should not queue behind
// prefetching.
constexpr std::size_t kMaxUrgent = 16;

}  // namespace

// ---------------------------------------------------------------- FillRunner

struct Segment {
  enum class Kind {
    kProbeRange,  // first ranged GET of a cold object: its answer also gives the head
    kProbeHead,   // HEAD of a cold object (Walrus, or where the first byte is unknown)
    kRevalidate,  // conditional GET of a stale entry: 304, or a whole new object
    kWhole,       // GET of the whole object (no Range), written sequentially
    kRange,       // ranged GET of chunks this segment owns
  };
  Kind kind = Kind::kRange;
  std::uint64_t first_chunk = 0;
  std::uint64_t end_chunk = 0;  // exclusive
  std::uint64_t next = 0;       // absolute offset of the next byte the answer carries
  std::uint64_t end = 0;        // exclusive end of what was asked (kUnknown before the head)
  int attempts = 0;
  bool not_modified = false;
  s3::HeaderList not_modified_headers;
  std::chrono::steady_clock::time_point sent_at;
  s3::Transfer transfer;
  event* timer = nullptr;
  ~Segment() {
    if (timer != nullptr) {
      event_free(timer);
    }
  }
};

struct FillRunner : std::enable_shared_from_this<FillRunner> {
  enum : std::uint8_t { kMissing = 0, kInFlight = 1, kDone = 2 };

  FillTable& table;
  FillPtr fill;
  conf::Route route;
  std::string upstream_name;
  std::string bucket;
  std::string key;
  std::string object;  // "bucket/key" for log lines: the key is the client's, so escaped
  s3::Client* client;
  FillSeed seed;
  std::uint64_t first_byte;

  std::shared_ptr<ObjectHead> head;
  BodyFilePtr write_fd;
  std::uint64_t generation = 0;
  std::uint64_t cs;  // chunk size
  std::uint64_t chunks = 0;
  std::vector<std::uint8_t> state;
  std::vector<std::uint32_t> filled;
  std::vector<Segment*> owner;
  std::deque<std::uint64_t> urgent;
  std::set<std::uint64_t> wanted;
  std::uint64_t prefetch_cursor = 0;
  std::list<std::unique_ptr<Segment>> segments;
  bool ended = false;

  FillRunner(FillTable& t, FillPtr f, const Target& target, s3::Client* c, FillSeed s,
             std::uint64_t first)
      : table(t),
        fill(std::move(f)),
        route(*target.route),
        upstream_name(target.upstream),
        bucket(target.bucket),
        key(target.key),
        object(s3::printable(target.bucket + "/" + target.key)),
        client(c),
        seed(std::move(s)),
        first_byte(first),
        cs(t.store_.options().chunk_size) {}

  ~FillRunner() {
    if (flush_timer != nullptr) {
      event_free(flush_timer);
    }
  }

  std::uint64_t chunk_len(std::uint64_t c) const { return std::min(cs, head->size - c * cs); }

  // Coalesced wake-ups (Fill::wait): clients left waiting with bytes to read are woken by a
  // one-shot timer at most kWakeDelayMs later.
  event* flush_timer = nullptr;
  std::unique_ptr<std::weak_ptr<FillRunner>> flush_ctx;
  void arm_flush() {
    if (flush_timer == nullptr) {
      flush_ctx = std::make_unique<std::weak_ptr<FillRunner>>(weak_from_this());
      flush_timer = event_new(
          table.fetch_.base(), -1, 0,
          [](int, short, void* arg) {
            if (auto self = static_cast<std::weak_ptr<FillRunner>*>(arg)->lock()) {
              self->fill->flush();
            }
          },
          flush_ctx.get());
    }
    if (!evtimer_pending(flush_timer, nullptr)) {
      timeval tv{0, Fill::kWakeDelayMs * 1000};
      evtimer_add(flush_timer, &tv);
    }
  }
  int max_attempts() const { return client->upstream().retries; }

  // ------------------------------------------------------------ start

  void start() {
    if (seed.partial) {
      if (!adopt_partial(*seed.partial)) {
        return;
      }
      schedule();
      return;
    }
    if (seed.stale) {
      launch(new_segment(Segment::Kind::kRevalidate));
      return;
    }
    switch (table.range_mode(upstream_name)) {
      case RangeMode::kRanges:
        if (first_byte != kUnknown) {
          auto seg = new_segment(Segment::Kind::kProbeRange);
          seg->next = first_byte / cs * cs;
          seg->end = seg->next + cs;
          launch(std::move(seg));
          return;
        }
        launch(new_segment(Segment::Kind::kProbeHead));
        return;
      case RangeMode::kWalrus:
        launch(new_segment(Segment::Kind::kProbeHead));
        return;
      case RangeMode::kNoRanges:
        launch(new_segment(Segment::Kind::kWhole));
        return;
    }
  }

  std::unique_ptr<Segment> new_segment(Segment::Kind kind) {
    auto seg = std::make_unique<Segment>();
    seg->kind = kind;
    seg->end = kUnknown;
    return seg;
  }

  // A fresh entry with missing chunks: continue filling the same generation.
  bool adopt_partial(const cache::Meta& m) {
    auto wfd = table.store_.open_body(fill->cache_key(), m.generation, /*for_write=*/true);
    auto rfd = table.store_.open_body(fill->cache_key(), m.generation);
    if (!wfd || !rfd) {
      if (wfd) {
        ::close(*wfd);
      }
      if (rfd) {
        ::close(*rfd);
      }
      fail(local_error("the partial cache entry vanished"));
      return false;
    }
    auto obj = std::make_shared<ObjectHead>();
    obj->size = m.size;
    obj->etag = m.etag;
    obj->last_modified = m.last_modified;
    obj->content_type = m.content_type;
    obj->replay = m.headers;
    obj->freshness.storable = true;
    obj->freshness.stored_at = m.stored_at;
    obj->freshness.expires_at = m.expires_at;
    obj->stored = true;
    obj->generation = m.generation;
    generation = m.generation;
    cs = m.chunk_size;
    write_fd = std::make_shared<BodyFile>(*wfd);
    install_head(obj, std::make_shared<BodyFile>(*rfd), &m);
    return true;
  }

  // Publishes the head and sizes the chunk tables; `meta` seeds them from a stored bitmap.
  void install_head(std::shared_ptr<ObjectHead> obj, BodyFilePtr body, const cache::Meta* meta) {
    head = std::move(obj);
    chunks = (head->size + cs - 1) / cs;
    state.assign(chunks, kMissing);
    filled.assign(chunks, 0);
    owner.assign(chunks, nullptr);
    if (meta != nullptr) {
      for (std::uint64_t c = 0; c < chunks; ++c) {
        if (meta->has_chunk(c)) {
          state[c] = kDone;
          filled[c] = static_cast<std::uint32_t>(chunk_len(c));
        }
      }
    }
    std::weak_ptr<FillRunner> weak = weak_from_this();
    EventLoop* fetch = &table.fetch_;
    {
      std::lock_guard lock(fill->mu_);
      fill->poke_ = [weak, fetch] {
        fetch->post([weak] {
          if (auto self = weak.lock()) {
            self->schedule();
          }
        });
      };
    }
    if (first_byte != kUnknown && first_byte < head->size) {
      urgent.push_back(first_byte / cs);
    }
    if (!head->stored) {
      // Not storable: whoever asks from now on gets a fetch of their own (no sharing of a
      // private or no-store answer beyond the requests that were already waiting for it).
      table.finished(fill->cache_key(), fill.get());
    }
    fill->set_head(head, std::move(body), cs, filled);
  }

  // Builds the head from a response (200 whole, 206 probe or HEAD) and opens the body file.
  // Returns false after failing the fill. `whole_body` says the answer streams every byte.
  bool create_head(const s3::ResponseHead& h, std::uint64_t size) {
    auto obj = std::make_shared<ObjectHead>();
    obj->size = size;
    obj->etag = h.header("etag");
    obj->last_modified = h.header("last-modified");
    obj->content_type = h.header("content-type");
    if (obj->content_type.empty()) {
      obj->content_type = "application/octet-stream";
    }
    const std::int64_t now = std::time(nullptr);
    obj->freshness = decide(h.headers, route, now);
    obj->replay = replayable_headers(h.headers);
    if (std::string enc = h.header("content-encoding"); !enc.empty() && !iequals(enc, "identity")) {
      if (is_tarball_key(key)) {
        // A gzip tarball uploaded with Content-Encoding: gzip: clients would gunzip it and the
        // eustore checksum would fail. The bytes are the tarball; the coding is a mistake.
        spdlog::warn("dropping 'Content-Encoding: {}' of tarball {}: the bytes are served as is",
                     s3::printable(enc), object);
      } else {
        obj->replay.emplace_back("Content-Encoding", enc);
      }
    }
    int wfd = -1;
    if (obj->freshness.storable) {
      cache::Meta meta;
      meta.size = size;
      meta.etag = obj->etag;
      meta.last_modified = obj->last_modified;
      meta.content_type = obj->content_type;
      meta.stored_at = obj->freshness.stored_at;
      meta.expires_at = obj->freshness.expires_at;
      meta.accessed_at = now;
      meta.flags = obj->freshness.revalidate_each_use ? cache::Meta::kFlagNoCache : 0;
      meta.headers = obj->replay;
      auto created = table.store_.create(fill->cache_key(), std::move(meta));
      if (created) {
        wfd = created->fd;
        generation = created->meta.generation;
        cs = created->meta.chunk_size;
        obj->stored = true;
        obj->generation = generation;
      } else {
        spdlog::warn("not caching {} ({} bytes): {}", object, size, created.error().message);
      }
    }
    if (wfd < 0) {
      wfd = open_spool(table.spool_dir_);
      if (wfd < 0) {
        fail(local_error(std::string("cannot create a spool file: ") + std::strerror(errno)));
        return false;
      }
    }
    write_fd = std::make_shared<BodyFile>(wfd);
    int rfd = -1;
    if (obj->stored) {
      auto body = table.store_.open_body(fill->cache_key(), generation);
      rfd = body ? *body : -1;
    } else {
      // A second open file description, read-only, of the unlinked spool file.
      rfd = ::open(("/proc/self/fd/" + std::to_string(wfd)).c_str(), O_RDONLY | O_CLOEXEC);
    }
    if (rfd < 0) {
      fail(local_error("cannot open the body file for reading"));
      return false;
    }
    install_head(obj, std::make_shared<BodyFile>(rfd), nullptr);
    return true;
  }

  // ------------------------------------------------------------ requests

  void launch(std::unique_ptr<Segment> seg) {
    Segment* s = seg.get();
    segments.push_back(std::move(seg));
    send(s);
  }

  void send(Segment* seg) {
    s3::Request req;
    req.method = seg->kind == Segment::Kind::kProbeHead ? s3::Method::kHead : s3::Method::kGet;
    req.bucket = bucket;
    req.key = key;
    switch (seg->kind) {
      case Segment::Kind::kProbeRange:
        req.range = s3::ByteRange{seg->next, seg->end - 1};
        break;
      case Segment::Kind::kProbeHead:
        break;
      case Segment::Kind::kRevalidate:
        if (!seed.stale->etag.empty()) {
          req.if_none_match = seed.stale->etag;
        } else if (!seed.stale->last_modified.empty()) {
          req.if_modified_since = seed.stale->last_modified;
        }
        break;
      case Segment::Kind::kWhole:
        if (head && seg->next > 0 && table.range_mode(upstream_name) != RangeMode::kNoRanges) {
          // Resume a broken whole-object stream from its first missing byte.
          req.range = s3::ByteRange{seg->next, head->size - 1};
        } else {
          seg->next = 0;  // the answer starts at byte 0; what is on disk already is skipped
        }
        if (head && !head->etag.empty()) {
          req.if_match = head->etag;
        }
        break;
      case Segment::Kind::kRange:
        req.range = s3::ByteRange{seg->next, seg->end - 1};
        if (!head->etag.empty()) {
          req.if_match = head->etag;  // the object cannot change under the fill
        }
        break;
    }
    std::weak_ptr<FillRunner> weak = weak_from_this();
    s3::Callbacks cb;
    cb.on_head = [weak, seg](const s3::ResponseHead& h) {
      auto self = weak.lock();
      return self && self->on_head(seg, h);
    };
    cb.on_data = [weak, seg](std::span<const char> d) {
      auto self = weak.lock();
      return self && self->on_data(seg, d);
    };
    cb.on_done = [weak, seg](conf::Result<void, s3::Error> r) {
      if (auto self = weak.lock()) {
        self->on_done(seg, std::move(r));
      }
    };
    seg->sent_at = std::chrono::steady_clock::now();
    table.metrics_.upstream_request(upstream_name);
    seg->transfer = client->start(std::move(req), std::move(cb));
  }

  // Claims every missing chunk in [first, end) for `seg`; returns false if none was missing.
  bool claim(Segment* seg, std::uint64_t first, std::uint64_t end) {
    bool any = false;
    for (std::uint64_t c = first; c < end; ++c) {
      if (state[c] == kMissing) {
        state[c] = kInFlight;
        owner[c] = seg;
        any = true;
      }
    }
    return any;
  }

  void release(Segment* seg) {
    for (std::uint64_t c = 0; c < chunks; ++c) {
      if (owner[c] == seg) {
        owner[c] = nullptr;
        if (state[c] == kInFlight) {
          state[c] = kMissing;
        }
      }
    }
  }

  void drop(Segment* seg) {
    release(seg);
    for (auto it = segments.begin(); it != segments.end(); ++it) {
      if (it->get() == seg) {
        // The transfer may be the caller: destroy the segment on a later turn of the loop.
        std::shared_ptr<Segment> doomed(std::move(*it));
        segments.erase(it);
        doomed->transfer.cancel();
        table.fetch_.post([doomed] {});
        return;
      }
    }
  }

  // ------------------------------------------------------------ answers

  bool on_head(Segment* seg, const s3::ResponseHead& h) {
    if (ended) {
      return false;
    }
    table.metrics_.upstream_ttfb(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - seg->sent_at).count());
    if (head && etag_changed(h)) {
      // Every answer after the head must be the same object (If-Match normally turns a
      // change into a 412; this catches upstreams that ignore If-Match).
      fail(local_error("object changed upstream during the fill (ETag differs)"));
      return false;
    }
    auto length = h.content_length();
    std::string cr_text = h.header("content-range");
    auto cr = parse_content_range(cr_text);
    switch (seg->kind) {
      case Segment::Kind::kProbeHead: {
        if (h.status != 200 || !length) {
          fail(local_error("unusable answer to HEAD (status " + std::to_string(h.status) + ")"));
          return false;
        }
        if (!create_head(h, *length)) {
          return false;
        }
        return true;  // on_done schedules the body fetches
      }
      case Segment::Kind::kRevalidate:
        if (h.status == 304) {
          seg->not_modified = true;
          seg->not_modified_headers = h.headers;
          return true;
        }
        [[fallthrough]];
      case Segment::Kind::kWhole:
        if (!head) {
          if (h.status != 200 || !length) {
            fail(local_error("unusable answer to GET (status " + std::to_string(h.status) + ")"));
            return false;
          }
          if (!create_head(h, *length)) {
            return false;
          }
          seg->kind = Segment::Kind::kWhole;
          seg->next = 0;
          seg->end = head->size;
          claim(seg, 0, chunks);
          return true;
        }
        return accept_resume(seg, h, length, cr);
      case Segment::Kind::kProbeRange:
        return on_probe_head(seg, h, length, cr);
      case Segment::Kind::kRange:
        return accept_range(seg, h, length, cr);
    }
    return false;
  }

  bool etag_changed(const s3::ResponseHead& h) const {
    std::string e = h.header("etag");
    return !e.empty() && !head->etag.empty() && e != head->etag;
  }

  bool on_probe_head(Segment* seg, const s3::ResponseHead& h, std::optional<std::uint64_t> length,
                     const std::optional<ContentRange>& cr) {
    const std::uint64_t first = seg->next;
    const std::string cr_text = h.header("content-range");
    if (h.status == 206 && cr && cr->unit && cr->total && cr->first == first && length &&
        *length == cr->last - cr->first + 1 && cr->last == std::min(seg->end - 1, *cr->total - 1)) {
      // RFC 9110 §14.4: "bytes a-b/n" states the complete length n.
      table.set_range_mode(upstream_name, RangeMode::kRanges);  // decided by this answer
      if (!create_head(h, *cr->total)) {
        return false;
      }
      seg->kind = Segment::Kind::kRange;
      seg->first_chunk = first / cs;
      seg->end_chunk = seg->first_chunk + 1;
      seg->end = cr->last + 1;
      claim(seg, seg->first_chunk, seg->end_chunk);
      schedule();
      return true;
    }
    if (h.status == 200 && cr) {
      // Walrus: 200 with a unit-less Content-Range whose total cannot be trusted. Learn the
      // size from a HEAD, then fetch ranges accepting this form when it is exact.
      spdlog::info("upstream '{}' answers ranges the Walrus way (200 + '{}'); using HEAD for sizes",
                   upstream_name, s3::printable(cr_text));
      table.set_range_mode(upstream_name, RangeMode::kWalrus);
      launch_after(seg, Segment::Kind::kProbeHead);
      return false;
    }
    if (h.status == 200 && !cr && length) {
      // The upstream ignored Range: this answer is the whole object, in order.
      spdlog::info("upstream '{}' ignores Range; filling objects sequentially", upstream_name);
      table.set_range_mode(upstream_name, RangeMode::kNoRanges);
      if (!create_head(h, *length)) {
        return false;
      }
      seg->kind = Segment::Kind::kWhole;
      seg->next = 0;
      seg->end = head->size;
      claim(seg, 0, chunks);
      return true;
    }
    if (h.status == 206 || h.status == 200) {
      fail(local_error("upstream answered the range probe with an unusable range: '" +
                       s3::printable(cr_text) + "'"));
      return false;
    }
    fail(local_error("unexpected status " + std::to_string(h.status) + " to the range probe"));
    return false;
  }

  // A ranged GET of owned chunks: accept only exactly [next, end).
  bool accept_range(Segment* seg, const s3::ResponseHead& h, std::optional<std::uint64_t> length,
                    const std::optional<ContentRange>& cr) {
    const std::uint64_t want = seg->end - seg->next;
    bool exact = cr && cr->first == seg->next && cr->last == seg->end - 1 && length &&
                 *length == want && (!cr->unit || !cr->total || *cr->total == head->size);
    if (exact && (h.status == 206 || h.status == 200)) {
      return true;
    }
    if (h.status == 200 && !cr && length && *length == head->size) {
      // Ranges are ignored after all: fall back to one sequential whole-object fill.
      table.set_range_mode(upstream_name, RangeMode::kNoRanges);
      switch_to_whole();
      return false;
    }
    fail(local_error("upstream answered a ranged GET with another range: '" +
                     s3::printable(h.header("content-range")) + "'"));
    return false;
  }

  bool accept_resume(Segment* seg, const s3::ResponseHead& h, std::optional<std::uint64_t> length,
                     const std::optional<ContentRange>& cr) {
    if (cr && (h.status == 206 || h.status == 200) && cr->first == seg->next &&
        cr->last == head->size - 1 && length && *length == head->size - seg->next) {
      return true;
    }
    if (h.status == 200 && !cr && length && *length == head->size) {
      seg->next = 0;  // the whole object again: bytes already on disk are skipped
      return true;
    }
    fail(local_error("unusable answer to a resume request (status " + std::to_string(h.status) +
                     ")"));
    return false;
  }

  void launch_after(Segment* old, Segment::Kind kind) {
    drop(old);
    launch(new_segment(kind));
  }

  void launch_whole_after(Segment* old) {
    if (old != nullptr) {
      drop(old);
    }
    auto seg = new_segment(Segment::Kind::kWhole);
    seg->next = 0;
    seg->end = head->size;
    claim(seg.get(), 0, chunks);
    launch(std::move(seg));
  }

  // Cancels every ranged segment (the caller's included) and fetches the rest in one
  // sequential whole-object GET.
  void switch_to_whole() {
    std::vector<Segment*> all;
    for (auto& s : segments) {
      all.push_back(s.get());
    }
    for (Segment* s : all) {
      drop(s);  // bytes already written stay: chunks append
    }
    launch_whole_after(nullptr);
  }

  bool on_data(Segment* seg, std::span<const char> data) {
    if (ended || seg->not_modified) {
      return !ended;
    }
    if (!head || seg->next + data.size() > seg->end) {
      fail(local_error("upstream sent more bytes than it announced"));
      return false;
    }
    std::uint64_t pos = seg->next;
    const char* p = data.data();
    std::size_t left = data.size();
    while (left > 0) {
      const std::uint64_t c = pos / cs;
      const std::uint64_t in = pos % cs;
      const std::uint64_t n = std::min<std::uint64_t>(left, chunk_len(c) - in);
      if (owner[c] == seg && in + n > filled[c]) {
        if (in > filled[c]) {
          fail(local_error("internal: a gap in a chunk"));  // cannot happen: chunks append
          return false;
        }
        const std::uint64_t skip = filled[c] - in;
        if (!write_at(p + skip, n - skip, pos + skip)) {
          return false;
        }
        filled[c] = static_cast<std::uint32_t>(in + n);
        if (fill->progress(c, filled[c])) {
          arm_flush();
        }
        if (filled[c] == chunk_len(c)) {
          state[c] = kDone;
          owner[c] = nullptr;
          queue_mark(c);
        }
      }
      pos += n;
      p += n;
      left -= n;
    }
    seg->next = pos;
    table.metrics_.upstream_bytes(upstream_name, data.size());
    return true;
  }

  bool write_at(const char* p, std::uint64_t n, std::uint64_t off) {
    while (n > 0) {
      ssize_t w = ::pwrite(write_fd->fd(), p, n, static_cast<off_t>(off));
      if (w < 0 && errno == EINTR) {
        continue;
      }
      if (w <= 0) {
        fail(local_error(std::string("writing the cache file failed: ") + std::strerror(errno)));
        return false;
      }
      p += w;
      n -= static_cast<std::uint64_t>(w);
      off += static_cast<std::uint64_t>(w);
    }
    return true;
  }

  // fdatasync, then the chunk's bit in the index: bytes are durable before the index says so.
  void queue_mark(std::uint64_t c) {
    if (!head->stored) {
      return;
    }
    table.disk_.post([store = &table.store_, fd = write_fd, k = fill->cache_key(), gen = generation,
                      c] {
      if (::fdatasync(fd->fd()) != 0) {
        spdlog::error("fdatasync of a cache body failed: {}", std::strerror(errno));
        return;  // the chunk stays unmarked: never claim bytes that may not be on disk
      }
      auto r = store->mark_chunks(k, gen, c, 1);
      if (!r && r.error().code != cache::Errc::kStale && r.error().code != cache::Errc::kNotFound) {
        spdlog::error("marking a chunk durable failed: {}", r.error().message);
      }
    });
  }

  void on_done(Segment* seg, conf::Result<void, s3::Error> r) {
    if (ended) {
      return;
    }
    if (!r) {
      const s3::Error& e = r.error();
      if (e.code == s3::Errc::kCancelled) {
        return;  // we dropped it
      }
      table.metrics_.upstream_error(upstream_name, s3::errc_name(e.code));
      if (seg->kind == Segment::Kind::kProbeRange && !head &&
          e.code == s3::Errc::kRangeNotSatisfiable) {
        // The first chunk lies beyond the object (or it is empty): learn its size first.
        launch_after(seg, Segment::Kind::kProbeHead);
        return;
      }
      bool can_retry = retriable(e) && seg->attempts < max_attempts();
      if (head && head->etag.empty() && seg->kind == Segment::Kind::kRange) {
        can_retry = false;  // without an ETag nothing proves a resumed range is the same object
      }
      if (can_retry) {
        retry(seg, e);
        return;
      }
      // A failed revalidation leaves the stale entry; requests may serve it within grace.
      fail(e);
      return;
    }
    if (seg->not_modified) {
      finish_not_modified(seg);
      return;
    }
    if (seg->kind != Segment::Kind::kProbeHead && head && seg->next != seg->end) {
      s3::Error e = local_error("upstream body ended early");
      table.metrics_.upstream_error(upstream_name, "protocol");
      if (seg->attempts < max_attempts()) {
        retry(seg, e);
        return;
      }
      fail(e);
      return;
    }
    drop(seg);
    schedule();
  }

  void retry(Segment* seg, const s3::Error& e) {
    ++seg->attempts;
    if (head && seg->kind != Segment::Kind::kProbeHead) {
      // Resume from the first byte still missing in what the segment owns.
      if (seg->kind == Segment::Kind::kRange || seg->kind == Segment::Kind::kProbeRange) {
        seg->kind = Segment::Kind::kRange;
        std::uint64_t c = seg->first_chunk;
        while (c < seg->end_chunk && state[c] == kDone) {
          ++c;
        }
        if (c == seg->end_chunk) {
          drop(seg);
          schedule();
          return;
        }
        seg->next = c * cs + filled[c];
      }
      table.metrics_.resumed_fill();
      spdlog::warn("fill of {} broke at byte {} ({}); resuming (attempt {})", object, seg->next,
                   e.message, seg->attempts);
    } else {
      spdlog::warn("upstream request for {} failed ({}); retrying (attempt {})", object, e.message,
                   seg->attempts);
    }
    seg->transfer = s3::Transfer();
    // Exponential backoff: 100 ms, 200 ms, 400 ms, ... capped at 5 s.
    long ms = std::min(5000L, 100L << std::min(seg->attempts - 1, 6));
    timeval tv{ms / 1000, (ms % 1000) * 1000};
    if (seg->timer == nullptr) {
      std::weak_ptr<FillRunner> weak = weak_from_this();
      auto* ctx = new std::pair<std::weak_ptr<FillRunner>, Segment*>(weak, seg);
      seg->timer = event_new(
          table.fetch_.base(), -1, 0,
          [](int, short, void* arg) {
            auto* c = static_cast<std::pair<std::weak_ptr<FillRunner>, Segment*>*>(arg);
            if (auto self = c->first.lock(); self && !self->ended) {
              self->send(c->second);
            }
          },
          ctx);
      timer_contexts.emplace_back(ctx);
    }
    evtimer_add(seg->timer, &tv);
  }
  std::vector<std::unique_ptr<std::pair<std::weak_ptr<FillRunner>, Segment*>>> timer_contexts;

  // ------------------------------------------------------------ scheduling

  void drain_wants() {
    std::vector<std::tuple<std::uint64_t, std::uint64_t, bool>> wants;
    {
      std::lock_guard lock(fill->mu_);
      wants.swap(fill->wants_);
    }
    for (auto [first, last, is_urgent] : wants) {
      last = std::min(last, chunks == 0 ? 0 : chunks - 1);
      if (is_urgent) {
        urgent.push_back(first);
      } else {
        for (std::uint64_t c = first; c <= last && c < chunks; ++c) {
          wanted.insert(c);
        }
      }
    }
  }

  void launch_range(std::uint64_t c) {
    auto seg = new_segment(Segment::Kind::kRange);
    seg->first_chunk = c;
    seg->end_chunk = c + 1;
    seg->next = c * cs + filled[c];
    seg->end = c * cs + chunk_len(c);
    claim(seg.get(), c, c + 1);
    launch(std::move(seg));
  }

  void schedule() {
    if (ended || !head) {
      return;
    }
    drain_wants();
    const RangeMode mode = table.range_mode(upstream_name);
    const bool whole_running = std::any_of(segments.begin(), segments.end(), [](const auto& s) {
      return s->kind == Segment::Kind::kWhole;
    });
    const bool any_missing = std::find(state.begin(), state.end(), kMissing) != state.end();
    if (mode == RangeMode::kNoRanges && !whole_running && any_missing) {
      launch_whole_after(nullptr);
    } else if (mode != RangeMode::kNoRanges) {
      const std::size_t parallel = static_cast<std::size_t>(table.parallel_);
      // Chunks a client is blocked on go first, even beyond the parallel limit (kMaxUrgent).
      while (!urgent.empty() && segments.size() < parallel + kMaxUrgent) {
        std::uint64_t c = urgent.front();
        urgent.pop_front();
        if (c < chunks && state[c] == kMissing) {
          launch_range(c);
        }
      }
      while (segments.size() < parallel) {
        std::uint64_t c = chunks;
        while (!wanted.empty()) {
          std::uint64_t w = *wanted.begin();
          wanted.erase(wanted.begin());
          if (w < chunks && state[w] == kMissing) {
            c = w;
            break;
          }
        }
        if (c == chunks && route.prefetch == conf::Prefetch::kWhole) {
          while (prefetch_cursor < chunks && state[prefetch_cursor] != kMissing) {
            ++prefetch_cursor;
          }
          c = prefetch_cursor;
        }
        if (c >= chunks) {
          break;
        }
        launch_range(c);
      }
    }
    if (segments.empty()) {
      // Complete, or (prefetch none) nothing more asked for: the fill is over. A later client
      // that needs more starts a new fill from the partial entry.
      end(Fill::Phase::kDone, false, std::nullopt, /*leave_after_disk=*/true);
    }
  }

  // ------------------------------------------------------------ endings

  void finish_not_modified(Segment* seg) {
    auto meta = table.store_.lookup(fill->cache_key());
    if (!meta || meta->generation != seed.stale->generation) {
      fail(local_error("cached entry vanished during revalidation"));
      return;
    }
    // RFC 9111 §4.3.4: the 304's end-to-end headers replace the stored ones of the same name.
    Headers merged = replayable_headers(seg->not_modified_headers);
    for (const auto& [k, v] : meta->headers) {
      if (find_header(merged, k).empty()) {
        merged.emplace_back(k, v);
      }
    }
    Headers decide_on = merged;
    for (const char* name : {"date", "age"}) {
      if (auto v = find_header(seg->not_modified_headers, name); !v.empty()) {
        decide_on.emplace_back(name, std::string(v));
      }
    }
    Freshness f = decide(decide_on, route, std::time(nullptr));
    auto r =
        table.store_.refresh(fill->cache_key(), seed.stale->generation, f.stored_at, f.expires_at,
                             f.revalidate_each_use ? cache::Meta::kFlagNoCache : 0, merged);
    if (!r) {
      fail(local_error("could not refresh the cached entry: " + r.error().message));
      return;
    }
    end(Fill::Phase::kDone, true, std::nullopt, false);
  }

  void fail(s3::Error e) {
    if (ended) {
      return;
    }
    spdlog::warn("fill of {} from upstream '{}' failed: {}", object, upstream_name, e.message);
    if (head && head->stored) {
      // Nothing partial or mixed stays behind: the generation is dropped whole.
      (void)table.store_.remove(fill->cache_key());
    }
    end(Fill::Phase::kFailed, false, std::move(e), false);
  }

  // Ends the fill. A failed or revalidated fill leaves the table at once, so the next request
  // starts afresh; one that wrote chunks stays joinable (its bytes readable) until the disk
  // thread marked them durable, so nobody in between sees a stale index and fetches again.
  void end(Fill::Phase phase, bool not_modified, std::optional<s3::Error> error,
           bool leave_after_disk) {
    ended = true;
    for (auto& s : segments) {
      s->transfer.cancel();
    }
    if (leave_after_disk && head && head->stored) {
      table.disk_.post([t = &table, f = fill] { t->finished(f->cache_key(), f.get()); });
    } else {
      table.finished(fill->cache_key(), fill.get());
    }
    fill->end(phase, not_modified, std::move(error));
    // A transfer may be the caller of this function: release them (and this runner) later.
    table.fetch_.post([self = shared_from_this()] {
      self->segments.clear();
      self->table.runners_.erase(self);
    });
  }
};

// ---------------------------------------------------------------- FillTable

FillTable::FillTable(EventLoop& fetch, cache::Store& store, Metrics& metrics,
                     std::map<std::string, s3::Client*> clients, std::string spool_dir,
                     int parallel)
    : fetch_(fetch),
      store_(store),
      metrics_(metrics),
      clients_(std::move(clients)),
      spool_dir_(std::move(spool_dir)),
      parallel_(std::max(1, parallel)) {}

FillTable::~FillTable() {
  // Runs on the owner's thread after the fetch loop stopped: transfers die with their client.
  runners_.clear();
}

FillPtr FillTable::acquire(const std::string& cache_key, const Target& target, FillSeed seed,
                           std::uint64_t first_byte, bool* joined) {
  std::lock_guard lock(mu_);
  if (auto it = fills_.find(cache_key); it != fills_.end()) {
    *joined = true;
    metrics_.coalesced_waiter();
    return it->second;
  }
  *joined = false;
  if (seed.recheck) {
    auto now_meta = store_.lookup(cache_key);
    const std::int64_t now = std::time(nullptr);
    const bool fresh = now_meta && (now_meta->flags & cache::Meta::kFlagNoCache) == 0 &&
                       now < now_meta->expires_at;
    seed.stale.reset();
    seed.partial.reset();
    if (now_meta && now_meta->complete()) {
      if (fresh) {
        return nullptr;
      }
      seed.stale = std::move(now_meta);
    } else if (now_meta && fresh) {
      seed.partial = std::move(now_meta);
    }
  }
  FillPtr fill(new Fill(cache_key));
  auto client_it = clients_.find(target.upstream);
  if (client_it == clients_.end()) {
    // conf validation makes this impossible; fail the fill rather than crash.
    fill->end(Fill::Phase::kFailed, false,
              s3::Error{s3::Errc::kRefused, 0, "", "no such upstream"});
    fill->retire();  // never in the table
    return fill;
  }
  // Pinned for the fill's life and that of every client following it (issue 9, defect 2):
  // evicting an object while its chunks are being marked would fail the fill.
  fill->pin_ = store_.pin(cache_key);
  fills_.emplace(cache_key, fill);
  auto runner =
      std::make_shared<FillRunner>(*this, fill, target, client_it->second, seed, first_byte);
  fetch_.post([this, runner] {
    runners_.insert(runner);
    runner->start();
  });
  return fill;
}

void FillTable::finished(const std::string& cache_key, Fill* fill) {
  {
    std::lock_guard lock(mu_);
    if (auto it = fills_.find(cache_key); it != fills_.end() && it->second.get() == fill) {
      fills_.erase(it);
    }
  }
  fill->retire();
}

std::size_t FillTable::active() const {
  std::lock_guard lock(mu_);
  return fills_.size();
}

RangeMode FillTable::range_mode(const std::string& upstream) const {
  std::lock_guard lock(mu_);
  return modes_.get(upstream, RangeModes::Clock::now());
}

void FillTable::set_range_mode(const std::string& upstream, RangeMode mode) {
  std::lock_guard lock(mu_);
  modes_.learn(upstream, mode, RangeModes::Clock::now());
}

std::string make_cache_key(const conf::Upstream& upstream, const std::string& bucket,
                           const std::string& key) {
  std::string k;
  k.reserve(upstream.endpoint.size() + bucket.size() + key.size() + 2);
  k += upstream.endpoint;
  k += '\n';
  k += bucket;
  k += '\n';
  k += key;
  return k;
}

}  // namespace proxy
