// Micro benchmarks of the access decision (proxy/access.h) as made on every request of a guarded
// route, beside routing's cost (router_bench.cc) for scale: an `allow` list of 16 ranges, a
// bearer token against files of 1 and 64 tokens (every line is compared, in constant time), and
// SigV4 and SigV2 presigned URLs (one HMAC chain each, as botocore makes them).
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "proxy/access.h"
#include "s3/presign.h"
#include "s3/sign.h"

namespace {

constexpr std::time_t kNow = 1764900000;

conf::Route guarded(conf::Auth auth, std::size_t tokens) {
  conf::Route r;
  r.prefix = "/private/";
  r.auth = auth;
  for (int i = 0; i < 16; ++i) {
    r.allow.add(*conf::parse_cidr("10." + std::to_string(i) + ".0.0/16"));
  }
  for (std::size_t i = 0; i < tokens; ++i) {
    r.token_digests.push_back(conf::token_digest("robot-token-" + std::to_string(1000000 + i)));
  }
  r.client_keys = {{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}};
  return r;
}

void run(benchmark::State& state, const conf::Route& route, const proxy::RequestHead& head,
         std::string_view target) {
  proxy::AccessRequest req;
  req.client = *conf::parse_ip("10.15.3.4");  // the last range of the list
  req.method = "GET";
  const std::size_t q = target.find('?');
  req.path = target.substr(0, q);
  req.query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  req.host = "edge.example.com:8080";
  req.head = &head;
  for (auto _ : state) {
    proxy::AccessVerdict v = proxy::check_access(route, req, kNow);
    if (v.result != proxy::AccessResult::kAllowed) {
      state.SkipWithError("refused");
      break;
    }
    benchmark::DoNotOptimize(v);
  }
}

void BM_AccessAllowList(benchmark::State& state) {
  run(state, guarded(conf::Auth::kNone, 0), proxy::RequestHead{}, "/private/centos.tgz");
}
BENCHMARK(BM_AccessAllowList);

void BM_AccessBearerToken(benchmark::State& state) {
  const auto n = static_cast<std::size_t>(state.range(0));
  proxy::RequestHead head;
  head.fields.emplace_back("Authorization",
                           "Bearer robot-token-" + std::to_string(1000000 + n - 1));
  run(state, guarded(conf::Auth::kToken, n), head, "/private/centos.tgz");
}
BENCHMARK(BM_AccessBearerToken)->Arg(1)->Arg(64);

void BM_AccessPresignedV4(benchmark::State& state) {
  const std::string url = *s3::presign_v4(
      "http://edge.example.com:8080/private/centos-7%20x86_64.tgz",
      {"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}, "us-east-1", "s3", kNow, 3600);
  run(state, guarded(conf::Auth::kPresigned, 0), proxy::RequestHead{},
      url.substr(std::string("http://edge.example.com:8080").size()));
}
BENCHMARK(BM_AccessPresignedV4);

void BM_AccessPresignedV2(benchmark::State& state) {
  const std::string expires = std::to_string(kNow + 3600);
  const std::string path = "/private/centos-7%20x86_64.tgz";
  const std::string sig = s3::base64(s3::hmac_sha1("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                                   "GET\n\n\n" + expires + "\n" + path));
  run(state, guarded(conf::Auth::kPresigned, 0), proxy::RequestHead{},
      path + "?AWSAccessKeyId=AKIDEXAMPLE&Expires=" + expires +
          "&Signature=" + s3::uri_encode(sig, false));
}
BENCHMARK(BM_AccessPresignedV2);

}  // namespace
