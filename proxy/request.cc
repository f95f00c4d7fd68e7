// The request state machine. Decisions (routing, ranges, conditionals, freshness) are pure
// functions elsewhere; this file only sequences them and does the I/O.
#include "proxy/request.h"

#include <event2/buffer.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "proxy/decide.h"
#include "proxy/http_text.h"
#include "proxy/peers.h"
#include "s3/printable.h"
#include "s3/sign.h"

namespace proxy {
namespace {

// Bytes handed to the connection per write callback. With sendfile they cost no memory; the
// window only bounds how much a slow client can have queued in the socket path at once.
constexpr std::uint64_t kWindow = 16u << 20;
constexpr std::uint64_t kCompleteWindow = 64u << 20;
// With `server.sendfile: false` the bytes are read into memory: the window is then what one
// connection holds at once (nginx's `sendfile off` holds 2 x 32 KiB by default).
constexpr std::uint64_t kCopyWindow = 256u << 10;

// Queues n bytes of `fd` from `pos` on `buf`: a sendfile segment, or (copy) the bytes read with
// pread. False with errno set when they cannot be (a read error, or the file shorter than n).
bool queue_file_bytes(evbuffer* buf, int fd, std::uint64_t pos, std::uint64_t n, bool copy) {
  if (!copy) {
    evbuffer_file_segment* seg =
        evbuffer_file_segment_new(fd, static_cast<ev_off_t>(pos), static_cast<ev_off_t>(n), 0);
    if (seg == nullptr) {
      return false;
    }
    const bool ok = evbuffer_add_file_segment(buf, seg, 0, static_cast<ev_off_t>(n)) == 0;
    evbuffer_file_segment_free(seg);  // the buffer holds its own reference
    return ok;
  }
  while (n > 0) {
    evbuffer_iovec v;
    if (evbuffer_reserve_space(buf, static_cast<ev_ssize_t>(n), &v, 1) < 1) {
      errno = ENOMEM;
      return false;
    }
    const std::size_t want = std::min<std::size_t>(v.iov_len, n);
    const ssize_t got = ::pread(fd, v.iov_base, want, static_cast<off_t>(pos));
    if (got <= 0) {
      if (got == 0) {
        errno = ENODATA;  // the file ends before the bytes its record promises
      }
      return false;
    }
    v.iov_len = static_cast<std::size_t>(got);
    evbuffer_commit_space(buf, &v, 1);
    pos += static_cast<std::uint64_t>(got);
    n -= static_cast<std::uint64_t>(got);
  }
  return true;
}

// S3 keys are at most 1024 bytes (UTF-8); a longer one cannot exist upstream.
constexpr std::size_t kMaxKeyBytes = 1024;

std::string header_or_empty(const RequestHead& h, const char* name) {
  const std::string* v = h.find(name);
  return v ? *v : std::string();
}

std::string make_boundary() {
  unsigned char raw[12];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    std::memset(raw, 0x5a, sizeof raw);
  }
  return "tusk" + s3::hex(std::string_view(reinterpret_cast<char*>(raw), sizeof raw));
}

// The Date header value for `now`, formatted once per second per thread (as nginx does).
const char* cached_http_date(std::int64_t now) {
  thread_local std::int64_t at = -1;
  thread_local std::string text;
  if (now != at) {
    at = now;
    text = s3::http_date(static_cast<std::time_t>(now));
  }
  return text.c_str();
}

}  // namespace

void Request::handle(Exchange& ex, Services& svc, EventLoop& loop, HotCache& hot) {
  std::shared_ptr<Request> r(new Request(ex, svc, loop, hot));
  r->self_ = r;
  // (TCP_NODELAY comes from the listening socket: see server.cc.)
  ex.set_close_handler(&Request::on_close, r.get());
  r->drive();
}

Request::Request(Exchange& ex, Services& svc, EventLoop& loop, HotCache& hot)
    : ex_(&ex), svc_(svc), loop_(loop), hot_(hot), t0_(std::chrono::steady_clock::now()) {
  svc_.in_flight.fetch_add(1);
}

Request::~Request() { svc_.in_flight.fetch_sub(1); }

void Request::drive() {
  while (!closed_ && !finished_) {
    Next next = Next::kDone;
    switch (step_) {
      case Step::kRecv:
        next = recv();
        break;
      case Step::kLookup:
        next = lookup();
        break;
      case Step::kFill:
        next = fill();
        break;
      case Step::kAwaitHead:
        next = await_head();
        break;
      case Step::kRevalidated:
        next = revalidated();
        break;
      case Step::kDeliver:
        next = deliver();
        break;
      case Step::kTransmit:
        next = transmit();
        break;
      case Step::kSynth:
        next = send_synth();
        break;
      case Step::kDone:
        next = Next::kDone;
        break;
    }
    if (next != Next::kContinue) {
      return;
    }
  }
}

// ---------------------------------------------------------------- Recv

Request::Next Request::recv() {
  const RequestHead& in = ex_->head();
  target_uri_ = in.target;
  method_ = in.method;
  if (svc_.access_log) {
    log_ = LogFields{ex_->client(), header_or_empty(in, "Referer"),
                     header_or_empty(in, "User-Agent"), in.minor};
  }
  host_ = header_or_empty(in, "Host");
  head_only_ = in.method == "HEAD";
  if (in.method != "GET" && !head_only_) {
    return synth(405, "Method Not Allowed", "tusk serves GET and HEAD only\n",
                 {{"Allow", "GET, HEAD"}});
  }
  // absolute-form (RFC 9112 §3.2.2, what a client configured with tuskd as its proxy sends):
  // its authority is the host and the Host field is ignored.
  std::string_view path = target_uri_;
  for (std::string_view scheme : {"http://", "https://"}) {
    if (path.size() > scheme.size() && iequals(path.substr(0, scheme.size()), scheme)) {
      path.remove_prefix(scheme.size());
      std::size_t slash = path.find('/');
      host_ = std::string(path.substr(0, slash));
      path = slash == std::string_view::npos ? std::string_view("/") : path.substr(slash);
      break;
    }
  }
  live_ = svc_.live();  // this request's configuration, to its end
  auto routed = live_->router.route(host_, path);
  if (!routed) {
    if (routed.error().code == RouteErrc::kBadPath) {
      return synth(400, "Bad Request", "bad request path: " + routed.error().message + "\n");
    }
    return synth(404, "Not Found", "no route for this path\n");
  }
  target_ = std::move(routed).value();
  if (target_.key.size() > kMaxKeyBytes) {
    // Refused before any upstream request: no such key can exist.
    return synth(414, "URI Too Long", "object key longer than 1024 bytes\n");
  }
  upstream_ = &live_->config->upstreams.at(target_.upstream);
  cache_key_ = make_cache_key(*upstream_, target_.bucket, target_.key);

  range_header_ = header_or_empty(in, "Range");
  if (!range_header_.empty()) {
    ranges_ = parse_range(range_header_);  // malformed: nullopt, served as 200
  }
  conditions_.if_match = header_or_empty(in, "If-Match");
  conditions_.if_none_match = header_or_empty(in, "If-None-Match");
  conditions_.if_modified_since = header_or_empty(in, "If-Modified-Since");
  conditions_.if_unmodified_since = header_or_empty(in, "If-Unmodified-Since");
  conditions_.if_range = header_or_empty(in, "If-Range");
  // Another edge of the fleet filling from this one: never send it on to a peer.
  const std::string* peer = in.find(kPeerHeader);
  from_peer_ = peer != nullptr && !peer->empty();
  step_ = Step::kLookup;
  return Next::kContinue;
}

// ---------------------------------------------------------------- Lookup

Request::Next Request::lookup() {
  ++lookups_;
  const std::int64_t now = svc_.clock();
  if (HotEntry* e = hot_.find(cache_key_, svc_.store); e && is_fresh(e->meta, now)) {
    entity_ = entity_of(e->meta, e->body);
    entity_.bytes = e->bytes;
    outcome_ = Outcome::kHit;
    if (e->touched_at != now) {  // the LRU counts in seconds: once per second is enough
      e->touched_at = now;
      svc_.store.touch(cache_key_);
    }
    step_ = Step::kDeliver;
    return Next::kContinue;
  }
  // The stamp before the index: a record read under it stays valid while it is current.
  const cache::Stamp stamp = svc_.store.stamp(cache_key_);
  auto meta = svc_.store.lookup(cache_key_);
  switch (classify(meta, now)) {
    case EntryState::kFresh:
      if (serve_entry(*meta, stamp)) {
        outcome_ = Outcome::kHit;
        step_ = Step::kDeliver;
        return Next::kContinue;
      }
      // Replaced or evicted between lookup and open: look again (bounded).
      if (lookups_ < 3) {
        return Next::kContinue;
      }
      break;
    case EntryState::kStale:
      if (serve_while_revalidating(*meta, now, *target_.route) && serve_stale_revalidating(*meta)) {
        return Next::kContinue;
      }
      stale_ = std::move(meta);  // revalidate it; serve it within grace if the upstream fails
      break;
    case EntryState::kPartial:
      partial_ = std::move(meta);  // fetch only what is missing, into the same generation
      break;
    case EntryState::kAbsent:
      break;
  }
  step_ = Step::kFill;
  return Next::kContinue;
}

// Opens the body of a complete entry to serve it; false when it is gone meanwhile.
bool Request::serve_entry(const cache::Meta& meta, const cache::Stamp& stamp) {
  auto fd = svc_.store.open_body(cache_key_, meta.generation);
  if (!fd) {
    return false;
  }
  entity_ = entity_of(meta, std::make_shared<BodyFile>(*fd));
  remember_hot(meta, stamp);
  svc_.store.touch(cache_key_);
  return true;
}

// stale-while-revalidate (RFC 5861 §3): one revalidation of the entry starts (or is already
// running: the fill table holds one fill per object), owned by the process, and this client is
// served the stale entry at once without waiting for it. False when the body is gone meanwhile.
bool Request::serve_stale_revalidating(const cache::Meta& stale) {
  auto fd = svc_.store.open_body(cache_key_, stale.generation);
  if (!fd) {
    return false;
  }
  FillSeed seed;
  seed.stale = stale;
  seed.direct = from_peer_;
  bool joined = false;
  svc_.fills.acquire(cache_key_, target_, std::move(seed), 0, &joined);
  entity_ = entity_of(stale, std::make_shared<BodyFile>(*fd));
  outcome_ = Outcome::kStale;
  step_ = Step::kDeliver;
  return true;
}

// ---------------------------------------------------------------- Revalidated

// The origin answered our revalidation with 304 and the fill refreshed the entry: serve it. The
// confirmation is this use's validation, so it is served even with a zero lifetime (no-cache,
// max-age=0).
Request::Next Request::revalidated() {
  ++lookups_;
  const cache::Stamp stamp = svc_.store.stamp(cache_key_);
  auto meta = svc_.store.lookup(cache_key_);
  if (classify(meta, svc_.clock(), /*just_revalidated=*/true) == EntryState::kFresh &&
      serve_entry(*meta, stamp)) {
    outcome_ = Outcome::kRevalidated;
    step_ = Step::kDeliver;
    return Next::kContinue;
  }
  // Replaced or evicted since the 304: start over (bounded by lookups_).
  stale_.reset();
  step_ = lookups_ < 3 ? Step::kLookup : Step::kFill;
  return Next::kContinue;
}

void Request::remember_hot(const cache::Meta& meta, const cache::Stamp& stamp) {
  HotEntry e;
  e.meta = meta;
  e.body = entity_.body;
  e.stamp = stamp;
  e.meta.bitmap.clear();  // complete by construction; the bitmap of a big object is dead weight
  if (meta.size <= HotCache::kMaxInlineBytes) {
    auto bytes = std::make_shared<std::string>(meta.size, '\0');
    std::size_t got = 0;
    while (got < bytes->size()) {
      ssize_t n = ::pread(entity_.body->fd(), bytes->data() + got, bytes->size() - got,
                          static_cast<off_t>(got));
      if (n <= 0) {
        if (n < 0 && errno == EINTR) {
          continue;
        }
        return;  // not cached in memory; served from the file as usual
      }
      got += static_cast<std::size_t>(n);
    }
    e.bytes = std::move(bytes);
    entity_.bytes = e.bytes;
  }
  hot_.put(cache_key_, std::move(e));
}

// ---------------------------------------------------------------- Fill

Request::Next Request::fill() {
  FillSeed seed;
  seed.stale = stale_;
  seed.partial = partial_;
  // The first byte this client reads decides which chunk is fetched first.
  const std::uint64_t first_byte =
      first_byte_of(ranges_, partial_ ? std::optional(partial_->size) : std::nullopt);
  // After three lookups found a complete record whose body would not open, fill a new
  // generation whatever the index says.
  seed.recheck = lookups_ < 3;
  seed.direct = from_peer_;
  fill_at_ = std::chrono::steady_clock::now();
  fill_ = svc_.fills.acquire(cache_key_, target_, std::move(seed), first_byte, &joined_);
  if (!fill_) {
    // A fill ended between our lookup and now: the entry is complete and fresh. Serve it.
    step_ = Step::kLookup;
    return Next::kContinue;
  }
  if (joined_) {
    // A fill whose every byte is already on disk (only its bookkeeping is still running)
    // serves this request exactly as a hit would.
    Fill::Snapshot snap = fill_->snapshot();
    const bool fresh = snap.head && is_fresh(snap.head->freshness, svc_.clock());
    const bool received =
        snap.head && snap.phase != Fill::Phase::kFailed &&
        (snap.phase == Fill::Phase::kDone || fill_->available_from(0) >= snap.head->size);
    joined_done_ = fresh && received;
    if (received && !fresh && lookups_ < 3) {
      // A response received in full before this request came and not fresh now (max-age=0,
      // no-cache, no-store, an Age past its lifetime): like any stored response that is not
      // fresh, it may not be reused without the origin (RFC 9111 §4). Once its fill has left
      // the table, look again: revalidate it, or fetch anew. Requests that came while it was
      // arriving share it (collapsed), as they share every fill.
      FillPtr done = std::move(fill_);
      joined_ = false;
      step_ = Step::kLookup;
      return done->wait_retired(resume(&Request::drive)) ? Next::kPark : Next::kContinue;
    }
  }
  step_ = Step::kAwaitHead;
  return Next::kContinue;
}

// A callback that resumes `step` on this request's loop, if the request still exists. Fills
// call it from the fetch thread; it only posts.
std::function<void()> Request::resume(void (Request::*step)()) {
  std::weak_ptr<Request> weak = weak_from_this();
  EventLoop* loop = &loop_;
  return [weak, loop, step] {
    loop->post([weak, step] {
      if (auto self = weak.lock()) {
        ((*self).*step)();
      }
    });
  };
}

void Request::park_on_head() {
  auto wake = resume(&Request::drive);
  if (!fill_->wait_head(wake)) {
    wake();  // already there: go on from the loop, never recursing from inside a callback
  }
}

Request::Next Request::await_head() {
  Fill::Snapshot snap = fill_->snapshot();
  if (snap.phase == Fill::Phase::kStarting) {
    park_on_head();
    return Next::kPark;
  }
  // A fill whose bytes were all there already (joined_done_) kept this request from no upstream.
  upstream_ms_ =
      joined_done_
          ? -1.0
          : std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - fill_at_)
                .count();
  switch (snap.phase) {
    case Fill::Phase::kStarting:
      break;  // handled above
    case Fill::Phase::kFailed:
      if (serve_stale_on_error()) {
        return Next::kContinue;
      }
      if (snap.disk_error) {
        return synth(503, "Service Unavailable", "the cache disk failed; try again\n",
                     {{"Retry-After", "10"}});
      }
      return synth_upstream_error(*snap.error);
    case Fill::Phase::kDone:
      if (snap.not_modified) {
        fill_.reset();
        step_ = Step::kRevalidated;
        return Next::kContinue;
      }
      break;
    case Fill::Phase::kStreaming:
      break;
  }
  const ObjectHead& h = *snap.head;
  entity_ = Entity{
      h.size,       h.etag,    h.last_modified, h.content_type, h.replay, h.freshness.stored_at,
      h.generation, snap.body, fill_,           nullptr};
  outcome_ = outcome_of_fill(h.stored, joined_, joined_done_);
  step_ = Step::kDeliver;
  return Next::kContinue;
}

bool Request::serve_stale_on_error() {
  if (!stale_) {
    return false;
  }
  if (!grace_allows(*stale_, svc_.clock(), *target_.route)) {
    return false;
  }
  auto fd = svc_.store.open_body(cache_key_, stale_->generation);
  if (!fd) {
    return false;
  }
  entity_ = entity_of(*stale_, std::make_shared<BodyFile>(*fd));
  outcome_ = Outcome::kStale;
  step_ = Step::kDeliver;
  return true;
}

// ---------------------------------------------------------------- Deliver

void Request::add_entity_headers(bool with_length_and_type) {
  ResponseHeaders& out = ex_->out();
  if (!entity_.etag.empty()) {
    out.add("ETag", entity_.etag);
  }
  if (!entity_.last_modified.empty()) {
    out.add("Last-Modified", entity_.last_modified);
  }
  for (const auto& [k, v] : entity_.replay) {
    if (!iequals(k, "date")) {  // deliver() wrote it first
      out.add(k, v);
    }
  }
  std::int64_t age = std::max<std::int64_t>(0, svc_.clock() - entity_.stored_at);
  out.add("Age", std::to_string(age));
  if (with_length_and_type) {
    out.add("Accept-Ranges", "bytes");
  }
}

// Decides the answer (proxy/decide.h: 304, 412, 416, 200, 206 single or multipart) and lays
// out its body as pieces; Transmit sends them.
Request::Next Request::deliver() {
  ResponseHeaders& out = ex_->out();
  // A stored response keeps its origin's Date (RFC 9111 §4: Age says how old it is); one that
  // came without a Date gets the time of this answer.
  if (const std::string* date = find_field(entity_.replay, "date")) {
    out.add("Date", *date);
  } else {
    out.add("Date", cached_http_date(svc_.clock()));
  }
  out.add("X-Cache", outcome_name(outcome_));

  Validators v{entity_.etag, -1};
  const bool conditional = !conditions_.if_match.empty() || !conditions_.if_none_match.empty() ||
                           !conditions_.if_modified_since.empty() ||
                           !conditions_.if_unmodified_since.empty() ||
                           !conditions_.if_range.empty();
  if (conditional && !entity_.last_modified.empty()) {
    v.last_modified = s3::parse_http_date(entity_.last_modified);
  }
  const std::uint64_t size = entity_.size;
  const BodyPlan plan = plan_body(conditions_, v, ranges_, size);
  std::uint64_t length = 0;
  switch (plan.kind) {
    case BodyPlan::Kind::kNotModified:
      add_entity_headers(false);
      status_ = 304;
      reply(304, plan.reason, nullptr);
      return Next::kDone;
    case BodyPlan::Kind::kPreconditionFailed:
      return synth(412, plan.reason, "precondition failed\n");
    case BodyPlan::Kind::kUnsatisfiable:
      return synth(416, plan.reason, "range not satisfiable\n",
                   {{"Content-Range", "bytes */" + std::to_string(size)}});
    case BodyPlan::Kind::kFull:
      add_entity_headers(true);
      pieces_.push_back({"", 0, size});
      length = size;
      out.add("Content-Type", entity_.content_type);
      break;
    case BodyPlan::Kind::kSingle: {
      add_entity_headers(true);
      const ByteSpan& s = plan.spans[0];
      pieces_.push_back({"", s.first, s.length()});
      length = s.length();
      out.add("Content-Type", entity_.content_type);
      out.add("Content-Range", "bytes " + std::to_string(s.first) + "-" + std::to_string(s.last) +
                                   "/" + std::to_string(size));
      break;
    }
    case BodyPlan::Kind::kMultipart: {
      add_entity_headers(true);
      const std::string boundary = make_boundary();
      for (const ByteSpan& s : plan.spans) {
        std::string part = "\r\n--" + boundary + "\r\nContent-Type: " + entity_.content_type +
                           "\r\nContent-Range: bytes " + std::to_string(s.first) + "-" +
                           std::to_string(s.last) + "/" + std::to_string(size) + "\r\n\r\n";
        length += part.size() + s.length();
        pieces_.push_back({std::move(part), 0, 0});
        pieces_.push_back({"", s.first, s.length()});
      }
      std::string end = "\r\n--" + boundary + "--\r\n";
      length += end.size();
      pieces_.push_back({std::move(end), 0, 0});
      out.add("Content-Type", "multipart/byteranges; boundary=" + boundary);
      break;
    }
  }
  status_ = plan.status;
  reason_ = plan.reason;
  out.add("Content-Length", std::to_string(length));
  body_length_ = length;
  step_ = Step::kTransmit;
  return Next::kContinue;
}

// ---------------------------------------------------------------- Transmit

// Sends the pieces: at once from memory for a hot small object, else through pump() as the
// connection drains (sendfile from the body file, waiting on the fill for bytes not yet there).
Request::Next Request::transmit() {
  if (head_only_ || body_length_ == 0) {
    reply(status_, reason_, nullptr);
    return Next::kDone;
  }
  if (entity_.bytes && !entity_.fill) {
    // A hot small object is in memory: the whole answer in one reply, one write, no drain
    // callback round trip (the common case of catalog.json under load).
    evbuffer* buf = evbuffer_new();
    for (const Piece& p : pieces_) {
      if (p.length == 0) {
        evbuffer_add(buf, p.text.data(), p.text.size());
      } else {
        evbuffer_add(buf, entity_.bytes->data() + p.offset, p.length);
        body_bytes_ += p.length;
      }
    }
    svc_.metrics.bytes_served(Source::kCache, evbuffer_get_length(buf));
    reply(status_, reason_, buf);
    evbuffer_free(buf);
    return Next::kDone;
  }
  if (entity_.fill) {
    for (const Piece& p : pieces_) {
      if (p.length > 0) {
        entity_.fill->want(p.offset, p.offset + p.length - 1);
      }
    }
  } else if (entity_.generation != 0) {
    pin_ = svc_.store.pin(cache_key_);  // a streamed hit: keep its bytes from eviction
  }
  started_ = true;
  ex_->start(status_, reason_);
  step_ = Step::kDone;
  pump();
  return Next::kPark;
}

void Request::pump() {
  if (closed_ || finished_) {
    return;
  }
  evbuffer* buf = evbuffer_new();
  // Lets libevent keep file segments as sendfile chains all the way to the socket.
  evbuffer_set_flags(buf, EVBUFFER_FLAG_DRAINS_TO_FD);
  // A complete body goes out in large sendfile windows (no memory; fewer drain stalls); a
  // body still filling in smaller ones, so a slow fill does not hold a large range.
  std::uint64_t budget = entity_.fill ? kWindow : kCompleteWindow;
  const bool copy = !live_->config->server.sendfile;
  if (copy && !entity_.bytes) {
    budget = kCopyWindow;  // read into memory: what one connection holds at once
  }
  if (entity_.fill) {
    // A fill whose disk failed goes on in memory: read the rest from there.
    entity_.body = entity_.fill->body();
  }
  std::uint64_t need = 0;  // when blocked: the body offset we wait for
  bool blocked = false;
  while (piece_ < pieces_.size() && budget > 0) {
    const Piece& p = pieces_[piece_];
    if (p.length == 0) {
      evbuffer_add(buf, p.text.data(), p.text.size());
      ++piece_;
      continue;
    }
    std::uint64_t pos = p.offset + piece_done_;
    std::uint64_t available = entity_.fill ? entity_.fill->available_from(pos) : entity_.size - pos;
    if (available == 0) {
      need = pos;
      blocked = true;
      break;
    }
    std::uint64_t n = std::min({p.length - piece_done_, available, budget});
    if (entity_.bytes) {
      evbuffer_add(buf, entity_.bytes->data() + pos, n);  // small: a copy beats a sendfile
      piece_done_ += n;
      budget -= n;
      body_bytes_ += n;
      if (piece_done_ == p.length) {
        ++piece_;
        piece_done_ = 0;
      }
      continue;
    }
    if (!queue_file_bytes(buf, entity_.body->fd(), pos, n, copy)) {
      evbuffer_free(buf);
      spdlog::error("cannot read body bytes of {}: {}", s3::printable(target_uri_),
                    std::strerror(errno));
      abort_connection();
      return;
    }
    svc_.metrics.file_bytes_served(copy, n);
    piece_done_ += n;
    budget -= n;
    body_bytes_ += n;
    if (piece_done_ == p.length) {
      ++piece_;
      piece_done_ = 0;
    }
  }
  std::size_t queued = evbuffer_get_length(buf);
  if (queued > 0) {
    svc_.metrics.bytes_served(outcome_ == Outcome::kHit || outcome_ == Outcome::kRevalidated ||
                                      outcome_ == Outcome::kStale
                                  ? Source::kCache
                                  : Source::kUpstream,
                              queued);
    ex_->send(buf, &Request::on_chunk_sent, this);
    evbuffer_free(buf);
    return;  // on_chunk_sent pumps again once the connection drained it
  }
  evbuffer_free(buf);
  if (!blocked) {
    take_exchange()->end();
    finish(status_);
    return;
  }
  Fill::Snapshot snap = entity_.fill->snapshot();
  if (snap.phase == Fill::Phase::kDone) {
    auto again = resume(&Request::pump);
    if (entity_.fill->available_from(need) > 0) {
      again();  // it completed between our read and the snapshot
      return;
    }
    if (entity_.fill->wait_retired(again)) {
      return;  // refill looks at the index once the fill left the table: its record is there
    }
  }
  if (snap.phase == Fill::Phase::kFailed || (snap.phase == Fill::Phase::kDone && !refill(need))) {
    // Headers are out; the only honest signal left is closing before Content-Length is met.
    spdlog::warn("upstream fill failed while serving {}; closing the client connection",
                 s3::printable(target_uri_));
    abort_connection();
    return;
  }
  auto wake = resume(&Request::pump);
  if (!entity_.fill) {
    wake();  // refill found the entry complete: serve the rest from the file
    return;
  }
  const Fill::Phase phase = entity_.fill->snapshot().phase;
  if (phase == Fill::Phase::kDone || phase == Fill::Phase::kFailed) {
    // refill joined a fill that has ended but not yet left the table: look again once it has
    // (waiting on its bytes would return at once, and spin).
    if (!entity_.fill->wait_retired(wake)) {
      wake();
    }
    return;
  }
  if (!entity_.fill->wait(need, wake, /*eager=*/body_bytes_ == 0)) {
    wake();
  }
}

// The fill this client followed ended without the bytes it still needs (prefetch: none, and
// they were not asked for before it went idle). Start or join a fill of what is missing.
bool Request::refill(std::uint64_t pos) {
  auto meta = svc_.store.lookup(cache_key_);
  if (!meta || meta->generation != entity_.generation || entity_.generation == 0) {
    return false;  // replaced, evicted, or a spool: the bytes cannot come back
  }
  if (meta->complete()) {
    entity_.fill.reset();
    return true;
  }
  FillSeed seed;
  seed.partial = std::move(meta);
  seed.direct = from_peer_;
  bool joined = false;
  entity_.fill = svc_.fills.acquire(cache_key_, target_, std::move(seed), pos, &joined);
  if (!entity_.fill) {
    // A fill completed the entry since our lookup: every byte is on disk, if it is still ours.
    auto now_meta = svc_.store.lookup(cache_key_);
    return now_meta && now_meta->generation == entity_.generation && now_meta->complete();
  }
  for (std::size_t i = piece_; i < pieces_.size(); ++i) {
    if (pieces_[i].length > 0) {
      entity_.fill->want(pieces_[i].offset, pieces_[i].offset + pieces_[i].length - 1);
    }
  }
  return true;
}

void Request::on_chunk_sent(void* arg) { static_cast<Request*>(arg)->pump(); }

}  // namespace proxy
