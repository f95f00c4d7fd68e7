// The job side of `tusk serve`: one job per GUID being registered, a bounded pool of worker
// threads running install_image() (or the test mode's stand-in), and the download folder kept
// under its cap. Internal to serve_*.cc.
// Threads: post(), find() and stop_accepting() are called from the HTTP thread; workers update
// jobs under the same mutex. The Registry is shared (LMDB allows one env per file per process):
// each call is its own transaction, which LMDB allows from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "installer/serve.h"

namespace installer {

// What GET and POST answer about one GUID.
struct JobView {
  std::string guid;
  JobState state = JobState::kQueued;
  std::uint64_t done = 0, total = 0;  // bytes, while downloading
  std::string error;                  // failed
  std::string eki, eri, emi;          // done
};

class Jobs {
 public:
  // `registry` must outlive this object. Nothing runs before start().
  Jobs(const ServeOptions& options, InstallOptions base, Registry& registry, LogFn log);
  ~Jobs();  // stops accepting, then joins the workers (waits for running registrations)
  Jobs(const Jobs&) = delete;
  Jobs& operator=(const Jobs&) = delete;

  void start();

  struct PostAnswer {
    int status = 202;            // 200 done, 202 queued/running, 409, 503 (full or stopping)
    JobView view;                // 200 / 202
    std::string error;           // 409 / 503: the message
    std::string registered_url;  // 409: what the GUID holds
  };
  // Decides (decide_post) and starts or joins a job. Errors reading the registry answer 503.
  PostAnswer post(const ImageRequest& request);

  // The job of `guid` while it runs or after it failed, else what the registry holds (a done job
  // answers from its record: the record may have been removed since) (an in-progress record without
  // a job was interrupted: reported failed). nullopt: unknown GUID. `error` is set on a registry
  // failure.
  std::optional<JobView> find(const std::string& guid, std::string* error);

  // Stops taking jobs: queued ones fail ("the service stopped…"), running ones go on.
  void stop_accepting();
  std::size_t running() const;
  // Lets the workers go (before the process leaves with _exit while registrations still run):
  // nothing joins them after this.
  void abandon_workers();

 private:
  struct Job;
  void work();
  void run(const std::shared_ptr<Job>& job);
  Result<ImageIds> run_install(const std::shared_ptr<Job>& job);
  Result<ImageIds> run_test_mode(const std::shared_ptr<Job>& job);
  void set_state(Job& job, JobState state);
  void finish(const std::shared_ptr<Job>& job, Result<ImageIds> result);

  // Download space: the job's subfolder, reserving `need` bytes (0: unknown) for it.
  std::string download_dir_of(const std::string& guid) const;
  Result<void> reserve_space(const std::string& dir, std::uint64_t need);
  void trim_space(const std::string& release_dir);

  const ServeOptions options_;
  const InstallOptions base_;
  Registry& registry_;
  const LogFn log_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::map<std::string, std::shared_ptr<Job>> jobs_;  // by GUID: active and recently finished
  std::deque<std::string> finished_;                  // oldest first, bounded
  std::deque<std::shared_ptr<Job>> queue_;
  std::size_t active_ = 0;   // queued + running
  std::size_t running_ = 0;  // taken by a worker
  bool stopping_ = false;
  std::vector<std::thread> workers_;

  std::mutex space_mu_;
  std::map<std::string, std::uint64_t> reserved_;  // active download subfolders → bytes
};

}  // namespace installer
