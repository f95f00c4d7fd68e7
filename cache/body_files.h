// Body files: one sparse file per object generation, <objects>/xx/yy/<hash>.<generation>. A file
// is durable (sized, its blocks reserved, fsync'ed with its directory entry) before the index
// names it, and is unlinked, never truncated, when its record goes, so a reader holding its fd
// keeps its bytes. Plus the background scan that unlinks the files no record names.
// Tricky: the scan runs beside live creates, so it judges and unlinks each file under the
// store's writer lock, asking the store whether the file is still wanted.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "cache/store.h"

namespace cache {

class BodyFiles {
 public:
  // `dir`: the objects dir, existing. Files are opened, made and unlinked relative to an fd of
  // it (openat, unlinkat): a hit's open walks xx/yy/<file>, not the whole absolute path again.
  explicit BodyFiles(std::string dir);
  ~BodyFiles();
  BodyFiles(const BodyFiles&) = delete;
  BodyFiles& operator=(const BodyFiles&) = delete;

  const std::string& dir() const { return dir_; }
  std::string path_of(std::string_view hash, std::uint64_t generation) const;
  // (hash, generation) of a path make() would create; nullopt for anything else.
  std::optional<std::pair<std::string, std::uint64_t>> parse(const std::filesystem::path& p) const;

  // Creates the file of `generation` of `hash`: `size` bytes, blocks reserved. `durable`: also
  // durable with its name (the file, its directory and any directory it had to make are
  // fsync'ed); else the caller makes it so later (fdatasync of the file and sync_names_of, or a
  // syncfs) before any record names it. Returns an fd open read-write;
  // the caller closes it. Errors: kNoSpace (ENOSPC), kIo. On error no file is left. Any thread;
  // callers make sure no one else creates the same generation.
  Result<int> make(std::string_view hash, std::uint64_t generation, std::uint64_t size,
                   bool durable = true);
  // Makes the names of the files of `hash` durable: fsync of their directory and of the two
  // above it (make(durable=false) may have created them without syncing). Errors: kIo.
  Result<void> sync_names_of(std::string_view hash);
  std::string dir_of(std::string_view hash) const;
  // Opens an existing file, read-only or read-write. Errors: kStale when it is gone (replaced or
  // evicted since the caller read the index), kIo.
  Result<int> open(std::string_view hash, std::uint64_t generation, bool for_write) const;
  // A file already gone is fine; other failures are logged.
  void unlink(std::string_view hash, std::uint64_t generation) const;
  // Bytes free for unprivileged users on the objects' file system. Errors: kIo.
  Result<std::uint64_t> free_disk() const;

  // fsync calls made by make() and sync_dir_of() so far. Any thread.
  std::uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }

 private:
  Result<void> fsync_dir(const std::string& path);
  Result<void> ensure_dir(const std::string& parent, const std::string& path, bool durable);
  // xx/yy/<hash>.<generation>: path_of without the objects dir, for the *at calls.
  std::string rel_of(std::string_view hash, std::uint64_t generation) const;
  std::string dir_;
  int dir_fd_ = -1;  // O_PATH of dir_; -1 (absolute paths) if it could not be opened
  std::atomic<std::uint64_t> syncs_{0};
};

// The background scan that unlinks body files no record names: generations replaced or evicted
// before a crash, creates that crashed before publishing, records dropped at open, names make()
// would never make.
class OrphanScan {
 public:
  // Whether the file of (hash, generation) is wanted (indexed, or being created). An error
  // stops the scan (logged).
  using IsLive = std::function<Result<bool>(std::string_view hash, std::uint64_t generation)>;

  OrphanScan() = default;
  ~OrphanScan() { stop(); }

  // Starts the scan of files.dir() on its own thread. For each regular file it takes `lock`,
  // asks `is_live` (a name parse() rejects is never live) and unlinks the file if not, still
  // under `lock`: whoever publishes files under that lock never sees one judged meanwhile.
  // `files`, `lock` and what `is_live` uses must outlive the scan (stop() or the destructor).
  void start(const BodyFiles& files, std::mutex& lock, IsLive is_live);
  // Ends the scan early and joins it. Idempotent.
  void stop();
  // Blocks until the scan is over, finished or stopped. Only after start().
  void wait() const;
  // Files the scan unlinked. Any thread.
  std::uint64_t removed() const { return removed_.load(std::memory_order_relaxed); }

  OrphanScan(const OrphanScan&) = delete;
  OrphanScan& operator=(const OrphanScan&) = delete;

 private:
  void run(const BodyFiles& files, std::mutex& lock, const IsLive& is_live);
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> removed_{0};
  mutable std::mutex done_mu_;
  mutable std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace cache
