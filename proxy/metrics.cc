#include "proxy/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/statvfs.h>

namespace proxy {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  requests_ = &BuildCounter()
                   .Name("tusk_requests_total")
                   .Help("Client requests by cache outcome and HTTP status")
                   .Register(r);
  bytes_ = &BuildCounter()
                .Name("tusk_served_bytes_total")
                .Help("Body bytes sent to clients, by where they came from")
                .Register(r);
  auto& file_bytes = BuildCounter()
                         .Name("tusk_served_file_bytes_total")
                         .Help("Body bytes sent from body files, by sendfile or read and written "
                               "(server.sendfile: false)")
                         .Register(r);
  file_bytes_children_[0] = &file_bytes.Add({{"by", "sendfile"}});
  file_bytes_children_[1] = &file_bytes.Add({{"by", "copy"}});
  upstream_requests_ = &BuildCounter()
                            .Name("tusk_upstream_requests_total")
                            .Help("Requests sent to upstreams")
                            .Register(r);
  upstream_errors_ = &BuildCounter()
                          .Name("tusk_upstream_errors_total")
                          .Help("Failed upstream requests by kind")
                          .Register(r);
  access_ = &BuildCounter()
                 .Name("tusk_access_total")
                 .Help("Access-control decisions of routes with allow or auth, by route and result")
                 .Register(r);
  upstream_bytes_ = &BuildCounter()
                         .Name("tusk_upstream_bytes_total")
                         .Help("Body bytes received from upstreams")
                         .Register(r);
  coalesced_ = &BuildCounter()
                    .Name("tusk_coalesced_waiters_total")
                    .Help("Requests that joined an in-flight fill")
                    .Register(r)
                    .Add({});
  resumed_ = &BuildCounter()
                  .Name("tusk_resumed_fills_total")
                  .Help("Fills resumed after a broken upstream stream")
                  .Register(r)
                  .Add({});
  evictions_ = &BuildCounter()
                    .Name("tusk_cache_evictions_total")
                    .Help("Objects evicted to stay within cache.max_size")
                    .Register(r)
                    .Add({});
  evicted_bytes_ = &BuildCounter()
                        .Name("tusk_cache_evicted_bytes_total")
                        .Help("Bytes evicted to stay within cache.max_size")
                        .Register(r)
                        .Add({});
  cache_bytes_ = &BuildGauge()
                      .Name("tusk_cache_bytes")
                      .Help(
                          "Bytes reserved by indexed objects (each its whole size, from the "
                          "start of its fill): what cache.max_size bounds")
                      .Register(r)
                      .Add({});
  // Children made by set_cache_dir: without a directory there is nothing to say (not a 0).
  disk_free_family_ = &BuildGauge()
                           .Name("tusk_cache_disk_free_bytes")
                           .Help(
                               "Free bytes of the cache directory's filesystem, as "
                               "cache.min_free counts them (available to tuskd)")
                           .Register(r);
  disk_size_family_ = &BuildGauge()
                           .Name("tusk_cache_disk_size_bytes")
                           .Help("Size in bytes of the cache directory's filesystem")
                           .Register(r);
  cache_objects_ = &BuildGauge()
                        .Name("tusk_cache_objects")
                        .Help("Objects in the cache index")
                        .Register(r)
                        .Add({});
  cache_max_bytes_ = &BuildGauge()
                          .Name("tusk_cache_max_bytes")
                          .Help("Configured cache.max_size")
                          .Register(r)
                          .Add({});
  fills_active_ =
      &BuildGauge()
           .Name("tusk_fills_active")
           .Help("Objects being filled (a completed fill counts until its chunks are durable)")
           .Register(r)
           .Add({});
  auto& conns = BuildCounter()
                    .Name("tusk_connections_total")
                    .Help(
                        "Client connections by event: accepted; refused at max_connections; "
                        "reaped (idle, closed to admit a new one); header_timeout; "
                        "send_timeout; bad_request (malformed head, answered and closed)")
                    .Register(r);
  const char* events[] = {"accepted",       "refused",      "reaped",
                          "header_timeout", "send_timeout", "bad_request"};
  for (int i = 0; i < 6; ++i) {
    conn_events_[i] = &conns.Add({{"event", events[i]}});
  }
  accept_errors_ = &BuildCounter()
                        .Name("tusk_accept_errors_total")
                        .Help("accept() failures (out of descriptors): accepting pauses briefly")
                        .Register(r)
                        .Add({});
  connections_open_ = &BuildGauge()
                           .Name("tusk_connections_open")
                           .Help("Client connections open now (server.max_connections bounds it)")
                           .Register(r)
                           .Add({});
  disk_syncs_ = &BuildCounter()
                     .Name("tusk_disk_syncs_total")
                     .Help("fsync/fdatasync calls: body chunks (batched per file) and the index")
                     .Register(r)
                     .Add({});
  index_commits_ = &BuildCounter()
                        .Name("tusk_index_commits_total")
                        .Help("LMDB write transactions committed (chunk marks are batched)")
                        .Register(r)
                        .Add({});
  index_errors_ = &BuildCounter()
                       .Name("tusk_index_errors_total")
                       .Help("Index lookups that failed (LMDB error or undecodable record)")
                       .Register(r)
                       .Add({});
  write_errors_ = &BuildCounter()
                       .Name("tusk_cache_write_errors_total")
                       .Help(
                           "Writes or syncs of cache bodies the disk refused, by reason; the "
                           "fill goes on uncached from memory")
                       .Register(r);
  const char* reasons[] = {"enospc", "eio", "other"};
  for (int i = 0; i < 3; ++i) {
    write_error_children_[i] = &write_errors_->Add({{"reason", reasons[i]}});
  }
  integrity_verified_ = &BuildCounter()
                             .Name("tusk_integrity_verified_total")
                             .Help("Filled bodies whose MD5 matched their single-part ETag")
                             .Register(r)
                             .Add({});
  integrity_failures_ = &BuildCounter()
                             .Name("tusk_integrity_failures_total")
                             .Help(
                                 "Bodies that failed their integrity check and were purged, by "
                                 "check: fill (ETag MD5), verify (POST /verify), catalog "
                                 "(eustore checksum while warming)")
                             .Register(r);
  for (const char* check : {"fill", "verify", "catalog"}) {
    integrity_failures_->Add({{"check", check}});
  }
  integrity_reread_ = &BuildCounter()
                           .Name("tusk_integrity_reread_bytes_total")
                           .Help(
                               "Bytes a fill's digest read back from the page cache because "
                               "they arrived ahead of its frontier beyond the memory budget")
                           .Register(r)
                           .Add({});
  purged_ = &BuildCounter()
                 .Name("tusk_purged_objects_total")
                 .Help("Objects removed through the admin API (DELETE /objects, failed checks)")
                 .Register(r)
                 .Add({});
  auto& reloads = BuildCounter()
                      .Name("tusk_config_reloads_total")
                      .Help("Configuration reloads (SIGHUP, POST /reload) by result")
                      .Register(r);
  reloads_[0] = &reloads.Add({{"result", "ok"}});
  reloads_[1] = &reloads.Add({{"result", "failed"}});
  peer_requests_ = &BuildCounter()
                        .Name("tusk_peer_requests_total")
                        .Help(
                            "Requests of fills to the peer edge owning the object, by peer and "
                            "result: ok, answered (an error about the object, passed on), "
                            "fallback (the upstream was asked instead), broken (cut after the "
                            "head; resumed), down (not asked: the peer was found down)")
                        .Register(r);
  peer_bytes_ = &BuildCounter()
                     .Name("tusk_peer_bytes_total")
                     .Help("Body bytes received from peer edges, by peer")
                     .Register(r);
  ttfb_ = &BuildHistogram()
               .Name("tusk_upstream_ttfb_seconds")
               .Help("Time from sending an upstream request to its response head")
               .Register(r)
               .Add({}, prometheus::Histogram::BucketBoundaries{0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                                0.5, 1, 2.5, 5, 10});
  fill_throughput_ =
      &BuildHistogram()
           .Name("tusk_fill_throughput_bytes_per_second")
           .Help(
               "Body bytes per second of each fill that completed: the bytes its upstream (or "
               "peer) requests brought over the time from its start to its end")
           .Register(r)
           .Add({}, prometheus::Histogram::BucketBoundaries{1e5, 5e5, 1e6, 5e6, 1e7, 2.5e7, 5e7,
                                                            1e8, 2.5e8, 5e8, 1e9});
  bytes_children_[0] = &bytes_->Add({{"source", "cache"}});
  bytes_children_[1] = &bytes_->Add({{"source", "upstream"}});
}

Metrics::~Metrics() = default;

void Metrics::request(Outcome outcome, int status) {
  const int o = static_cast<int>(outcome);
  const int s = status - kMinStatus;
  if (o >= 0 && o < kOutcomes) {
    outcome_counts_[o].fetch_add(1, std::memory_order_relaxed);
  }
  if (o < 0 || o >= kOutcomes || s < 0 || s >= kStatuses) {
    requests_->Add({{"outcome", outcome_name(outcome)}, {"status", std::to_string(status)}})
        .Increment();
    return;
  }
  std::atomic<prometheus::Counter*>& slot = request_children_[o][s];
  prometheus::Counter* c = slot.load(std::memory_order_acquire);
  if (c == nullptr) {
    // First use: Add returns the one child of these labels, so threads racing here store the
    // same pointer.
    c = &requests_->Add({{"outcome", outcome_name(outcome)}, {"status", std::to_string(status)}});
    slot.store(c, std::memory_order_release);
  }
  c->Increment();
}

void Metrics::bytes_served(Source source, std::uint64_t n) {
  if (n == 0) {
    return;
  }
  bytes_children_[source == Source::kCache ? 0 : 1]->Increment(static_cast<double>(n));
}

void Metrics::file_bytes_served(bool copied, std::uint64_t n) {
  file_bytes_children_[copied ? 1 : 0]->Increment(static_cast<double>(n));
}

void Metrics::upstream_request(const std::string& upstream) {
  upstream_requests_->Add({{"upstream", upstream}}).Increment();
}

void Metrics::upstream_error(const std::string& upstream, const std::string& kind) {
  upstream_errors_->Add({{"upstream", upstream}, {"kind", kind}}).Increment();
}

void Metrics::access(const std::string& route, const char* result) {
  access_->Add({{"route", route}, {"result", result}}).Increment();
}

void Metrics::integrity_verified() { integrity_verified_->Increment(); }

void Metrics::integrity_failure(const char* check) {
  integrity_failures_total_.fetch_add(1, std::memory_order_relaxed);
  integrity_failures_->Add({{"check", check}}).Increment();
}

void Metrics::integrity_reread(std::uint64_t bytes) {
  integrity_reread_->Increment(static_cast<double>(bytes));
}

void Metrics::purged(std::uint64_t n) { purged_->Increment(static_cast<double>(n)); }

void Metrics::config_reload(bool ok) { reloads_[ok ? 0 : 1]->Increment(); }

// Family::Add per call: a handful per fill, not per request.
void Metrics::peer_request(const std::string& peer, const char* result) {
  peer_requests_->Add({{"peer", peer}, {"result", result}}).Increment();
}

void Metrics::peer_bytes(const std::string& peer, std::uint64_t n) {
  peer_bytes_->Add({{"peer", peer}}).Increment(static_cast<double>(n));
}

Metrics::Summary Metrics::summary() const {
  Summary s;
  for (int o = 0; o < kOutcomes; ++o) {
    s.outcomes[o] = outcome_counts_[o].load(std::memory_order_relaxed);
  }
  s.bytes_from_cache = static_cast<std::uint64_t>(bytes_children_[0]->Value());
  s.bytes_from_upstream = static_cast<std::uint64_t>(bytes_children_[1]->Value());
  s.upstream_bytes = upstream_bytes_total_.load(std::memory_order_relaxed);
  s.integrity_verified = static_cast<std::uint64_t>(integrity_verified_->Value());
  s.integrity_failures = integrity_failures_total_.load(std::memory_order_relaxed);
  s.reloads_ok = static_cast<std::uint64_t>(reloads_[0]->Value());
  s.reloads_failed = static_cast<std::uint64_t>(reloads_[1]->Value());
  s.purged = static_cast<std::uint64_t>(purged_->Value());
  return s;
}

void Metrics::upstream_bytes(const std::string& upstream, std::uint64_t n) {
  upstream_bytes(upstream_bytes_child(upstream), n);
}

prometheus::Counter* Metrics::upstream_bytes_child(const std::string& upstream) {
  return &upstream_bytes_->Add({{"upstream", upstream}});
}

void Metrics::upstream_bytes(prometheus::Counter* child, std::uint64_t n) {
  upstream_bytes_total_.fetch_add(n, std::memory_order_relaxed);
  child->Increment(static_cast<double>(n));
}

UpstreamCounts Metrics::upstream_counts(const std::string& upstream) const {
  UpstreamCounts c;
  for (const auto& family : registry_->Collect()) {
    const bool requests = family.name == "tusk_upstream_requests_total";
    if (!requests && family.name != "tusk_upstream_errors_total") {
      continue;
    }
    for (const auto& m : family.metric) {
      for (const auto& label : m.label) {
        if (label.name == "upstream" && label.value == upstream) {
          (requests ? c.requests : c.errors) += static_cast<std::uint64_t>(m.counter.value);
        }
      }
    }
  }
  return c;
}

void Metrics::coalesced_waiter() { coalesced_->Increment(); }
void Metrics::resumed_fill() { resumed_->Increment(); }
void Metrics::upstream_ttfb(double seconds) { ttfb_->Observe(seconds); }
void Metrics::fill_completed(std::uint64_t bytes, double seconds) {
  if (bytes == 0 || seconds <= 0) {
    return;
  }
  fill_throughput_->Observe(static_cast<double>(bytes) / seconds);
}
void Metrics::set_cache_dir(std::string dir) {
  cache_dir_ = std::move(dir);
  disk_free_ = &disk_free_family_->Add({});
  disk_size_ = &disk_size_family_->Add({});
}
void Metrics::set_fills_active(std::size_t n) { fills_active_->Set(static_cast<double>(n)); }
void Metrics::set_cache_max(std::uint64_t bytes) {
  cache_max_bytes_->Set(static_cast<double>(bytes));
}

std::string Metrics::render(const cache::Stats& stats) {
  {
    std::lock_guard lock(render_mu_);
    // Store counts are cumulative since open; feed the difference into monotonic counters.
    auto feed = [](prometheus::Counter* c, std::uint64_t now, std::uint64_t& seen) {
      if (now > seen) {
        c->Increment(static_cast<double>(now - seen));
        seen = now;
      }
    };
    feed(evictions_, stats.evictions, seen_evictions_);
    feed(evicted_bytes_, stats.evicted_bytes, seen_evicted_bytes_);
    feed(disk_syncs_, stats.syncs, seen_store_syncs_);
    feed(index_commits_, stats.commits, seen_commits_);
    feed(index_errors_, stats.index_errors, seen_index_errors_);
    cache_bytes_->Set(static_cast<double>(stats.bytes));
    cache_objects_->Set(static_cast<double>(stats.objects));
    struct statvfs fs {};
    if (disk_free_ != nullptr && ::statvfs(cache_dir_.c_str(), &fs) == 0) {
      disk_free_->Set(static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize));
      disk_size_->Set(static_cast<double>(fs.f_blocks) * static_cast<double>(fs.f_frsize));
    }
  }
  prometheus::TextSerializer serializer;
  return serializer.Serialize(registry_->Collect());
}

void Metrics::connection(ConnEvent e) { conn_events_[static_cast<int>(e)]->Increment(); }

void Metrics::accept_error() { accept_errors_->Increment(); }

void Metrics::set_connections_open(int n) { connections_open_->Set(n); }

void Metrics::disk_sync() { disk_syncs_->Increment(); }

void Metrics::cache_write_error(const char* reason) {
  const std::string_view r = reason;
  write_error_children_[r == "enospc" ? 0 : r == "eio" ? 1 : 2]->Increment();
}

}  // namespace proxy
