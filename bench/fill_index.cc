// tusk-fill-index: fills a cache directory with N complete, fresh objects without an upstream,
// for the index-scale scenario of bench/compare.py (issue 13, scenario 10): the records go
// straight into the LMDB index (cache::Index, big transactions) and the bodies into their files
// (cache::BodyFiles layout), as tuskd would have left them after N fills. Nothing is fsync'ed: a
// benchmark fixture, not a cache a crash should find intact.
//
//   tusk-fill-index --dir D --count N --endpoint URL --bucket B --prefix P [--size BYTES]
//                   [--chunk-size BYTES]
//
// Object i (0 <= i < N) is the key P + i as 7 digits, its body `size` bytes of the key name
// repeated (so a reader can check what it got); the cache key is tuskd's (proxy/fill.cc
// make_cache_key: endpoint, bucket and key joined by newlines). Access times are spread over
// the last N seconds in key order, so eviction takes the lowest numbers first. Prints one JSON
// line: {"objects": N, "seconds": S, "index_bytes": B}.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "cache/body_files.h"
#include "cache/index.h"
#include "cache/meta.h"

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

void make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0750) != 0 && errno != EEXIST) {
    die("mkdir " + path + ": " + std::strerror(errno));
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const auto t0 = std::chrono::steady_clock::now();
  make_dir(a.dir);
  make_dir(a.dir + "/index");
  make_dir(a.dir + "/objects");
  auto index = cache::Index::open(a.dir + "/index");
  if (!index) {
    die(index.error().message);
  }
  cache::BodyFiles files(a.dir + "/objects");
  const std::int64_t now = std::time(nullptr);
  std::optional<cache::lmdb::Txn> txn;  // move-constructible only: re-made in place
  auto begin = [&] {
    auto t = index->write();
    if (!t) {
      die(t.error().message);
    }
    txn.reset();
    txn.emplace(std::move(*t));
  };
  begin();
  std::string body;
  for (std::uint64_t i = 0; i < a.count; ++i) {
    char num[24];
    std::snprintf(num, sizeof num, "%07llu", static_cast<unsigned long long>(i));
    const std::string key = a.prefix + num;
    cache::Meta m;
    m.generation = i + 1;
    m.size = a.size;
    m.chunk_size = a.chunk_size;
    m.etag = "\"fill-index\"";
    m.content_type = "application/octet-stream";
    m.stored_at = now;
    m.expires_at = now + 30 * 86400;
    m.accessed_at = now - static_cast<std::int64_t>(a.count - i);
    m.key = a.endpoint + "\n" + a.bucket + "\n" + key;
    m.bitmap.assign((m.chunk_count() + 7) / 8, 0);
    for (std::uint64_t c = 0; c < m.chunk_count(); ++c) {
      m.set_chunk(c);
    }
    const std::string hash = cache::key_hash(m.key);
    const std::string path = files.path_of(hash, m.generation);
    const std::string yy = path.substr(0, path.rfind('/'));
    make_dir(yy.substr(0, yy.rfind('/')));
    make_dir(yy);
    body.clear();
    while (body.size() < a.size) {
      body += key;
      body += '\n';
    }
    body.resize(a.size);
    const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0640);
    if (fd < 0 || ::write(fd, body.data(), body.size()) != static_cast<ssize_t>(body.size())) {
      die("cannot write " + path + ": " + std::strerror(errno));
    }
    ::close(fd);
    if (auto r = index->put(*txn, hash, m, std::nullopt); !r) {
      die(r.error().message);
    }
    if ((i + 1) % 20000 == 0) {
      if (auto r = index->commit(*txn); !r) {
        die(r.error().message);
      }
      begin();
    }
  }
  if (auto r = index->put_generation_limit(*txn, a.count + 1); !r) {
    die(r.error().message);
  }
  if (auto r = index->commit(*txn); !r) {
    die(r.error().message);
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
