// tusk-fill-index: fills a cache directory with N complete, fresh objects without an upstream,
// for the index-scale scenario of bench/compare.py (issue 13, scenario 10), through
// bench/index_fixture.h.
//
//   tusk-fill-index --dir D --count N --endpoint URL --bucket B --prefix P [--size BYTES]
//                   [--chunk-size BYTES] [--bodies 0]
//
// Object i (0 <= i < N) is the key P + i as 7 digits, its body `size` bytes of the key name
// repeated (so a reader can check what it got); the cache key is tuskd's (proxy/fill.cc
// make_cache_key: endpoint, bucket and key joined by newlines). Access times are spread over
// the last N seconds in key order, so eviction takes the lowest numbers first. Prints one JSON
// line: {"objects": N, "seconds": S, "index_bytes": B}. `--bodies 0` writes the index alone (to time
// an index's open).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "bench/index_fixture.h"

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "tusk-fill-index: %s\n", what.c_str());
  std::exit(1);
}

struct Args {
  std::string dir, endpoint, bucket, prefix;
  std::uint64_t count = 0;
  std::uint64_t size = 1024;
  std::uint32_t chunk_size = 8u << 20;
  bool bodies = true;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string_view opt = argv[i];
    if (i + 1 >= argc) {
      die("missing value for " + std::string(opt));
    }
    const std::string v = argv[++i];
    if (opt == "--dir") {
      a.dir = v;
    } else if (opt == "--count") {
      a.count = std::strtoull(v.c_str(), nullptr, 10);
    } else if (opt == "--endpoint") {
      a.endpoint = v;
    } else if (opt == "--bucket") {
      a.bucket = v;
    } else if (opt == "--prefix") {
      a.prefix = v;
    } else if (opt == "--size") {
      a.size = std::strtoull(v.c_str(), nullptr, 10);
    } else if (opt == "--bodies") {
      a.bodies = v != "0";
    } else if (opt == "--chunk-size") {
      a.chunk_size = static_cast<std::uint32_t>(std::strtoul(v.c_str(), nullptr, 10));
    } else {
      die("unknown option " + std::string(opt));
    }
  }
  if (a.dir.empty() || a.endpoint.empty() || a.bucket.empty() || a.count == 0 ||
      a.chunk_size == 0 || a.size == 0) {
    die("usage: --dir D --count N --endpoint URL --bucket B --prefix P [--size B] "
        "[--chunk-size B]");
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const auto t0 = std::chrono::steady_clock::now();
  bench::IndexFill f;
  f.dir = a.dir;
  f.count = a.count;
  f.size = a.size;
  f.chunk_size = a.chunk_size;
  f.bodies = a.bodies;
  f.cache_key = [&a](std::uint64_t i) {
    char num[24];
    std::snprintf(num, sizeof num, "%07llu", static_cast<unsigned long long>(i));
    return a.endpoint + "\n" + a.bucket + "\n" + a.prefix + num;
  };
  if (std::string e = bench::fill_index(f); !e.empty()) {
    die(e);
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::error_code ec;
  const auto index_bytes = std::filesystem::file_size(a.dir + "/index/data.mdb", ec);
  std::printf("{\"objects\": %llu, \"seconds\": %.3f, \"index_bytes\": %llu}\n",
              static_cast<unsigned long long>(a.count), secs,
              static_cast<unsigned long long>(ec ? 0 : index_bytes));
  return 0;
}
