// Admin jobs (issue 10) that outlive the call that started them: warming (ImageProxy's
// "seeding": fill a catalog's images or a list of paths before the herd arrives) and verifying
// (re-read bodies on disk and check them against their ETag's MD5). Each job runs on a thread
// of its own; warming goes through the normal fill path (FillTable::acquire: coalesced with
// clients, fill.parallel per object, kWarmParallel objects at once) and goes on when the caller
// disconnects. A mismatch purges the object and counts in tusk_integrity_failures_total.
// Threads: every method from any thread; a job's state is read under its own lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "conf/result.h"
#include "proxy/services.h"

namespace proxy {

// One object of a job and how far it got.
struct JobObject {
  std::string path;
  std::string state = "queued";  // queued | running | done | failed
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::string result;  // warm: ok | cached | mismatch; verify: ok | mismatch | unverifiable |
                       // incomplete | error; "" while not done
  std::string error;
  std::string expect_name;  // warm of a catalog: the image's eustore checksum name
};

struct JobView {
  std::string id;
  std::string kind;  // warm | verify
  bool done = false;
  std::string error;  // the job as a whole failed (a catalog that cannot be read)
  std::vector<JobObject> objects;
};

// Purges one object: its fill in flight is abandoned and its record and body removed. Returns
// 1 when there was something to purge, else 0. Any thread.
std::uint64_t purge_object(Services& svc, const std::string& cache_key);

// The public path a client uses for `cache_key` under `config`'s routes, or nullopt when no
// route maps to it: an exact route first, else the prefix route with the longest key_prefix
// (the most specific name of the key), with the query of a `query: key` route's entry; every
// variant of a varying object (proxy/vary.h) has the object's path. Pure.
std::optional<std::string> public_path(const conf::Config& config, std::string_view cache_key);

// Where a catalog's image `url` is on this edge (EUSTORE.md §1: relative URLs resolve against
// the base, here the edge's root or the path of `base`). An absolute URL is on this edge only
// when it starts with `base`. Error text otherwise. Pure.
conf::Result<std::string, std::string> catalog_path(std::string_view url, std::string_view base);

// The eustore checksum name of a body whose MD5 is `md5_hex` (EUSTORE.md §1.7). Pure.
std::string eustore_name(std::string_view md5_hex);

class Jobs {
 public:
  explicit Jobs(Services& svc);
  ~Jobs();  // stops the jobs (fills they started go on) and joins their threads

  static constexpr int kMaxRunning = 4;       // jobs at once; more are refused
  static constexpr std::size_t kKeep = 64;    // finished jobs kept for GET
  static constexpr int kWarmParallel = 2;     // objects one warm job fills at once
  static constexpr std::size_t kMaxObjects = 100000;

  // Start a job; the id, or why not (too many running, nothing to do).
  conf::Result<std::string, std::string> warm_catalog(std::string catalog, std::string base);
  conf::Result<std::string, std::string> warm_paths(std::vector<std::string> paths);
  conf::Result<std::string, std::string> verify(std::string prefix);

  std::optional<JobView> view(const std::string& kind, const std::string& id) const;

 private:
  struct Job;
  conf::Result<std::shared_ptr<Job>, std::string> add(const char* kind);
  void run_warm(const std::shared_ptr<Job>& job, std::string catalog, std::string base);
  void run_verify(const std::shared_ptr<Job>& job, std::string prefix);
  bool warm_objects(const std::shared_ptr<Job>& job);
  void finish(const std::shared_ptr<Job>& job);
  void reap_locked();

  Services& svc_;
  mutable std::mutex mu_;
  std::deque<std::shared_ptr<Job>> jobs_;  // oldest first
  // A thread per job; joined once its job is done (reap_locked) or at destruction.
  std::vector<std::pair<std::shared_ptr<Job>, std::thread>> threads_;
  std::uint64_t next_id_ = 1;
  int running_ = 0;
  std::atomic<bool> stop_{false};
};

}  // namespace proxy
