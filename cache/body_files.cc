// Body files and the orphan scan. Tricky: make() finding its file already there is not a
// collision with a live object: generations are never reused by a working index, so the file is
// debris of a crash that also lost the counter's last commit, and is replaced.
#include "cache/body_files.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <system_error>

#include "cache/index.h"

namespace cache {
namespace {

auto fail(Errc code, std::string message) {
  return conf::unexpected(Error{code, std::move(message)});
}

std::string sys_error(std::string_view what, const std::string& path, int e) {
  return std::string(what) + " " + path + ": " +
         std::error_code(e, std::system_category()).message();
}

void unlink_quietly(const std::string& path) {
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("cache: {}", sys_error("cannot unlink", path, errno));
  }
}

}  // namespace

// ThreadSanitizer (gcc 12's libtsan) intercepts open() but not openat(): descriptors made by
// openat are invisible to it, and when their numbers are reused it reports races on them that
// are not there. Its build uses the absolute paths (the fallback below), which it sees.
#if defined(__SANITIZE_THREAD__)
constexpr bool kRelativeOpens = false;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool kRelativeOpens = false;
#else
constexpr bool kRelativeOpens = true;
#endif
#else
constexpr bool kRelativeOpens = true;
#endif

BodyFiles::BodyFiles(std::string dir)
    : dir_(std::move(dir)),
      dir_fd_(kRelativeOpens ? ::open(dir_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC) : -1) {}

BodyFiles::~BodyFiles() {
  if (dir_fd_ >= 0) {
    ::close(dir_fd_);
  }
}

std::string BodyFiles::rel_of(std::string_view hash, std::uint64_t generation) const {
  std::string r;
  r.reserve(hash.size() + 28);
  r.append(hash.substr(0, 2)).append("/").append(hash.substr(2, 2)).append("/");
  r.append(hash).append(".").append(std::to_string(generation));
  return r;
}

std::string BodyFiles::dir_of(std::string_view hash) const {
  return dir_ + "/" + std::string(hash.substr(0, 2)) + "/" + std::string(hash.substr(2, 2));
}

std::string BodyFiles::path_of(std::string_view hash, std::uint64_t generation) const {
  return dir_of(hash) + "/" + std::string(hash) + "." + std::to_string(generation);
}

std::optional<std::pair<std::string, std::uint64_t>> BodyFiles::parse(
    const std::filesystem::path& p) const {
  const std::string name = p.filename().string();
  const auto dot = name.find('.');
  if (dot != kHashHexLen || dot + 1 >= name.size()) {
    return std::nullopt;
  }
  std::string hash = name.substr(0, dot);
  if (hash.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return std::nullopt;
  }
  std::uint64_t generation = 0;
  const char* first = name.data() + dot + 1;
  const char* last = name.data() + name.size();
  auto [end, ec] = std::from_chars(first, last, generation);
  if (ec != std::errc() || end != last) {
    return std::nullopt;
  }
  if (p.parent_path() != std::filesystem::path(dir_of(hash))) {
    return std::nullopt;
  }
  return std::make_pair(std::move(hash), generation);
}

Result<void> BodyFiles::fsync_dir(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return fail(Errc::kIo, sys_error("cannot open directory", path, errno));
  }
  syncs_.fetch_add(1, std::memory_order_relaxed);
  const int rc = ::fsync(fd);
  const int e = errno;
  ::close(fd);
  if (rc != 0) {
    return fail(Errc::kIo, sys_error("cannot fsync directory", path, e));
  }
  return {};
}

// mkdir that tolerates an existing directory; a new one is made durable in its parent when
// `durable` (else sync_names_of or a syncfs does it later).
Result<void> BodyFiles::ensure_dir(const std::string& parent, const std::string& path,
                                   bool durable) {
  if (::mkdir(path.c_str(), 0750) == 0) {
    return durable ? fsync_dir(parent) : Result<void>();
  }
  if (errno != EEXIST) {
    return fail(Errc::kIo, sys_error("cannot create directory", path, errno));
  }
  return {};
}

Result<int> BodyFiles::make(std::string_view hash, std::uint64_t generation, std::uint64_t size,
                            bool durable) {
  const std::string path = path_of(hash, generation);
  const std::string rel = rel_of(hash, generation);
  const int at = dir_fd_ >= 0 ? dir_fd_ : AT_FDCWD;
  const char* name = dir_fd_ >= 0 ? rel.c_str() : path.c_str();
  // The directories exist in a cache that has held objects: try the file first, and make them
  // only when it says they are missing (two mkdir calls fewer per miss).
  int fd = ::openat(at, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0640);
  if (fd < 0 && errno == ENOENT) {
    const std::string xx = dir_ + "/" + std::string(hash.substr(0, 2));
    if (auto r = ensure_dir(dir_, xx, durable); !r) {
      return conf::unexpected(std::move(r).error());
    }
    if (auto r = ensure_dir(xx, dir_of(hash), durable); !r) {
      return conf::unexpected(std::move(r).error());
    }
    fd = ::openat(at, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0640);
  }
  if (fd < 0 && errno == EEXIST) {
    spdlog::warn("cache: removing stale body file {}", path);
    unlink_quietly(path);
    fd = ::openat(at, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0640);
  }
  if (fd < 0) {
    return fail(Errc::kIo, sys_error("cannot create body file", path, errno));
  }
  auto give_up = [&](Errc code, std::string_view what, int e) {
    ::close(fd);
    unlink_quietly(path);
    return fail(code, sys_error(what, path, e));
  };
  // fallocate (mode 0) sizes the file as it reserves its blocks; ftruncate only where the file
  // system cannot reserve (and for empty objects).
  if (size > 0 && ::fallocate(fd, 0, 0, static_cast<off_t>(size)) == 0) {
    // sized and reserved
  } else if (size > 0 && errno != EOPNOTSUPP) {
    return give_up(errno == ENOSPC ? Errc::kNoSpace : Errc::kIo, "cannot reserve blocks of", errno);
  } else if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    return give_up(errno == ENOSPC ? Errc::kNoSpace : Errc::kIo, "cannot size", errno);
  }
  if (!durable) {
    return fd;
  }
  // The size and the reservation must survive a crash as well as the name.
  syncs_.fetch_add(1, std::memory_order_relaxed);
  if (::fsync(fd) != 0) {
    return give_up(Errc::kIo, "cannot fsync", errno);
  }
  if (auto r = fsync_dir(dir_of(hash)); !r) {
    ::close(fd);
    unlink_quietly(path);
    return conf::unexpected(std::move(r).error());
  }
  return fd;
}

Result<void> BodyFiles::sync_names_of(std::string_view hash) {
  for (const std::string& d : {dir_of(hash), dir_ + "/" + std::string(hash.substr(0, 2)), dir_}) {
    if (auto r = fsync_dir(d); !r) {
      return r;
    }
  }
  return {};
}

Result<int> BodyFiles::open(std::string_view hash, std::uint64_t generation, bool for_write) const {
  const int flags = (for_write ? O_RDWR : O_RDONLY) | O_CLOEXEC;
  const int fd = dir_fd_ >= 0 ? ::openat(dir_fd_, rel_of(hash, generation).c_str(), flags)
                              : ::open(path_of(hash, generation).c_str(), flags);
  if (fd < 0) {
    const int e = errno;
    // Replaced or evicted between the caller's read and the open: the file went with its record.
    return fail(e == ENOENT ? Errc::kStale : Errc::kIo,
                sys_error("cannot open body", path_of(hash, generation), e));
  }
  return fd;
}

void BodyFiles::unlink(std::string_view hash, std::uint64_t generation) const {
  if (dir_fd_ < 0) {
    unlink_quietly(path_of(hash, generation));
  } else if (::unlinkat(dir_fd_, rel_of(hash, generation).c_str(), 0) != 0 && errno != ENOENT) {
    const int e = errno;
    spdlog::warn("cache: {}", sys_error("cannot unlink", path_of(hash, generation), e));
  }
}

Result<std::uint64_t> BodyFiles::free_disk() const {
  struct statvfs st {};
  if (::statvfs(dir_.c_str(), &st) != 0) {
    return fail(Errc::kIo, sys_error("cannot statvfs", dir_, errno));
  }
  return static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
}

void OrphanScan::start(const BodyFiles& files, std::mutex& lock, IsLive is_live) {
  TUSK_CHECK(!thread_.joinable());
  thread_ = std::thread(
      [this, &files, &lock, is_live = std::move(is_live)] { run(files, lock, is_live); });
}

void OrphanScan::stop() {
  stop_.store(true);
  if (thread_.joinable()) {
    thread_.join();
  }
}

void OrphanScan::wait() const {
  std::unique_lock l(done_mu_);
  done_cv_.wait(l, [&] { return done_; });
}

void OrphanScan::run(const BodyFiles& files, std::mutex& lock, const IsLive& is_live) {
  std::uint64_t kept = 0;
  std::uint64_t removed = 0;
  std::error_code ec;
  namespace fs = std::filesystem;
  fs::recursive_directory_iterator it(files.dir(), ec);
  for (; !ec && it != fs::recursive_directory_iterator() && !stop_.load();) {
    const fs::path path = it->path();
    std::error_code type_ec;
    const bool regular = it->symlink_status(type_ec).type() == fs::file_type::regular;
    it.increment(ec);
    if (!regular) {
      continue;  // directories are shared with creates running now; never removed
    }
    const auto parsed = files.parse(path);
    std::lock_guard l(lock);
    if (parsed) {
      auto live = is_live(parsed->first, parsed->second);
      if (!live) {
        spdlog::error("cache: orphan scan stopped: {}", live.error().message);
        break;
      }
      if (*live) {
        ++kept;
        continue;
      }
    }
    if (::unlink(path.c_str()) == 0) {
      ++removed;
      removed_.fetch_add(1, std::memory_order_relaxed);
    } else if (errno != ENOENT) {
      spdlog::warn("cache: {}", sys_error("cannot unlink orphan", path.string(), errno));
    }
  }
  if (ec) {
    spdlog::warn("cache: orphan scan of {} incomplete: {}", files.dir(), ec.message());
  }
  spdlog::info("cache: orphan scan of {}: kept {} body files, removed {}", files.dir(), kept,
               removed);
  {
    std::lock_guard l(done_mu_);
    done_ = true;
  }
  done_cv_.notify_all();
}

}  // namespace cache
