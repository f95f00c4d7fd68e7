// Micro benchmarks of the index record encoding (cache/meta.h): encode_meta runs on every index
// write (create, mark_chunks, refresh), decode_meta on every lookup. The 1 TiB case (8 MiB chunks,
// a 16 KiB bitmap of 131072 chunks) shows how the bitmap dominates for big objects.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "cache/meta.h"

namespace {

cache::Meta meta_of(std::uint64_t size) {
  cache::Meta m;
  m.generation = 42;
  m.size = size;
  m.chunk_size = 8u << 20;
  m.etag = "\"9b2cf535f27731c974343645a3985328\"";
  m.last_modified = "Tue, 14 May 2024 08:00:00 GMT";
  m.content_type = "application/octet-stream";
  m.stored_at = 1716545700;
  m.expires_at = 1716549300;
  m.accessed_at = 1716545730;
  m.headers = {
      {"Cache-Control", "public, max-age=3600"},
      {"Content-Disposition", "attachment; filename=\"disk.img\""},
      {"x-amz-meta-sha256", "5d41402abc4b2a76b9719d911017c592aa7b2d7e1e5f8c4d3b2a1908f7e6d5c4"},
      {"x-amz-meta-build", "2024-05-14.3"}};
  // Half the chunks durable, as in a fill in progress.
  for (std::uint64_t i = 0; i < m.chunk_count() / 2; ++i) {
    m.set_chunk(i);
  }
  return m;
}

constexpr std::uint64_t kSmall = 200ull << 20;  // 25 chunks
constexpr std::uint64_t kTiB = 1ull << 40;      // 131072 chunks

void encode(benchmark::State& state, std::uint64_t size) {
  const cache::Meta m = meta_of(size);
  for (auto _ : state) {
    std::string bytes = cache::encode_meta(m);
    benchmark::DoNotOptimize(bytes);
  }
  state.SetBytesProcessed(state.iterations() * cache::encode_meta(m).size());
}

void decode(benchmark::State& state, std::uint64_t size) {
  const std::string bytes = cache::encode_meta(meta_of(size));
  if (!cache::decode_meta(bytes)) {
    state.SkipWithError("the record did not decode");
    return;
  }
  for (auto _ : state) {
    auto m = cache::decode_meta(bytes);
    benchmark::DoNotOptimize(m);
  }
  state.SetBytesProcessed(state.iterations() * bytes.size());
}

void BM_EncodeMetaSmall(benchmark::State& state) { encode(state, kSmall); }
BENCHMARK(BM_EncodeMetaSmall);
void BM_DecodeMetaSmall(benchmark::State& state) { decode(state, kSmall); }
BENCHMARK(BM_DecodeMetaSmall);
void BM_EncodeMeta1TiB(benchmark::State& state) { encode(state, kTiB); }
BENCHMARK(BM_EncodeMeta1TiB);
void BM_DecodeMeta1TiB(benchmark::State& state) { decode(state, kTiB); }
BENCHMARK(BM_DecodeMeta1TiB);

}  // namespace
