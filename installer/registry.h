// The installer's registry (ImageProxy semantics, EUSTORE.md §7): LMDB maps "<eustore name>@<site
// guid>" to the installed eki/eri/emi. An in-progress record names its owner (pid + start time) and
// the objects uploaded for images not yet registered (cleaned after a crash); a per-key flock makes
// a second concurrent install wait for the first (also between threads of one process: each lock
// opens its own file description). LMDB handles are owned by cache/lmdb.h's Env and Txn (shared
// with the cache index). One Registry per process and file (LMDB's rule); its calls may come
// from several threads, each call being its own transaction.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "cache/lmdb.h"
#include "installer/error.h"

namespace installer {

enum class InstallState { kInProgress, kFailed, kDone };
const char* install_state_name(InstallState s);  // "in-progress", "failed", "done"

struct InstallRecord {
  InstallState state = InstallState::kInProgress;
  int pid = 0;                  // owner while in progress
  std::uint64_t pid_start = 0;  // owner's start time (clock ticks since boot, /proc/pid/stat)
  std::int64_t started = 0;     // unix seconds
  std::int64_t finished = 0;
  std::string image;    // eustore name (checksum) of the tarball
  std::string guid;     // site
  std::string source;   // catalog URL, tarball path or image URL, informational
  std::string content;  // InstallOptions::content of the install that wrote it ("" = not given)
  std::string bucket;
  std::string work_dir;       // the owner's temporary folder (removed when a crash is cleaned up)
  std::string eki, eri, emi;  // registered ids ("" until registered)
  // Objects uploaded (or being uploaded) for images not yet registered; deleted on cleanup.
  std::vector<std::string> pending_keys;
};

// Encoding (JSON with "v": 1). decode() returns nullopt for unknown versions or garbage, which
// the registry treats as "no record".
std::string encode_record(const InstallRecord& r);
std::optional<InstallRecord> decode_record(std::string_view data);

std::string registry_key(std::string_view image, std::string_view guid);

// True when `pid` is alive and (if `start` is non-zero) is the same process that started then.
bool process_alive(int pid, std::uint64_t start);
// This process's start time as recorded in InstallRecord::pid_start.
std::uint64_t process_start_time(int pid);

// Holds an exclusive flock on one key's lock file until destroyed.
class KeyLock {
 public:
  KeyLock() = default;
  explicit KeyLock(int fd) : fd_(fd) {}
  KeyLock(KeyLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  KeyLock& operator=(KeyLock&& o) noexcept;
  ~KeyLock();

 private:
  int fd_ = -1;
};

class Registry {
 public:
  // Opens (creating) the registry directory: data.mdb, lock.mdb and locks/. Errors: kIo.
  static Result<Registry> open(const std::string& dir);
  Registry(Registry&&) noexcept;
  Registry& operator=(Registry&&) noexcept;
  ~Registry();

  Result<std::optional<InstallRecord>> get(const std::string& key);
  Result<void> put(const std::string& key, const InstallRecord& r);
  Result<void> erase(const std::string& key);
  Result<std::vector<std::pair<std::string, InstallRecord>>> list();

  // Takes the key's exclusive lock. If another process holds it, calls `on_wait` once, then
  // blocks until it is released (the holder finishing or dying both release it).
  Result<KeyLock> lock(const std::string& key, const std::function<void()>& on_wait);
  // The key's lock when nobody holds it, else nullopt at once.
  Result<std::optional<KeyLock>> try_lock(const std::string& key);

  const std::string& dir() const { return dir_; }

 private:
  Registry() = default;
  std::string dir_;
  cache::lmdb::Env env_;
};

// `shared` when not null, else the registry at `dir` opened into `own` (which must outlive the
// returned pointer). Errors: as Registry::open.
Result<Registry*> use_registry(Registry* shared, const std::string& dir,
                               std::optional<Registry>& own);

// --registry, else $TUSK_REGISTRY, else ~/.local/share/tusk/registry.
std::string default_registry_dir(const std::function<std::optional<std::string>(const char*)>& env);

}  // namespace installer
