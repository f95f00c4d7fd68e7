// The fetch side of a fill, top to bottom: Start chooses how to begin; a cold object is probed
// with a ranged GET of the chunk its first client wants (or a HEAD), then its missing chunks
// are fetched fill.parallel at a time (Chunks) or, from an upstream that ignores Range, in one
// sequential GET (Whole); a stale entry is revalidated and refreshed. Each answer is judged by
// the pure rules of proxy/fetch_rules.h; this file only applies their verdicts.
// Threads: the fetch loop only. Durability: fdatasync, then the chunk's bit (DiskQueue).
// Tricky: a disk that refuses bytes (ENOSPC, EIO) is not an upstream error: the fill goes on
// from memory, uncached (spill_to_memory), and its clients get every byte.
#include "proxy/fetch.h"

#include <event2/event.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "conf/check.h"
#include "proxy/decide.h"
#include "s3/printable.h"

namespace proxy {

namespace {

// Chunks clients are blocked on may add this many requests beyond fill.parallel: each such
// client (aria2c -x16 opens sixteen) waits on its own chunk and should not queue behind
// prefetching.
constexpr std::size_t kMaxUrgent = 16;

// The s3::Transfer of a real upstream. Owns its client: a fetch that holds the origin keeps
// its upstream (and the configuration it was built from) alive across a reload. Counts what
// really reaches the upstream (a fetch through a peer may never get here).
class ClientOrigin : public Origin {
 public:
  ClientOrigin(std::unique_ptr<s3::Client> c, Metrics* metrics)
      : client_(std::move(c)), metrics_(metrics) {}
  class ClientCall : public Call {
   public:
    explicit ClientCall(s3::Transfer t) : t_(std::move(t)) {}
    void cancel() override { t_.cancel(); }

   private:
    s3::Transfer t_;
  };
  std::unique_ptr<Call> start(s3::Request req, s3::Callbacks cb) override {
    if (metrics_ != nullptr) {
      const std::string& name = client_->upstream().name;
      metrics_->upstream_request(name);
      if (bytes_child_ == nullptr) {
        bytes_child_ = metrics_->upstream_bytes_child(name);
      }
      cb.on_data = [m = metrics_, child = bytes_child_,
                    on_data = std::move(cb.on_data)](std::span<const char> d) {
        m->upstream_bytes(child, d.size());
        return on_data(d);
      };
      cb.on_done = [m = metrics_, name,
                    on_done = std::move(cb.on_done)](conf::Result<void, s3::Error> r) {
        if (!r && r.error().code != s3::Errc::kCancelled) {
          m->upstream_error(name, s3::errc_name(r.error().code));
        }
        on_done(std::move(r));
      };
    }
    return std::make_unique<ClientCall>(client_->start(std::move(req), std::move(cb)));
  }
  int retries() const override { return client_->upstream().retries; }

 private:
  std::unique_ptr<s3::Client> client_;
  Metrics* metrics_;
  prometheus::Counter* bytes_child_ = nullptr;  // lives as long as metrics_ (its registry)
};

// The origin a fetch was started with, metered for tusk_fill_throughput_bytes_per_second:
// when the fill began and how many body bytes its requests brought (upstream or peer). The
// count is shared with the callbacks, which may outlive this wrapper's last use.
class MeteredOrigin : public Origin {
 public:
  explicit MeteredOrigin(std::shared_ptr<Origin> inner)
      : inner_(std::move(inner)), started_(std::chrono::steady_clock::now()) {}
  std::unique_ptr<Call> start(s3::Request req, s3::Callbacks cb) override {
    cb.on_data = [n = bytes_, on_data = std::move(cb.on_data)](std::span<const char> d) {
      *n += d.size();
      return on_data(d);
    };
    return inner_->start(std::move(req), std::move(cb));
  }
  int retries() const override { return inner_->retries(); }
  bool learns_range_mode() const override { return inner_->learns_range_mode(); }
  std::uint64_t bytes() const { return *bytes_; }
  double seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  }

 private:
  std::shared_ptr<Origin> inner_;
  std::chrono::steady_clock::time_point started_;
  std::shared_ptr<std::uint64_t> bytes_ = std::make_shared<std::uint64_t>(0);
};

}  // namespace

std::shared_ptr<Origin> client_origin(std::unique_ptr<s3::Client> client, Metrics* metrics) {
  return std::make_shared<ClientOrigin>(std::move(client), metrics);
}

// One request of the fill to the upstream and what it owns: chunks [first_chunk, end_chunk)
// for a ranged GET, every missing chunk for a whole-object GET.
struct Segment {
  Ask ask = Ask::kRange;
  bool conditional = false;   // a revalidation: If-None-Match / If-Modified-Since
  bool not_modified = false;  // it was answered 304
  std::uint64_t first_chunk = 0;
  std::uint64_t end_chunk = 0;  // exclusive
  std::uint64_t next = 0;       // absolute offset of the next byte the answer carries
  std::uint64_t end = 0;        // exclusive end of what was asked (kUnknownByte before the head)
  int attempts = 0;
  std::chrono::steady_clock::time_point sent_at;
  std::unique_ptr<Origin::Call> call;
  event* timer = nullptr;
  std::pair<std::weak_ptr<Fetch>, Segment*> timer_ctx;
  ~Segment() {
    if (timer != nullptr) {
      event_free(timer);
    }
  }
};

Fetch::Fetch(FillTable& table, FillPtr fill, const Target& target, FillSeed seed,
             std::uint64_t first_byte)
    : table_(table),
      fill_(std::move(fill)),
      route_(*target.route),
      upstream_(target.upstream),
      bucket_(target.bucket),
      key_(target.key),
      query_(target.query),
      object_(s3::printable(target.bucket + "/" + target.key)),
      seed_(std::move(seed)),
      first_byte_(first_byte),
      store_key_(fill_->cache_key()),
      cs_(table.store_.options().chunk_size) {}

Fetch::~Fetch() {
  if (flush_timer_ != nullptr) {
    event_free(flush_timer_);
  }
}

void Fetch::start(std::shared_ptr<Origin> origin) {
  origin_ = std::make_shared<MeteredOrigin>(std::move(origin));
  drive();
}

void Fetch::abandon() {
  if (ended_) {
    return;
  }
  spdlog::info("fill of {} abandoned: the object was purged", object_);
  fail(local_error("the object was purged while it was being filled"));
}

// ---------------------------------------------------------------- the driver

void Fetch::drive() {
  while (!ended_) {
    Next next = Next::kDone;
    switch (step_) {
      case Step::kStart:
        next = start_step();
        break;
      case Step::kRevalidate:
        next = revalidate();
        break;
      case Step::kProbeRange:
        next = probe_range();
        break;
      case Step::kProbeHead:
        next = probe_head();
        break;
      case Step::kChunks:
        next = chunks();
        break;
      case Step::kWhole:
        next = whole();
        break;
      case Step::kRefresh:
        next = refresh();
        break;
      case Step::kVerify:
        next = verify();
        break;
      case Step::kDone:
        end(Fill::Phase::kDone, false, std::nullopt, /*leave_after_disk=*/true);
        next = Next::kDone;
        break;
    }
    if (next != Next::kContinue) {
      return;
    }
  }
}

// ---------------------------------------------------------------- Start

Fetch::Next Fetch::start_step() {
  if (seed_.partial) {
    // A fresh entry with missing chunks: go on filling the same generation.
    if (!adopt_partial(*seed_.partial)) {
      return Next::kDone;
    }
    step_ = table_.range_mode(upstream_) == RangeMode::kNoRanges ? Step::kWhole : Step::kChunks;
    return Next::kContinue;
  }
  if (seed_.stale) {
    step_ = Step::kRevalidate;
    return Next::kContinue;
  }
  switch (table_.range_mode(upstream_)) {
    case RangeMode::kRanges:
      step_ = first_byte_ != kUnknownByte ? Step::kProbeRange : Step::kProbeHead;
      break;
    case RangeMode::kWalrus:
      step_ = Step::kProbeHead;
      break;
    case RangeMode::kNoRanges:
      step_ = Step::kWhole;
      break;
  }
  return Next::kContinue;
}

// ---------------------------------------------------------------- Revalidate

// A conditional GET of the stale entry. Its answer moves on: 304 -> Refresh (on_done), 200 ->
// a new object, fetched whole by this very request (on_head).
Fetch::Next Fetch::revalidate() {
  if (segments_.empty()) {
    launch(Ask::kFirstWhole, 0, kUnknownByte, /*conditional=*/true);
  }
  return Next::kPark;
}

// ---------------------------------------------------------------- ProbeRange / ProbeHead

// The chunk the first client reads, asked as a range; the answer's Content-Range gives the size
// (-> Chunks), or shows the upstream answers the Walrus way (-> ProbeHead) or ignores Range
// (-> Whole, this answer being the whole object).
Fetch::Next Fetch::probe_range() {
  if (segments_.empty()) {
    const std::uint64_t first = first_byte_ / cs_ * cs_;
    launch(Ask::kProbeRange, first, first + cs_);
  }
  return Next::kPark;
}

Fetch::Next Fetch::probe_head() {
  if (!head_) {
    if (segments_.empty()) {
      launch(Ask::kProbeHead, 0, kUnknownByte);
    }
    return Next::kPark;
  }
  step_ = table_.range_mode(upstream_) == RangeMode::kNoRanges ? Step::kWhole : Step::kChunks;
  return Next::kContinue;
}

// ---------------------------------------------------------------- Chunks

Fetch::Next Fetch::chunks() {
  drain_wants();
  if (table_.range_mode(upstream_) == RangeMode::kNoRanges) {
    step_ = Step::kWhole;  // learnt meanwhile (by this fill or another of the upstream)
    return Next::kContinue;
  }
  const std::size_t parallel = static_cast<std::size_t>(table_.parallel_);
  // Chunks a client is blocked on go first, even beyond the parallel limit (kMaxUrgent).
  while (!urgent_.empty() && segments_.size() < parallel + kMaxUrgent) {
    const std::uint64_t c = urgent_.front();
    urgent_.pop_front();
    if (c < chunks_ && state_[c] == kMissing) {
      launch_chunk(c);
    }
  }
  // A spilled fill is in memory only: fetch all of it, nothing can be fetched again later.
  const bool prefetch = route_.prefetch == conf::Prefetch::kWhole || !head_->stored;
  while (segments_.size() < parallel) {
    std::uint64_t c = chunks_;
    while (!wanted_.empty()) {
      const std::uint64_t w = *wanted_.begin();
      wanted_.erase(wanted_.begin());
      if (w < chunks_ && state_[w] == kMissing) {
        c = w;
        break;
      }
    }
    if (c == chunks_ && prefetch) {
      while (prefetch_cursor_ < chunks_ && state_[prefetch_cursor_] != kMissing) {
        ++prefetch_cursor_;
      }
      c = prefetch_cursor_;
    }
    if (c >= chunks_) {
      break;
    }
    launch_chunk(c);
  }
  if (segments_.empty()) {
    // Complete (then checked), or (prefetch none) nothing more asked for: the fill is over. A
    // later client that needs more starts a new fill from the partial entry.
    step_ = Step::kVerify;
    return Next::kContinue;
  }
  return Next::kPark;
}

// ---------------------------------------------------------------- Whole

// One GET without Range of the object (or, after a break, from its first missing byte).
Fetch::Next Fetch::whole() {
  if (!head_) {
    if (segments_.empty()) {
      launch(Ask::kFirstWhole, 0, kUnknownByte);
    }
    return Next::kPark;
  }
  const bool running = std::any_of(segments_.begin(), segments_.end(),
                                   [](const auto& s) { return s->ask == Ask::kResume; });
  if (!running && any_missing()) {
    Segment* seg = launch(Ask::kResume, 0, head_->size);
    claim(seg, 0, chunks_);
    send(seg);
  }
  if (segments_.empty()) {
    step_ = Step::kVerify;
    return Next::kContinue;
  }
  return Next::kPark;
}

// ---------------------------------------------------------------- Refresh

Fetch::Next Fetch::refresh() {
  auto meta = table_.store_.lookup(fill_->cache_key());
  if (!meta || meta->generation != seed_.stale->generation) {
    fail(local_error("cached entry vanished during revalidation"));
    return Next::kDone;
  }
  Merged m = merge_not_modified(meta->headers, not_modified_headers_);
  Freshness f = decide(200, m.decide_on, route_, table_.clock_());
  auto r =
      table_.store_.refresh(fill_->cache_key(), seed_.stale->generation, f.stored_at, f.expires_at,
                            f.revalidate_each_use ? cache::Meta::kFlagNoCache : 0, m.stored,
                            m.content_type);
  if (!r) {
    fail(local_error("could not refresh the cached entry: " + r.error().message));
    return Next::kDone;
  }
  end(Fill::Phase::kDone, true, std::nullopt, false);
  return Next::kDone;
}

// ---------------------------------------------------------------- requests

Segment* Fetch::launch(Ask ask, std::uint64_t first, std::uint64_t end, bool conditional) {
  auto seg = std::make_unique<Segment>();
  seg->ask = ask;
  seg->conditional = conditional;
  seg->next = first;
  seg->end = end;
  Segment* s = seg.get();
  segments_.push_back(std::move(seg));
  if (ask != Ask::kRange && ask != Ask::kResume) {
    send(s);  // owns no chunk yet: nothing to claim first
  }
  return s;
}

Segment* Fetch::launch_chunk(std::uint64_t c) {
  Segment* seg = launch(Ask::kRange, c * cs_ + filled_[c], c * cs_ + chunk_len(c));
  seg->first_chunk = c;
  seg->end_chunk = c + 1;
  claim(seg, c, c + 1);
  send(seg);
  return seg;
}

void Fetch::send(Segment* seg) {
  s3::Request req;
  req.method = seg->ask == Ask::kProbeHead ? s3::Method::kHead : s3::Method::kGet;
  req.bucket = bucket_;
  req.key = key_;
  req.query = query_;
  req.forward_headers = seed_.forward;
  switch (seg->ask) {
    case Ask::kProbeRange:
    case Ask::kRange:
      req.range = s3::ByteRange{seg->next, seg->end - 1};
      break;
    case Ask::kProbeHead:
      break;
    case Ask::kFirstWhole:
      if (seg->conditional && !seed_.stale->etag.empty()) {
        req.if_none_match = seed_.stale->etag;
      } else if (seg->conditional && !seed_.stale->last_modified.empty()) {
        req.if_modified_since = seed_.stale->last_modified;
      }
      break;
    case Ask::kResume:
      if (seg->next > 0 && table_.range_mode(upstream_) != RangeMode::kNoRanges) {
        req.range = s3::ByteRange{seg->next, head_->size - 1};  // from the first missing byte
      } else {
        seg->next = 0;  // the answer starts at byte 0; what is on disk already is skipped
      }
      break;
  }
  if (head_ && !head_->etag.empty() && seg->ask != Ask::kProbeHead) {
    req.if_match = head_->etag;  // the object cannot change under the fill
  }
  std::weak_ptr<Fetch> weak = weak_from_this();
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
  seg->call = origin_->start(std::move(req), std::move(cb));
}

// Claims every missing chunk in [first, end) for `seg`; returns false if none was missing.
bool Fetch::claim(Segment* seg, std::uint64_t first, std::uint64_t end) {
  bool any = false;
  for (std::uint64_t c = first; c < end; ++c) {
    if (state_[c] == kMissing) {
      state_[c] = kInFlight;
      owner_[c] = seg;
      any = true;
    }
  }
  return any;
}

void Fetch::drop(Segment* seg) {
  for (std::uint64_t c = 0; c < chunks_; ++c) {
    if (owner_[c] == seg) {
      owner_[c] = nullptr;
      if (state_[c] == kInFlight) {
        state_[c] = kMissing;
      }
    }
  }
  for (auto it = segments_.begin(); it != segments_.end(); ++it) {
    if (it->get() == seg) {
      // The request may be the caller: destroy the segment on a later turn of the loop.
      std::shared_ptr<Segment> doomed(std::move(*it));
      segments_.erase(it);
      if (doomed->call) {
        doomed->call->cancel();
      }
      table_.fetch_.post([doomed] {});
      return;
    }
  }
}

void Fetch::drop_all() {
  while (!segments_.empty()) {
    drop(segments_.front().get());  // bytes already written stay: chunks append
  }
}

// ---------------------------------------------------------------- answers

bool Fetch::on_head(Segment* seg, const s3::ResponseHead& h) {
  if (ended_) {
    return false;
  }
  table_.metrics_.upstream_ttfb(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - seg->sent_at).count());
  const Answer a = answer_of(h);
  if (head_ && etag_changed(head_->etag, a.etag)) {
    fail(local_error("object changed upstream during the fill (ETag differs)"));
    return false;
  }
  if (seg->conditional && a.status == 304) {
    seg->not_modified = true;
    not_modified_headers_ = h.headers;
    return true;  // on_done moves on to Refresh
  }
  const Judgement j = judge(seg->ask, a, seg->next, seg->end, head_ ? head_->size : 0);
  learn(seg->ask, j.verdict);
  switch (j.verdict) {
    case Verdict::kReject:
      fail(local_error(j.why));
      return false;
    case Verdict::kWalrusRanges:
      // Walrus: 200 with a unit-less Content-Range whose total cannot be trusted. Learn the
      // size from a HEAD, then fetch ranges accepting this form when it is exact.
      spdlog::info("upstream '{}' answers ranges the Walrus way (200 + '{}'); using HEAD for sizes",
                   upstream_, s3::printable(a.content_range));
      drop(seg);
      step_ = Step::kProbeHead;
      drive();
      return false;
    case Verdict::kRangesIgnored:
      spdlog::info("upstream '{}' ignores Range; filling objects sequentially", upstream_);
      if (head_) {
        // Cancel every ranged request, this one included; Whole fetches the rest in order.
        drop_all();
        step_ = Step::kWhole;
        drive();
        return false;
      }
      [[fallthrough]];  // this answer is the whole object: it becomes the Whole request
    case Verdict::kAccept:
    case Verdict::kRestart:
      break;
  }
  if (!head_) {
    if (!create_head(h, j.size)) {
      return false;
    }
    if (seg->ask == Ask::kProbeRange && j.verdict == Verdict::kAccept) {
      // The probe becomes the request of the chunk it asked for.
      seg->ask = Ask::kRange;
      seg->first_chunk = seg->next / cs_;
      seg->end_chunk = seg->first_chunk + 1;
      seg->end = std::min(seg->end, head_->size);
      claim(seg, seg->first_chunk, seg->end_chunk);
      step_ = Step::kChunks;
      drive();
      return !ended_;
    }
    if (seg->ask != Ask::kProbeHead) {
      // A 200 with the whole object (no Range asked, or Range ignored, or a revalidation that
      // found a new object): this request fills it in order.
      seg->ask = Ask::kResume;
      seg->next = 0;
      seg->end = head_->size;
      claim(seg, 0, chunks_);
      step_ = Step::kWhole;
    }
    return true;  // a HEAD: its on_done moves on
  }
  if (j.verdict == Verdict::kRestart) {
    seg->next = 0;  // the whole object again: bytes already on disk are skipped
  }
  return true;
}

bool Fetch::on_data(Segment* seg, std::span<const char> data) {
  if (ended_ || seg->not_modified) {
    return !ended_;
  }
  if (!head_ || seg->next + data.size() > seg->end) {
    fail(local_error("upstream sent more bytes than it announced"));
    return false;
  }
  std::uint64_t pos = seg->next;
  const char* p = data.data();
  std::size_t left = data.size();
  while (left > 0) {
    const std::uint64_t c = pos / cs_;
    const std::uint64_t in = pos % cs_;
    const std::uint64_t n = std::min<std::uint64_t>(left, chunk_len(c) - in);
    if (owner_[c] == seg && in + n > filled_[c]) {
      TUSK_CHECK(in <= filled_[c]);  // chunks append: a segment starts at a chunk's fill mark
      const std::uint64_t skip = filled_[c] - in;
      if (!write_at(p + skip, n - skip, pos + skip)) {
        return false;
      }
      digest_written(pos + skip, p + skip, n - skip);
      filled_[c] = static_cast<std::uint32_t>(in + n);
      if (fill_->progress(c, filled_[c])) {
        arm_flush();
      }
      if (filled_[c] == chunk_len(c)) {
        state_[c] = kDone;
        owner_[c] = nullptr;
        chunk_written(c);
      }
    }
    pos += n;
    p += n;
    left -= n;
  }
  seg->next = pos;
  return true;
}

void Fetch::on_done(Segment* seg, conf::Result<void, s3::Error> r) {
  if (ended_) {
    return;
  }
  std::optional<s3::Error> error;
  if (!r) {
    if (r.error().code == s3::Errc::kCancelled) {
      return;  // we dropped it
    }
    error = r.error();
  } else if (seg->not_modified) {
    drop(seg);
    step_ = Step::kRefresh;
    drive();
    return;
  } else if (seg->ask != Ask::kProbeHead && head_ && seg->next != seg->end) {
    error = local_error("upstream body ended early");
    // Errors the upstream's transfer reported are counted by its origin; this one is ours.
    table_.metrics_.upstream_error(upstream_, s3::errc_name(error->code));
  }
  if (error) {
    const bool etag_known = head_ && !head_->etag.empty();
    switch (after_error(seg->ask, head_ != nullptr, error->code, seg->attempts, origin_->retries(),
                        etag_known)) {
      case AfterError::kProbeHead:
        drop(seg);
        step_ = Step::kProbeHead;
        break;
      case AfterError::kRetry:
        retry(seg, *error);
        return;
      case AfterError::kFail:
        // A failed revalidation leaves the stale entry; requests may serve it within grace.
        fail(*error);
        return;
    }
  } else {
    drop(seg);
  }
  drive();
}

void Fetch::retry(Segment* seg, const s3::Error& e) {
  ++seg->attempts;
  if (head_ && seg->ask == Ask::kRange) {
    // Resume from the first byte still missing in what the segment owns.
    std::uint64_t c = seg->first_chunk;
    while (c < seg->end_chunk && state_[c] == kDone) {
      ++c;
    }
    if (c == seg->end_chunk) {
      drop(seg);
      drive();
      return;
    }
    seg->next = c * cs_ + filled_[c];
  }
  if (head_ && (seg->ask == Ask::kRange || seg->ask == Ask::kResume)) {
    table_.metrics_.resumed_fill();
    spdlog::warn("fill of {} broke at byte {} ({}); resuming (attempt {})", object_, seg->next,
                 e.message, seg->attempts);
  } else {
    spdlog::warn("upstream request for {} failed ({}); retrying (attempt {})", object_, e.message,
                 seg->attempts);
  }
  seg->call.reset();
  const long ms = backoff_ms(seg->attempts);
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  if (seg->timer == nullptr) {
    seg->timer_ctx = {weak_from_this(), seg};
    seg->timer = event_new(
        table_.fetch_.base(), -1, 0,
        [](int, short, void* arg) {
          auto* c = static_cast<std::pair<std::weak_ptr<Fetch>, Segment*>*>(arg);
          if (auto self = c->first.lock(); self && !self->ended_) {
            self->send(c->second);
          }
        },
        &seg->timer_ctx);
  }
  evtimer_add(seg->timer, &tv);
}

// What an answer showed about the upstream's range behaviour is remembered for a while.
void Fetch::learn(Ask ask, Verdict v) {
  if (!origin_->learns_range_mode()) {
    return;
  }
  if (auto mode = range_mode_shown(ask, v)) {
    table_.set_range_mode(upstream_, *mode);
  }
}

// ---------------------------------------------------------------- scheduling helpers

void Fetch::drain_wants() {
  std::vector<std::tuple<std::uint64_t, std::uint64_t, bool>> wants;
  {
    std::lock_guard lock(fill_->mu_);
    wants.swap(fill_->wants_);
  }
  for (auto [first, last, is_urgent] : wants) {
    last = std::min(last, chunks_ == 0 ? 0 : chunks_ - 1);
    if (is_urgent) {
      urgent_.push_back(first);
    } else {
      for (std::uint64_t c = first; c <= last && c < chunks_; ++c) {
        wanted_.insert(c);
      }
    }
  }
}

void Fetch::arm_flush() {
  if (flush_timer_ == nullptr) {
    flush_ctx_ = std::make_unique<std::weak_ptr<Fetch>>(weak_from_this());
    flush_timer_ = event_new(
        table_.fetch_.base(), -1, 0,
        [](int, short, void* arg) {
          if (auto self = static_cast<std::weak_ptr<Fetch>*>(arg)->lock()) {
            self->fill_->flush();
          }
        },
        flush_ctx_.get());
  }
  if (!evtimer_pending(flush_timer_, nullptr)) {
    timeval tv{0, Fill::kWakeDelayMs * 1000};
    evtimer_add(flush_timer_, &tv);
  }
}

std::uint64_t Fetch::chunk_len(std::uint64_t c) const {
  return std::min(cs_, head_->size - c * cs_);
}

bool Fetch::any_missing() const {
  return std::find(state_.begin(), state_.end(), kMissing) != state_.end();
}

// ---------------------------------------------------------------- endings

void Fetch::fail(s3::Error e) { fail_with(std::move(e), false); }

void Fetch::fail_disk(std::string message) { fail_with(local_error(std::move(message)), true); }

void Fetch::fail_with(s3::Error e, bool disk) {
  if (ended_) {
    return;
  }
  spdlog::warn("fill of {} from upstream '{}' failed: {}", object_, upstream_, e.message);
  if (head_ && head_->stored) {
    // Nothing partial or mixed stays behind: the generation is dropped whole (only ours: after
    // a purge the key may already have a new one).
    (void)table_.store_.remove(store_key_, generation_);
  }
  failed_on_disk_ = disk;
  end(Fill::Phase::kFailed, false, std::move(e), false);
}

// Ends the fill. A failed or revalidated fill leaves the table at once, so the next request
// starts afresh; one that wrote chunks stays joinable (its bytes readable) until the disk
// thread marked them durable, so nobody in between sees a stale index and fetches again.
void Fetch::end(Fill::Phase phase, bool not_modified, std::optional<s3::Error> error,
                bool leave_after_disk) {
  ended_ = true;
  if (phase == Fill::Phase::kDone && !not_modified) {
    if (const auto* m = dynamic_cast<const MeteredOrigin*>(origin_.get())) {
      table_.metrics_.fill_completed(m->bytes(), m->seconds());
    }
  }
  for (auto& s : segments_) {
    if (s->call) {
      s->call->cancel();
    }
  }
  if (leave_after_disk && head_ && head_->stored) {
    table_.disk_.post([t = &table_, f = fill_] { t->finished(f->cache_key(), f.get()); });
  } else {
    table_.finished(fill_->cache_key(), fill_.get());
  }
  fill_->end(phase, not_modified, std::move(error), failed_on_disk_);
  // A request may be the caller of this function: release them (and this fetch) later.
  table_.fetch_.post([self = shared_from_this()] {
    self->segments_.clear();
    self->table_.fetches_.erase(self);
  });
}

}  // namespace proxy
