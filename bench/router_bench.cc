// Micro benchmarks of request routing (proxy/router.h) over 20 routes (10 exact, 10 prefixes, a
// few bound to a Host), as done on every request: a hit on a prefix route with a percent-encoded
// key, and a miss that walks every route before answering 404. Router::route decodes and checks
// the path, then scans the routes linearly (exact first, then longest prefix).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "conf/config.h"
#include "proxy/router.h"

namespace {

std::vector<conf::Route> twenty_routes() {
  std::vector<conf::Route> rs;
  for (int i = 0; i < 10; ++i) {
    conf::Route r;
    r.path = "/catalog-" + std::to_string(i) + ".json";
    r.upstream = "walrus";
    r.bucket = "catalogs";
    r.key = "catalog-" + std::to_string(i) + ".json";
    rs.push_back(r);
  }
  for (int i = 0; i < 10; ++i) {
    conf::Route r;
    r.prefix = "/images-" + std::to_string(i) + "/";
    r.upstream = "walrus";
    r.bucket = "emis-" + std::to_string(i);
    r.key_prefix = "v2/";
    if (i % 3 == 0) {
      r.host = "images.example.com";
    }
    rs.push_back(r);
  }
  // A longer prefix nested in the hit's prefix: the longest-prefix rule must pick it.
  rs[19].prefix = "/images-8/ubuntu/";
  return rs;
}

void BM_RouteHitPrefixEncoded(benchmark::State& state) {
  const std::vector<conf::Route> rs = twenty_routes();
  proxy::Router router(rs);
  for (auto _ : state) {
    auto t =
        router.route("images.example.com:8080",
                     "/images-8/ubuntu/22.04/emi-1a2b3c4d/disk%20image%2B1.img?x-id=GetObject");
    benchmark::DoNotOptimize(t);
  }
  auto t = router.route("images.example.com", "/images-8/ubuntu/x%20y");
  if (!t || t->bucket != "emis-9" || t->key != "v2/x y") {
    state.SkipWithError("the hit did not route to the longest prefix");
  }
}
BENCHMARK(BM_RouteHitPrefixEncoded);

void BM_RouteMiss404(benchmark::State& state) {
  const std::vector<conf::Route> rs = twenty_routes();
  proxy::Router router(rs);
  for (auto _ : state) {
    auto t = router.route("images.example.com", "/nowhere/ubuntu/22.04/disk.img");
    benchmark::DoNotOptimize(t);
  }
  auto t = router.route("images.example.com", "/nowhere/ubuntu/22.04/disk.img");
  if (t || t.error().code != proxy::RouteErrc::kNotFound) {
    state.SkipWithError("the miss was not a 404");
  }
}
BENCHMARK(BM_RouteMiss404);

}  // namespace
