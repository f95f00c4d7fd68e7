// A fleet of edges that fill from each other (issue 11; Varnish's shard director, ATS's parent
// selection). Every edge has the same `peers.members`; an object's owner is chosen by rendezvous
// hashing over the member names, so all edges agree without talking and a member that leaves
// moves only its own objects. An edge that does not own an object fills it from the owner (which
// fills from the upstream once, coalescing everyone); only when the owner cannot be reached does
// it go to the upstream itself. Requests between edges carry kPeerHeader: an edge asked with it
// always fills from the upstream, so a request never travels further than one hop (no loops,
// even if two edges' member lists disagree).
// Threads: owner() is pure over immutable data (any thread); everything else runs on the fetch
// loop, where the peers' transfers run.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/config.h"
#include "proxy/fetch.h"
#include "s3/client.h"

namespace proxy {

class Metrics;

inline constexpr std::string_view kPeerHeader = "X-Tusk-Peer";

// The rendezvous score of `member` for `object` (highest wins): FNV-1a over both, separated, then
// a 64-bit finalizer so that similar names spread. Pure; stable across runs and machines (the
// fleet depends on it: never change it without renaming every member).
std::uint64_t rendezvous_score(std::string_view member, std::string_view object);

// The member that owns `object`: the highest score, ties (never seen in practice) to the
// smallest name. `members` must not be empty.
const std::string& owner_of(const std::vector<std::string>& members, std::string_view object);

// What an edge does when a request to a peer ends in `code` (pure).
enum class PeerFault {
  kPassOn,              // the owner's answer about the object (404, 412, 416, 403): the fill's
  kFallBack,            // the peer answered but could not serve (5xx, odd status): ask upstream
  kFallBackAndMarkDown  // the peer cannot be reached or broke the connection: down for down_for
};
PeerFault peer_fault(s3::Errc code);

// One member seen from this edge: where its requests go and until when it counts as down.
struct PeerState {
  std::string name;
  std::shared_ptr<Origin> client;  // a `signature: none` client of the member's base URL
  std::chrono::steady_clock::time_point down_until{};
};

class Peers {
 public:
  // `clients` maps every member but `config.self` to its client. `metrics` outlives this.
  Peers(const conf::Peers& config, std::map<std::string, std::shared_ptr<Origin>> clients,
        Metrics& metrics);

  // The member that owns `object` (a cache key), or nullopt when it is this edge. Any thread.
  std::optional<std::string> owner(std::string_view object) const;

  // On the fetch loop: an origin that asks `owner` for `path` (the object's public path on the
  // owner, with `host` as its Host when the route matches on one) and falls back to `upstream`.
  // It keeps both alive to its end.
  std::shared_ptr<Origin> via(const std::string& owner, std::shared_ptr<Origin> upstream,
                              std::string path, std::string host);

  const std::string& self() const { return self_; }

 private:
  std::string self_;
  std::vector<std::string> members_;
  std::map<std::string, std::shared_ptr<PeerState>> states_;  // touched on the fetch loop only
  std::chrono::seconds down_for_;
  Metrics& metrics_;
};

// The s3::Client configuration of a peer (`signature: none`, no retries of its own: the fetch
// retries, through the fallback). `stall` is how long the peer may go without a byte, at least
// the upstreams' stall_timeout, so an owner waiting on a slow upstream is not taken for dead.
conf::Upstream peer_upstream(const conf::Peers& config, const std::string& url, conf::Millis stall);

}  // namespace proxy
