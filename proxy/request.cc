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

#include "proxy/access.h"
#include "proxy/client_address.h"
#include "proxy/decide.h"
#include "proxy/http_text.h"
#include "proxy/peers.h"
#include "s3/printable.h"
#include "s3/sign.h"

namespace proxy {
namespace {

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

}  // namespace

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
                     header_or_empty(in, "User-Agent"), {}, in.minor};
  }
  host_ = header_or_empty(in, "Host");
  head_only_ = in.method == "HEAD";
  if (in.method != "GET" && !head_only_) {
    return synth(405, "Method Not Allowed", "tusk serves GET and HEAD only\n",
                 {{"Allow", "GET, HEAD"}});
  }
  // No request-target has a fragment (RFC 9112 §3.2): one sent raw is refused, not cut, so
  // that the path routed and the path a presigned URL's signature covers are the same bytes.
  if (target_uri_.find('#') != std::string::npos) {
    return synth(400, "Bad Request", "a request target has no fragment ('#')\n");
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
  if (Next refused{}; !authorized(in, path, &refused)) {
    return refused;
  }
  upstream_ = &live_->config->upstreams.at(target_.upstream);
  if (upstream_->signature != conf::Signature::kNone) {
    // tusk signs with its own credentials: a `query: key` route forwards the query, and a
    // parameter such as ?acl or ?tagging would make the signed request another S3 operation.
    for (const auto& param : target_.query) {
      if (s3::selects_another_operation(param.first)) {
        return synth(400, "Bad Request",
                     "a query parameter asks S3 for another operation than reading the object "
                     "(acl, tagging, torrent, ...)\n");
      }
    }
  }
  base_key_ = make_cache_key(*upstream_, target_.bucket, target_.key, target_.query);
  cache_key_ = base_key_;
  if (!upstream_->forward_headers.empty()) {
    // A field the client's Connection names is hop-by-hop: never forwarded (RFC 9110 §7.6.1).
    const std::vector<std::string> hop = connection_nominated(in.fields);
    for (const auto& field : in.fields) {
      auto named = [&](const std::string& f) { return iequals(field.first, f); };
      if (std::any_of(upstream_->forward_headers.begin(), upstream_->forward_headers.end(),
                      named) &&
          std::none_of(hop.begin(), hop.end(), named)) {
        forward_.push_back(field);  // every line, in order (bounded by the head's size)
      }
    }
  }

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

// Who may read (proxy/access.h), right after routing: a refused request never reaches the
// cache or the upstream. The client is the connection's peer, or what trusted proxies say it is
// (X-Forwarded-For; the PROXY protocol already replaced the peer). `target` is the path with
// its query, as sent (absolute-form's authority removed).
bool Request::authorized(const RequestHead& in, std::string_view target, Next* refused) {
  const conf::Route& route = *target_.route;
  const conf::CidrList& trusted = live_->config->server.trusted_proxies;
  const std::optional<conf::IpAddress>& peer = ex_->peer();
  conf::IpAddress client = peer.value_or(conf::IpAddress());
  if (peer && ex_->forwarded_for_trusted() && !trusted.empty() && trusted.contains(*peer)) {
    std::vector<std::string_view> xff;
    for (const auto& [name, value] : in.fields) {
      if (iequals(name, "X-Forwarded-For")) {
        xff.emplace_back(value);
      }
    }
    client = client_from_forwarded_for(*peer, xff, trusted);
    log_.client = conf::to_string(client);
  }
  if (!guarded(route)) {
    return true;  // a public route: nothing to decide, nothing to count
  }
  AccessRequest req;
  req.client = client;
  req.method = in.method;
  const std::size_t q = target.find('?');
  req.path = target.substr(0, q);
  req.query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  req.query = req.query.substr(0, req.query.find('#'));
  req.host = host_;
  req.head = &in;
  AccessVerdict v = check_access(route, req, static_cast<std::time_t>(svc_.clock()));
  if (!peer && !route.allow.empty()) {
    v = AccessVerdict{AccessResult::kDeniedIp, 403, "the client address is unknown", {}, false};
  }
  svc_.metrics.access(route_label(route), access_result_name(v.result));
  log_.user = std::move(v.key_id);
  if (v.result == AccessResult::kAllowed) {
    return true;
  }
  Headers extra;
  if (v.challenge) {
    extra.emplace_back("WWW-Authenticate", "Bearer realm=\"tusk\"");
  }
  const char* reason = v.status == 401 ? "Unauthorized" : "Forbidden";
  *refused = synth(v.status, reason, v.reason + "\n", std::move(extra));
  return false;
}

// ---------------------------------------------------------------- Lookup

Request::Next Request::lookup() {
  ++lookups_;
  const std::int64_t now = svc_.clock();
  // An object known to vary (proxy/vary.h) is looked up, filled and stored per variant.
  vary_names_ = svc_.fills.vary().find(base_key_);
  cache_key_ = vary_names_ ? variant_key(base_key_, *vary_names_, ex_->head().fields) : base_key_;
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
  FillSeed seed = new_seed();
  seed.stale = stale;
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

// What every fill this request starts carries of it: the forwarded headers, the variant.
FillSeed Request::new_seed() const {
  FillSeed seed;
  seed.direct = from_peer_;
  seed.forward = forward_;
  seed.vary_base = base_key_;
  seed.vary_names = vary_names_;
  seed.request = ex_->head().fields;
  return seed;
}

Request::Next Request::fill() {
  FillSeed seed = new_seed();
  seed.stale = stale_;
  seed.partial = partial_;
  // The first byte this client reads decides which chunk is fetched first.
  const std::uint64_t first_byte =
      first_byte_of(ranges_, partial_ ? std::optional(partial_->size) : std::nullopt);
  // After three lookups found a complete record whose body would not open, fill a new
  // generation whatever the index says.
  seed.recheck = lookups_ < 3;
  fill_at_ = std::chrono::steady_clock::now();
  fill_ = joinable_first_variant();
  joined_ = fill_ != nullptr;
  if (!fill_) {
    fill_ = svc_.fills.acquire(cache_key_, target_, std::move(seed), first_byte, &joined_);
  }
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
      return look_again_after_fill();
    }
  }
  step_ = Step::kAwaitHead;
  return Next::kContinue;
}

// The first varying answer of an object is filled under the object's own key and stored as the
// variant of its first client (Fetch::vary_allows_storing): a request of that variant shares
// that fill while it lasts, as it would share a fill under the variant's key.
FillPtr Request::joinable_first_variant() const {
  if (!vary_names_ || cache_key_ == base_key_) {
    return nullptr;
  }
  FillPtr f = svc_.fills.in_flight(base_key_);
  if (!f) {
    return nullptr;
  }
  const Fill::Snapshot snap = f->snapshot();
  return snap.head && snap.head->stored && snap.head->variant == cache_key_ ? f : nullptr;
}

// Leaves the joined fill, and looks up again once it has left the table (its records are then
// in the index).
Request::Next Request::look_again_after_fill() {
  FillPtr left = std::move(fill_);
  joined_ = false;
  step_ = Step::kLookup;
  return left->wait_retired(resume(&Request::drive)) ? Next::kPark : Next::kContinue;
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
  if (joined_ && !joined_done_ && lookups_ < 3 &&
      (h.vary.star || (!h.vary.names.empty() &&
                       variant_key(base_key_, h.vary.names, ex_->head().fields) != h.variant))) {
    // The answer varies, and not for this request's headers (or `Vary: *`, which fits none): it
    // is not this client's to share. Once the fill has left the table, look again: the index
    // now knows the object varies, and this request fills its own variant.
    return look_again_after_fill();
  }
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

}  // namespace proxy
