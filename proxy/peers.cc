// Peers: the owner of an object by rendezvous hashing, and the origin that asks the owner first.
// The hashing is written here (FNV-1a and a splitmix64 finalizer, a dozen lines): no Debian
// package offers rendezvous hashing, and its output must never change between versions.
#include "proxy/peers.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "proxy/metrics.h"
#include "s3/printable.h"

namespace proxy {

namespace {

constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
constexpr std::uint64_t kFnvPrime = 1099511628211ull;

std::uint64_t fnv1a(std::uint64_t h, std::string_view s) {
  for (unsigned char c : s) {
    h ^= c;
    h *= kFnvPrime;
  }
  return h;
}

std::uint64_t mix(std::uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  return x;
}

// Asks the owner first; on a fault before the answer's head, asks the upstream instead. After
// the head, a broken peer transfer is passed on (the fetch resumes the rest, and its retry comes
// here again: the peer is down by then, so it goes to the upstream).
class FallbackOrigin : public Origin {
 public:
  FallbackOrigin(std::shared_ptr<PeerState> peer, std::shared_ptr<Origin> upstream,
                 std::string path, std::string host, std::string self,
                 std::chrono::seconds down_for, Metrics& metrics)
      : peer_(std::move(peer)),
        upstream_(std::move(upstream)),
        path_(std::move(path)),
        host_(std::move(host)),
        self_(std::move(self)),
        down_for_(down_for),
        metrics_(metrics) {}

  class FallbackCall : public Call {
   public:
    void cancel() override {
      cancelled_ = true;
      if (peer_call_) {
        peer_call_->cancel();
      }
      if (upstream_call_) {
        upstream_call_->cancel();
      }
    }

   private:
    friend class FallbackOrigin;
    std::unique_ptr<Call> peer_call_;
    std::unique_ptr<Call> upstream_call_;
    std::uint64_t bytes_ = 0;  // counted once, at the end (a metric lookup per piece is slow)
    bool head_seen_ = false;
    bool cancelled_ = false;
  };

  std::unique_ptr<Call> start(s3::Request req, s3::Callbacks cb) override {
    const auto now = std::chrono::steady_clock::now();
    if (now < peer_->down_until) {
      metrics_.peer_request(peer_->name, "down");
      return upstream_->start(std::move(req), std::move(cb));
    }
    auto call = std::make_unique<FallbackCall>();
    FallbackCall* c = call.get();  // the callbacks die with the call (it cancels both)
    s3::Request to_peer = req;
    to_peer.path = path_;
    to_peer.extra_headers.emplace_back(std::string(kPeerHeader), self_);
    if (!host_.empty()) {
      to_peer.extra_headers.emplace_back("Host", host_);
    }
    s3::Callbacks mine;
    mine.on_head = [c, on_head = cb.on_head](const s3::ResponseHead& h) {
      c->head_seen_ = true;
      return on_head(h);
    };
    mine.on_data = [c, on_data = cb.on_data](std::span<const char> d) {
      c->bytes_ += d.size();
      return on_data(d);
    };
    mine.on_done = [this, c, req = std::move(req),
                    cb = std::move(cb)](conf::Result<void, s3::Error> r) mutable {
      if (c->bytes_ > 0) {
        metrics_.peer_bytes(peer_->name, c->bytes_);
        c->bytes_ = 0;
      }
      if (r) {
        metrics_.peer_request(peer_->name, "ok");
        cb.on_done(std::move(r));
        return;
      }
      const s3::Error& e = r.error();
      if (e.code == s3::Errc::kCancelled || c->cancelled_) {
        cb.on_done(std::move(r));
        return;
      }
      const PeerFault fault = peer_fault(e.code);
      if (fault == PeerFault::kPassOn) {
        metrics_.peer_request(peer_->name, "answered");
        cb.on_done(std::move(r));
        return;
      }
      if (fault == PeerFault::kFallBackAndMarkDown) {
        peer_->down_until = std::chrono::steady_clock::now() + down_for_;
        spdlog::warn("peer {} failed ({}); counted down for {}s, filling from the upstream",
                     peer_->name, e.message, down_for_.count());
      }
      if (c->head_seen_) {
        metrics_.peer_request(peer_->name, "broken");
        cb.on_done(std::move(r));  // the fetch resumes (through the upstream if it is down)
        return;
      }
      metrics_.peer_request(peer_->name, "fallback");
      c->upstream_call_ = upstream_->start(std::move(req), std::move(cb));
    };
    c->peer_call_ = peer_->client->start(std::move(to_peer), std::move(mine));
    return call;
  }

  int retries() const override { return upstream_->retries(); }
  // tuskd answers every range; what the upstream does is learnt from the upstream only.
  bool learns_range_mode() const override { return false; }

 private:
  std::shared_ptr<PeerState> peer_;
  std::shared_ptr<Origin> upstream_;
  std::string path_;
  std::string host_;
  std::string self_;
  std::chrono::seconds down_for_;
  Metrics& metrics_;
};

}  // namespace

std::uint64_t rendezvous_score(std::string_view member, std::string_view object) {
  std::uint64_t h = fnv1a(kFnvOffset, member);
  h = fnv1a(h ^ 0xff, object);  // the separator: ("ab","c") and ("a","bc") differ
  return mix(h);
}

const std::string& owner_of(const std::vector<std::string>& members, std::string_view object) {
  const std::string* best = &members.front();
  std::uint64_t best_score = rendezvous_score(*best, object);
  for (const std::string& m : members) {
    const std::uint64_t s = rendezvous_score(m, object);
    if (s > best_score || (s == best_score && m < *best)) {
      best = &m;
      best_score = s;
    }
  }
  return *best;
}

PeerFault peer_fault(s3::Errc code) {
  switch (code) {
    case s3::Errc::kNotFound:
    case s3::Errc::kForbidden:
    case s3::Errc::kAuth:
    case s3::Errc::kPreconditionFailed:
    case s3::Errc::kRangeNotSatisfiable:
    case s3::Errc::kCancelled:
      return PeerFault::kPassOn;
    case s3::Errc::kRefused:
    case s3::Errc::kTls:
    case s3::Errc::kTimeout:
    case s3::Errc::kProtocol:
      return PeerFault::kFallBackAndMarkDown;
    case s3::Errc::kServer:
    case s3::Errc::kHttp:
      return PeerFault::kFallBack;
  }
  return PeerFault::kFallBack;
}

Peers::Peers(const conf::Peers& config, std::map<std::string, std::shared_ptr<Origin>> clients,
             Metrics& metrics)
    : self_(config.self), down_for_(config.down_for), metrics_(metrics) {
  for (const auto& [name, url] : config.members) {
    members_.push_back(name);
  }
  for (auto& [name, client] : clients) {
    auto st = std::make_shared<PeerState>();
    st->name = name;
    st->client = std::move(client);
    states_.emplace(name, std::move(st));
  }
}

std::optional<std::string> Peers::owner(std::string_view object) const {
  if (members_.size() < 2) {
    return std::nullopt;
  }
  const std::string& o = owner_of(members_, object);
  if (o == self_) {
    return std::nullopt;
  }
  return o;
}

std::shared_ptr<Origin> Peers::via(const std::string& owner, std::shared_ptr<Origin> upstream,
                                   std::string path, std::string host) {
  auto it = states_.find(owner);
  if (it == states_.end()) {
    return upstream;  // cannot happen: owner() names members, and each has a client
  }
  return std::make_shared<FallbackOrigin>(it->second, std::move(upstream), std::move(path),
                                          std::move(host), self_, down_for_, metrics_);
}

conf::Upstream peer_upstream(const conf::Peers& config, const std::string& url,
                             conf::Millis stall) {
  conf::Upstream u;
  u.name = "peer";
  u.endpoint = url;
  u.signature = conf::Signature::kNone;
  u.connect_timeout = config.connect_timeout;
  u.stall_timeout = stall;
  u.retries = 0;
  return u;
}

}  // namespace proxy
