// Puts N complete, fresh objects straight into a cache directory's LMDB index (cache::Index,
// 20,000 records per transaction) and, when asked, their body files (cache::BodyFiles layout),
// as tuskd would have left them after N fills. Nothing is fsync'ed: a benchmark fixture, not a
// cache a crash should find intact. Used by tusk-fill-index (compare.py scenario 10) and the
// index-scale micro benchmarks (bench/scale_bench.cc); temp_parent() places the stores of the
// micro benchmarks.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <ctime>
#include <functional>
#include <optional>
#include <string>

#include "cache/body_files.h"
#include "cache/index.h"
#include "cache/meta.h"

namespace bench {

// Where benchmark stores live: $TUSK_BENCH_DIR, else /dev/shm when writable, else the temp dir.
inline std::filesystem::path temp_parent() {
  if (const char* d = std::getenv("TUSK_BENCH_DIR"); d != nullptr && *d != '\0') {
    return d;
  }
  std::error_code ec;
  if (std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0) {
    return "/dev/shm";
  }
  return std::filesystem::temp_directory_path();
}

struct IndexFill {
  std::string dir;  // the cache dir (index/ and objects/ are made in it)
  std::uint64_t count = 0;
  std::function<std::string(std::uint64_t)> cache_key;  // of object i
  std::uint64_t size = 1024;
  std::uint32_t chunk_size = 8u << 20;
  bool bodies = true;  // write body files: `size` bytes of the key, newline-separated, repeated
};

// Empty on success, else what failed.
inline std::string fill_index(const IndexFill& f) {
  auto make_dir = [](const std::string& path) {
    return ::mkdir(path.c_str(), 0750) == 0 || errno == EEXIST;
  };
  for (const std::string& d : {f.dir, f.dir + "/index", f.dir + "/objects"}) {
    if (!make_dir(d)) {
      return "mkdir " + d + ": " + std::strerror(errno);
    }
  }
  auto index = cache::Index::open(f.dir + "/index");
  if (!index) {
    return index.error().message;
  }
  cache::BodyFiles files(f.dir + "/objects");
  const std::int64_t now = std::time(nullptr);
  std::optional<cache::lmdb::Txn> txn;  // move-constructible only: re-made in place
  auto begin = [&]() -> std::string {
    auto t = index->write();
    if (!t) {
      return t.error().message;
    }
    txn.reset();
    txn.emplace(std::move(*t));
    return {};
  };
  if (auto e = begin(); !e.empty()) {
    return e;
  }
  std::string body;
  for (std::uint64_t i = 0; i < f.count; ++i) {
    cache::Meta m;
    m.generation = i + 1;
    m.size = f.size;
    m.chunk_size = f.chunk_size;
    m.etag = "\"fill-index\"";
    m.content_type = "application/octet-stream";
    m.stored_at = now;
    m.expires_at = now + 30 * 86400;
    m.accessed_at = now - static_cast<std::int64_t>(f.count - i);  // LRU: lowest i first
    m.key = f.cache_key(i);
    m.bitmap.assign((m.chunk_count() + 7) / 8, 0);
    for (std::uint64_t c = 0; c < m.chunk_count(); ++c) {
      m.set_chunk(c);
    }
    const std::string hash = cache::key_hash(m.key);
    if (f.bodies) {
      const std::string path = files.path_of(hash, m.generation);
      const std::string yy = path.substr(0, path.rfind('/'));
      if (!make_dir(yy.substr(0, yy.rfind('/'))) || !make_dir(yy)) {
        return "mkdir " + yy + ": " + std::strerror(errno);
      }
      body.clear();
      while (body.size() < f.size) {
        body += m.key.substr(m.key.rfind('\n') + 1);
        body += '\n';
      }
      body.resize(f.size);
      const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0640);
      const bool ok =
          fd >= 0 && ::write(fd, body.data(), body.size()) == static_cast<ssize_t>(body.size());
      const int e = errno;
      if (fd >= 0) {
        ::close(fd);
      }
      if (!ok) {
        return "cannot write " + path + ": " + std::strerror(e);
      }
    }
    if (auto r = index->put(*txn, hash, m, std::nullopt); !r) {
      return r.error().message;
    }
    if ((i + 1) % 20000 == 0) {
      if (auto r = index->commit(*txn); !r) {
        return r.error().message;
      }
      if (auto e = begin(); !e.empty()) {
        return e;
      }
    }
  }
  if (auto r = index->put_generation_limit(*txn, f.count + 1); !r) {
    return r.error().message;
  }
  if (auto r = index->commit(*txn); !r) {
    return r.error().message;
  }
  return {};
}

}  // namespace bench
