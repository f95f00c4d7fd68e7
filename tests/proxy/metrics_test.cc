// proxy/metrics.cc: only series that happened are exported (no outcome x status zeros), the lazy
// children of tusk_requests_total count exactly under concurrency, the fill throughput
// histogram, and the cache disk gauges.
#include "proxy/metrics.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace proxy {
namespace {

// The samples of a text exposition: "name{labels}" -> value.
std::map<std::string, double> samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const std::size_t sp = line.rfind(' ');
    EXPECT_NE(sp, std::string::npos) << line;
    out[line.substr(0, sp)] = std::stod(line.substr(sp + 1));
  }
  return out;
}

// How many samples have a series name starting with `prefix`.
int count_series(const std::map<std::string, double>& s, const std::string& prefix) {
  int n = 0;
  for (const auto& [k, v] : s) {
    n += k.rfind(prefix, 0) == 0 ? 1 : 0;
  }
  return n;
}

TEST(Metrics, NothingHappenedExportsNoRequestSeries) {
  Metrics m;
  const std::string text = m.render(cache::Stats{});
  const auto s = samples(text);
  EXPECT_EQ(count_series(s, "tusk_requests_total"), 0) << text;
  EXPECT_EQ(count_series(s, "tusk_upstream_requests_total"), 0);
  EXPECT_EQ(count_series(s, "tusk_upstream_errors_total"), 0);
  EXPECT_EQ(count_series(s, "tusk_peer_requests_total"), 0);
  // Without a cache directory there is no disk to describe (not a misleading 0).
  EXPECT_EQ(count_series(s, "tusk_cache_disk_free_bytes"), 0);
  // The fixed small sets are there from the start.
  EXPECT_EQ(s.at("tusk_served_bytes_total{source=\"cache\"}"), 0);
  EXPECT_EQ(s.at("tusk_connections_total{event=\"refused\"}"), 0);
  EXPECT_EQ(s.at("tusk_config_reloads_total{result=\"failed\"}"), 0);
  EXPECT_EQ(s.at("tusk_fill_throughput_bytes_per_second_count"), 0);
  EXPECT_EQ(s.at("tusk_upstream_ttfb_seconds_count"), 0);
  // A small exposition: no 7 x 11 zero series any more.
  EXPECT_LT(s.size(), 80u) << text;
}

TEST(Metrics, OnlyTheRequestSeriesThatHappened) {
  Metrics m;
  m.request(Outcome::kHit, 200);
  m.request(Outcome::kHit, 200);
  m.request(Outcome::kMiss, 206);
  m.request(Outcome::kError, 431);
  m.request(Outcome::kError, 999);  // outside the array: through Family::Add
  m.request(Outcome::kError, 999);
  m.request(Outcome::kError, 42);
  const auto s = samples(m.render(cache::Stats{}));
  EXPECT_EQ(count_series(s, "tusk_requests_total"), 5);
  EXPECT_EQ(s.at("tusk_requests_total{outcome=\"HIT\",status=\"200\"}"), 2);
  EXPECT_EQ(s.at("tusk_requests_total{outcome=\"MISS\",status=\"206\"}"), 1);
  EXPECT_EQ(s.at("tusk_requests_total{outcome=\"ERROR\",status=\"431\"}"), 1);
  EXPECT_EQ(s.at("tusk_requests_total{outcome=\"ERROR\",status=\"999\"}"), 2);
  EXPECT_EQ(s.at("tusk_requests_total{outcome=\"ERROR\",status=\"42\"}"), 1);
  const Metrics::Summary sum = m.summary();
  EXPECT_EQ(sum.outcomes[static_cast<int>(Outcome::kHit)], 2u);
  EXPECT_EQ(sum.outcomes[static_cast<int>(Outcome::kMiss)], 1u);
  EXPECT_EQ(sum.outcomes[static_cast<int>(Outcome::kError)], 4u);
}

// Threads racing to make the same child, and others counting on children already made: every
// increment lands in one series (run under TSan too).
TEST(Metrics, LazyChildrenCountExactlyUnderConcurrency) {
  Metrics m;
  constexpr int kThreads = 8;
  constexpr int kEach = 20000;
  const int statuses[] = {200, 206, 304, 404};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, &statuses, t] {
      for (int i = 0; i < kEach; ++i) {
        m.request(t % 2 == 0 ? Outcome::kHit : Outcome::kMiss, statuses[i % 4]);
      }
    });
  }
  std::string mid;
  for (int i = 0; i < 20; ++i) {
    mid = m.render(cache::Stats{});  // scraping while children are being made
  }
  for (auto& th : threads) {
    th.join();
  }
  const auto s = samples(m.render(cache::Stats{}));
  EXPECT_EQ(count_series(s, "tusk_requests_total"), 8);
  for (const char* outcome : {"HIT", "MISS"}) {
    for (int status : statuses) {
      const std::string key = std::string("tusk_requests_total{outcome=\"") + outcome +
                              "\",status=\"" + std::to_string(status) + "\"}";
      EXPECT_EQ(s.at(key), kThreads / 2 * kEach / 4) << key;
    }
  }
}

TEST(Metrics, FillThroughputObservesCompletedFills) {
  Metrics m;
  m.fill_completed(8u << 20, 2.0);  // 4 MiB/s
  m.fill_completed(0, 1.0);         // nothing fetched (all on disk): not a throughput
  m.fill_completed(100, 0.0);       // no time: not a throughput
  const auto s = samples(m.render(cache::Stats{}));
  EXPECT_EQ(s.at("tusk_fill_throughput_bytes_per_second_count"), 1);
  EXPECT_EQ(s.at("tusk_fill_throughput_bytes_per_second_sum"), 4194304);
  EXPECT_EQ(s.at("tusk_fill_throughput_bytes_per_second_bucket{le=\"1000000\"}"), 0);
  EXPECT_EQ(s.at("tusk_fill_throughput_bytes_per_second_bucket{le=\"5000000\"}"), 1);
}

TEST(Metrics, CacheGaugesAndDisk) {
  Metrics m;
  m.set_cache_max(1000);
  m.set_cache_dir(std::filesystem::temp_directory_path().string());
  cache::Stats st;
  st.bytes = 300;
  st.objects = 2;
  st.evictions = 3;
  auto s = samples(m.render(st));
  EXPECT_EQ(s.at("tusk_cache_bytes"), 300);
  EXPECT_EQ(s.at("tusk_cache_objects"), 2);
  EXPECT_EQ(s.at("tusk_cache_max_bytes"), 1000);
  EXPECT_EQ(s.at("tusk_cache_evictions_total"), 3);
  EXPECT_GT(s.at("tusk_cache_disk_size_bytes"), 0);
  EXPECT_GT(s.at("tusk_cache_disk_free_bytes"), 0);
  EXPECT_LE(s.at("tusk_cache_disk_free_bytes"), s.at("tusk_cache_disk_size_bytes"));
  // Store counts are cumulative; the counter follows them without double counting.
  st.evictions = 5;
  s = samples(m.render(st));
  EXPECT_EQ(s.at("tusk_cache_evictions_total"), 5);
}

TEST(Metrics, UpstreamAndPeerSeriesAppearWhenUsed) {
  Metrics m;
  m.upstream_request("walrus");
  m.upstream_error("walrus", "timeout");
  m.upstream_bytes("walrus", 10);
  m.peer_request("edge2", "ok");
  m.peer_bytes("edge2", 7);
  const auto s = samples(m.render(cache::Stats{}));
  EXPECT_EQ(s.at("tusk_upstream_requests_total{upstream=\"walrus\"}"), 1);
  EXPECT_EQ(s.at("tusk_upstream_errors_total{kind=\"timeout\",upstream=\"walrus\"}"), 1);
  EXPECT_EQ(s.at("tusk_upstream_bytes_total{upstream=\"walrus\"}"), 10);
  EXPECT_EQ(s.at("tusk_peer_requests_total{peer=\"edge2\",result=\"ok\"}"), 1);
  EXPECT_EQ(s.at("tusk_peer_bytes_total{peer=\"edge2\"}"), 7);
  const UpstreamCounts c = m.upstream_counts("walrus");
  EXPECT_EQ(c.requests, 1u);
  EXPECT_EQ(c.errors, 1u);
}

}  // namespace
}  // namespace proxy
