// Micro benchmarks of request signing (s3/sign.h): SigV4 of a ranged GET, as tusk signs every
// upstream fill request, and SigV2 for Walrus. Inputs are built once outside the timed loop, so
// the numbers are the signing cost alone (canonicalisation, SHA-256, the HMAC key chain).
#include <benchmark/benchmark.h>

#include "s3/sign.h"

namespace {

constexpr char kEmptyHash[] = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

const s3::Credentials kCreds{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"};

void BM_SigV4RangedGet(benchmark::State& state) {
  s3::V4Input in;
  in.method = "GET";
  in.canonical_uri = "/starter-emis/images/ubuntu-22.04/emi-1a2b3c4d/disk%20image.img";
  in.headers = {{"Host", "s3.us-east-1.example.com"},
                {"Range", "bytes=8388608-16777215"},
                {"x-amz-content-sha256", kEmptyHash},
                {"x-amz-date", "20240524T101500Z"}};
  in.payload_hash = kEmptyHash;
  in.region = "us-east-1";
  in.amz_date = "20240524T101500Z";
  for (auto _ : state) {
    s3::V4Output out = s3::v4_sign(kCreds, in);
    benchmark::DoNotOptimize(out);
  }
}
BENCHMARK(BM_SigV4RangedGet);

void BM_SigV2RangedGet(benchmark::State& state) {
  s3::V2Input in;
  in.method = "GET";
  in.date = "Fri, 24 May 2024 10:15:00 GMT";
  in.headers = {{"Host", "walrus.example.com:8773"},
                {"Date", "Fri, 24 May 2024 10:15:00 GMT"},
                {"Range", "bytes=8388608-16777215"}};
  in.resource = "/starter-emis/images/ubuntu-22.04/emi-1a2b3c4d/disk%20image.img";
  for (auto _ : state) {
    std::string auth = s3::v2_authorization(kCreds, in);
    benchmark::DoNotOptimize(auth);
  }
}
BENCHMARK(BM_SigV2RangedGet);

}  // namespace
