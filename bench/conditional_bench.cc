// Micro benchmarks of the per-request HTTP decisions: conditional evaluation (proxy/conditional.h)
// against a stored validator pair, and the freshness decision (proxy/freshness.h) over a typical
// S3 200 response. The date-based cases also pay for s3::parse_http_date, which tries each
// weekday name in turn and ends in timegm.
#include <benchmark/benchmark.h>

#include <cstdint>

#include "conf/config.h"
#include "proxy/conditional.h"
#include "proxy/freshness.h"
#include "s3/sign.h"

namespace {

proxy::Validators stored() {
  proxy::Validators v;
  v.etag = "\"9b2cf535f27731c974343645a3985328\"";
  v.last_modified = s3::parse_http_date("Tue, 14 May 2024 08:00:00 GMT");
  return v;
}

void evaluate(benchmark::State& state, const proxy::Conditions& c, proxy::Precondition want) {
  const proxy::Validators v = stored();
  if (proxy::evaluate(c, v) != want) {
    state.SkipWithError("unexpected precondition outcome");
    return;
  }
  for (auto _ : state) {
    proxy::Precondition p = proxy::evaluate(c, v);
    benchmark::DoNotOptimize(p);
  }
}

void BM_EvaluateNone(benchmark::State& state) {
  evaluate(state, proxy::Conditions{}, proxy::Precondition::kProceed);
}
BENCHMARK(BM_EvaluateNone);

void BM_EvaluateIfNoneMatchList(benchmark::State& state) {
  proxy::Conditions c;
  c.if_none_match = "W/\"0a0a\", \"1b1b\", \"9b2cf535f27731c974343645a3985328\"";
  evaluate(state, c, proxy::Precondition::kNotModified);
}
BENCHMARK(BM_EvaluateIfNoneMatchList);

void BM_EvaluateIfModifiedSince(benchmark::State& state) {
  proxy::Conditions c;
  c.if_modified_since = "Fri, 24 May 2024 10:15:00 GMT";
  evaluate(state, c, proxy::Precondition::kNotModified);
}
BENCHMARK(BM_EvaluateIfModifiedSince);

proxy::Headers s3_response() {
  return {{"x-amz-id-2", "eftixk72aD6Ap51TnqcoF8eFidJG9Z/2mkiDFu8yU9AS1ed4OpIszj7UDNEHGran"},
          {"x-amz-request-id", "318BC8BC148832E5"},
          {"Date", "Fri, 24 May 2024 10:15:00 GMT"},
          {"Last-Modified", "Tue, 14 May 2024 08:00:00 GMT"},
          {"ETag", "\"9b2cf535f27731c974343645a3985328\""},
          {"Accept-Ranges", "bytes"},
          {"Content-Type", "application/octet-stream"},
          {"Content-Length", "21474836480"},
          {"Server", "AmazonS3"}};
}

// `lifetime`: the expected expires_at - stored_at, a check that the intended branch ran.
void decide(benchmark::State& state, const proxy::Headers& headers, bool ttl_override,
            std::int64_t lifetime) {
  conf::Route route;
  route.prefix = "/images/";
  route.ttl_override = ttl_override;
  const std::int64_t now = 1716545730;  // 30 s after the response's Date
  const proxy::Freshness want = proxy::decide(200, headers, route, now);
  if (!want.storable || want.expires_at - want.stored_at != lifetime) {
    state.SkipWithError("unexpected freshness decision");
    return;
  }
  for (auto _ : state) {
    proxy::Freshness f = proxy::decide(200, headers, route, now);
    benchmark::DoNotOptimize(f);
  }
}

void BM_DecideCacheControl(benchmark::State& state) {
  proxy::Headers h = s3_response();
  h.emplace_back("Cache-Control", "public, max-age=3600, s-maxage=600");
  decide(state, h, false, 600);
}
BENCHMARK(BM_DecideCacheControl);

void BM_DecideExpires(benchmark::State& state) {
  proxy::Headers h = s3_response();
  h.emplace_back("Expires", "Fri, 24 May 2024 11:15:00 GMT");
  decide(state, h, false, 3600);
}
BENCHMARK(BM_DecideExpires);

void BM_DecideTtlOverride(benchmark::State& state) { decide(state, s3_response(), true, 3600); }
BENCHMARK(BM_DecideTtlOverride);

}  // namespace
