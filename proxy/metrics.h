// Prometheus metrics of tuskd (prometheus-cpp core; exposed in text format by the admin
// listener). Every counter is thread-safe; label children are looked up once where the label
// set is fixed. Never carries a secret: labels are outcome, status, source, upstream, kind,
// peer, result, event, reason, check, route (a configured path or prefix).
// Only series that happened are exported, besides a few fixed small sets (sources, connection
// events, write-error reasons, integrity checks, reload results): tusk_requests_total's
// children are made on a request's first use of its outcome and status, then reached without
// a lock (an array of atomic pointers), so the request path never takes Family::Add's mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "cache/store.h"
#include "proxy/outcome.h"

namespace prometheus {
class Registry;
template <typename T>
class Family;
class Counter;
class Gauge;
class Histogram;
}  // namespace prometheus

namespace proxy {

enum class Source { kCache, kUpstream };

// Requests sent to one upstream and how many of them failed, since start (for /readyz).
struct UpstreamCounts {
  std::uint64_t requests = 0;
  std::uint64_t errors = 0;
};

// What happens to client connections (proxy/http_conn.h), each a counter.
enum class ConnEvent { kAccepted, kRefused, kReaped, kHeaderTimeout, kSendTimeout, kBadRequest };

class Metrics {
 public:
  Metrics();
  ~Metrics();

  void request(Outcome outcome, int status);
  void bytes_served(Source source, std::uint64_t n);
  // Of those, the bytes queued from a body file: by sendfile, or read into memory (copied).
  void file_bytes_served(bool copied, std::uint64_t n);
  void upstream_request(const std::string& upstream);
  void upstream_error(const std::string& upstream, const std::string& kind);
  // Access control (proxy/access.h): one decision on a route with `allow` or `auth`; `route` is
  // its route_label, `result` an access_result_name.
  void access(const std::string& route, const char* result);
  void upstream_bytes(const std::string& upstream, std::uint64_t n);
  // The same without a label lookup (a lock and a hash) per piece of a body: the child for
  // `upstream` looked up once (its origin does), then counted with upstream_bytes(child, n).
  prometheus::Counter* upstream_bytes_child(const std::string& upstream);
  void upstream_bytes(prometheus::Counter* child, std::uint64_t n);
  UpstreamCounts upstream_counts(const std::string& upstream) const;
  void coalesced_waiter();
  void resumed_fill();
  void upstream_ttfb(double seconds);
  // A fill ended complete (proxy/fetch.cc): `bytes` of body its requests brought, from its
  // upstream or a peer, in `seconds` from its start to its end.
  void fill_completed(std::uint64_t bytes, double seconds);
  void set_cache_max(std::uint64_t bytes);
  // The cache directory, whose filesystem's free and total bytes render() reports. Before
  // serving (not thread-safe against render).
  void set_cache_dir(std::string dir);
  void set_fills_active(std::size_t n);
  void connection(ConnEvent e);
  void accept_error();
  void set_connections_open(int n);
  // The disk (issue 9, defects 5 and 6): fdatasyncs of body files; writes the disk refused,
  // by reason "enospc" | "eio" | "other".
  void disk_sync();
  void cache_write_error(const char* reason);
  // Integrity (issue 10): bodies checked against their ETag's MD5 (or a catalog's eustore
  // checksum) and found good or bad, by check "fill" | "verify" | "catalog"; bytes a fill's
  // digest had to read back from the page cache (cache::OrderedDigest).
  void integrity_verified();
  void integrity_failure(const char* check);
  void integrity_reread(std::uint64_t bytes);
  // Admin: objects purged; configuration reloads by result "ok" | "failed".
  void purged(std::uint64_t n);
  void config_reload(bool ok);
  // Peers (issue 11, proxy/peers.h): requests to the owning edge by result "ok" | "answered" |
  // "fallback" | "broken" | "down", and the body bytes they brought.
  void peer_request(const std::string& peer, const char* result);
  void peer_bytes(const std::string& peer, std::uint64_t n);

  // The numbers behind /metrics for GET /stats.
  struct Summary {
    std::uint64_t outcomes[7] = {};  // by Outcome
    std::uint64_t bytes_from_cache = 0;
    std::uint64_t bytes_from_upstream = 0;  // sent to clients while filling
    std::uint64_t upstream_bytes = 0;       // received from upstreams
    std::uint64_t integrity_verified = 0;
    std::uint64_t integrity_failures = 0;
    std::uint64_t reloads_ok = 0;
    std::uint64_t reloads_failed = 0;
    std::uint64_t purged = 0;
  };
  Summary summary() const;

  // Prometheus text exposition, with cache gauges refreshed from `stats`.
  std::string render(const cache::Stats& stats);

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* bytes_;
  prometheus::Family<prometheus::Counter>* upstream_requests_;
  prometheus::Family<prometheus::Counter>* upstream_errors_;
  prometheus::Family<prometheus::Counter>* access_ = nullptr;
  prometheus::Family<prometheus::Counter>* upstream_bytes_;
  prometheus::Counter* coalesced_;
  prometheus::Counter* resumed_;
  prometheus::Counter* evictions_;
  prometheus::Counter* evicted_bytes_;
  prometheus::Gauge* cache_bytes_;
  prometheus::Gauge* cache_objects_;
  prometheus::Gauge* cache_max_bytes_;
  prometheus::Gauge* fills_active_;
  prometheus::Histogram* ttfb_;
  prometheus::Histogram* fill_throughput_;
  prometheus::Family<prometheus::Gauge>* disk_free_family_;
  prometheus::Family<prometheus::Gauge>* disk_size_family_;
  prometheus::Gauge* disk_free_ = nullptr;  // set by set_cache_dir
  prometheus::Gauge* disk_size_ = nullptr;
  std::string cache_dir_;
  prometheus::Counter* conn_events_[6] = {};
  prometheus::Counter* accept_errors_;
  prometheus::Gauge* connections_open_;
  prometheus::Counter* disk_syncs_;
  prometheus::Counter* index_commits_;
  prometheus::Counter* index_errors_;
  prometheus::Family<prometheus::Counter>* write_errors_;
  prometheus::Counter* write_error_children_[3] = {};
  prometheus::Counter* integrity_verified_;
  prometheus::Family<prometheus::Counter>* integrity_failures_;
  prometheus::Counter* integrity_reread_;
  prometheus::Counter* purged_;
  prometheus::Counter* reloads_[2] = {};  // ok, failed
  prometheus::Family<prometheus::Counter>* peer_requests_;
  prometheus::Family<prometheus::Counter>* peer_bytes_;
  std::atomic<std::uint64_t> outcome_counts_[7] = {};
  std::atomic<std::uint64_t> upstream_bytes_total_{0};
  std::atomic<std::uint64_t> integrity_failures_total_{0};
  // tusk_requests_total's children by outcome and status - kMinStatus, made on first use:
  // Family::Add takes a lock and hashes labels, too slow for every request. Statuses outside
  // [kMinStatus, kMinStatus + kStatuses) go through Add each time (none that tusk sends).
  static constexpr int kOutcomes = 7;
  static constexpr int kMinStatus = 100;
  static constexpr int kStatuses = 500;
  std::atomic<prometheus::Counter*> request_children_[kOutcomes][kStatuses] = {};
  prometheus::Counter* bytes_children_[2] = {};
  prometheus::Counter* file_bytes_children_[2] = {};  // sendfile, copy
  std::mutex render_mu_;
  std::uint64_t seen_evictions_ = 0;
  std::uint64_t seen_evicted_bytes_ = 0;
  std::uint64_t seen_store_syncs_ = 0;
  std::uint64_t seen_commits_ = 0;
  std::uint64_t seen_index_errors_ = 0;
};

}  // namespace proxy
