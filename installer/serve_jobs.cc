// The jobs of `tusk serve` (serve_jobs.h): the table by GUID, the worker pool, one registration
// as reserve space → install_image (or the test mode's record) → trim space → record the answer.
// Tricky: a job stays in the table after it ends (bounded), so that a failure's error text can
// be read and a later POST sees "done" without a registry read; the registry stays the truth.
#include "installer/serve_jobs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <ctime>
#include <filesystem>

#include "installer/crypto.h"
#include "installer/http.h"

namespace installer {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kKeepFinished = 1024;

// Test mode records under its own keys: its made-up ids never answer a real service.
std::string record_key_of(const std::string& guid, bool test_mode) {
  return (test_mode ? "serve-test:" : "serve:") + guid;
}

JobView done_view(const std::string& guid, const InstallRecord& rec) {
  JobView v;
  v.guid = guid;
  v.state = JobState::kDone;
  v.eki = rec.eki, v.eri = rec.eri, v.emi = rec.emi;
  return v;
}

Jobs::PostAnswer answer(int status, JobView view) {
  Jobs::PostAnswer a;
  a.status = status;
  a.view = std::move(view);
  return a;
}
Jobs::PostAnswer refuse(int status, std::string error, std::string registered_url = {}) {
  Jobs::PostAnswer a;
  a.status = status;
  a.error = std::move(error);
  a.registered_url = std::move(registered_url);
  return a;
}

// Content-Length of a HEAD, when the server gives one (redirects are not followed: unknown).
std::uint64_t head_size(const std::string& url) {
  auto http = Http::create(5, 15);
  if (!http) return 0;
  auto r = http->request("HEAD", url, {});
  if (!r || r->status != 200) return 0;
  std::string len = r->header("content-length");
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), n);
  return ec == std::errc() && end == len.data() + len.size() ? n : 0;
}

// The download folder's entries: each subfolder summed, stray files as they are.
std::vector<DownloadEntry> scan_downloads(const std::string& dir) {
  std::vector<DownloadEntry> out;
  std::error_code ec;
  auto mtime_of = [](const fs::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<std::int64_t>(st.st_mtime) : 0;
  };
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    DownloadEntry d;
    d.name = e.path().filename().string();
    d.mtime = mtime_of(e.path());
    if (e.is_directory(ec)) {
      for (const auto& f : fs::recursive_directory_iterator(e.path(), ec)) {
        if (f.is_regular_file(ec)) {
          d.bytes += f.file_size(ec);
          d.mtime = std::max(d.mtime, mtime_of(f.path()));
        }
      }
    } else if (e.is_regular_file(ec)) {
      d.bytes = e.file_size(ec);
    }
    out.push_back(std::move(d));
  }
  return out;
}

}  // namespace

struct Jobs::Job {
  ImageRequest request;
  std::string content;
  JobView view;
};

Jobs::Jobs(const ServeOptions& options, InstallOptions base, Registry& registry, LogFn log)
    : options_(options), base_(std::move(base)), registry_(registry), log_(std::move(log)) {}

Jobs::~Jobs() {
  stop_accepting();
  for (auto& t : workers_) t.join();
}

void Jobs::start() {
  // Registrations a crash cut short leave nothing behind past this start: their uploads of
  // unregistered images and their work folders go now, not at the GUID's next POST.
  if (!options_.test_mode) {
    if (auto all = registry_.list(); all) {
      for (const auto& [key, rec] : *all) {
        if (key.rfind("serve:", 0) != 0 || rec.state != InstallState::kInProgress) continue;
        InstallOptions opt = base_;
        opt.registry = &registry_;
        opt.bucket = rec.bucket;
        auto cleaned = clean_interrupted(opt, key, [this](const std::string& l) { log_(l); });
        if (!cleaned) {
          log_("serve: " + rec.guid + ": cleaning up an interrupted registration failed: " +
               cleaned.error().message + " (its next POST tries again)");
        } else if (*cleaned) {
          log_("serve: " + rec.guid + ": cleaned up an interrupted registration");
        }
      }
    } else {
      log_("serve: cannot list the registry: " + all.error().message);
    }
  }
  for (int i = 0; i < options_.parallel; ++i) workers_.emplace_back([this] { work(); });
}

Jobs::PostAnswer Jobs::post(const ImageRequest& request) {
  const std::string content = request_content(request);
  std::lock_guard lock(mu_);
  if (stopping_) return refuse(503, "the service is stopping");
  std::optional<JobSummary> summary;
  auto it = jobs_.find(request.guid);
  // A finished job answers from the registry, the truth (`tusk images remove` may have
  // deregistered it since); running and failed ones from the table.
  if (it != jobs_.end() && it->second->view.state != JobState::kDone) {
    summary = JobSummary{it->second->view.state, it->second->content};
  }
  std::optional<InstallRecord> record;
  if (!summary || summary->state == JobState::kFailed) {
    auto r = registry_.get(record_key_of(request.guid, options_.test_mode));
    if (!r) return refuse(503, "registry: " + r.error().message);
    record = std::move(*r);
  }
  PostDecision d = decide_post(summary, record, content);
  switch (d.verdict) {
    case PostVerdict::kConflict:
      return refuse(409,
                    "GUID " + request.guid + " is registered for " + redact_url(d.registered_url) +
                        ": a GUID names one image; use another GUID for other content",
                    redact_url(d.registered_url));
    case PostVerdict::kJoin:
      return answer(202, it->second->view);
    case PostVerdict::kAnswer:
      return answer(200, done_view(request.guid, *record));
    case PostVerdict::kStart:
      break;
  }
  if (active_ >= options_.max_jobs) {
    return refuse(503,
                  "too many registrations queued (" + std::to_string(active_) + "): retry later");
  }
  auto job = std::make_shared<Job>();
  job->request = request;
  job->content = content;
  job->view.guid = request.guid;
  jobs_[request.guid] = job;
  queue_.push_back(job);
  ++active_;
  wake_.notify_one();
  log_("serve: " + request.guid + ": queued " + redact_url(request.url) +
       (record && record->state != InstallState::kDone ? " (resuming an earlier attempt)" : ""));
  return answer(202, job->view);
}

std::optional<JobView> Jobs::find(const std::string& guid, std::string* error) {
  std::lock_guard lock(mu_);
  if (auto it = jobs_.find(guid); it != jobs_.end() && it->second->view.state != JobState::kDone) {
    return it->second->view;
  }
  auto r = registry_.get(record_key_of(guid, options_.test_mode));
  if (!r) {
    *error = "registry: " + r.error().message;
    return std::nullopt;
  }
  if (!*r) return std::nullopt;
  const InstallRecord& rec = **r;
  if (rec.state == InstallState::kDone) return done_view(guid, rec);
  JobView v;
  v.guid = guid;
  v.state = JobState::kFailed;
  if (rec.state == InstallState::kFailed && rec.pid != ::getpid()) {
    v.error =
        "interrupted: an earlier run of the service failed or stopped during this "
        "registration; POST again to resume it";
  } else if (rec.state == InstallState::kFailed) {
    v.error = "the registration failed (its error is in the service's log): POST again to retry";
  } else {
    v.error = "interrupted: the service stopped during this registration; POST again to resume it";
  }
  return v;
}

void Jobs::stop_accepting() {
  std::lock_guard lock(mu_);
  if (stopping_) return;
  stopping_ = true;
  for (auto& job : queue_) {
    job->view.state = JobState::kFailed;
    job->view.error = "the service stopped before this registration started: POST again";
    log_("serve: " + job->view.guid + ": failed: " + job->view.error);
  }
  active_ -= queue_.size();
  queue_.clear();
  wake_.notify_all();
}

void Jobs::abandon_workers() {
  for (auto& t : workers_) t.detach();
  workers_.clear();
}

std::size_t Jobs::running() const {
  std::lock_guard lock(mu_);
  return running_;
}

void Jobs::work() {
  for (;;) {
    std::shared_ptr<Job> job;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping
      job = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
    }
    run(job);
    std::lock_guard lock(mu_);
    --running_;
    --active_;
  }
}

void Jobs::run(const std::shared_ptr<Job>& job) {
  finish(job, options_.test_mode ? run_test_mode(job) : run_install(job));
}

Result<ImageIds> Jobs::run_test_mode(const std::shared_ptr<Job>& job) {
  const ImageRequest& q = job->request;
  ImageIds ids = test_mode_ids(q.guid, q.eki.empty() ? options_.kernel : q.eki,
                               q.eri.empty() ? options_.ramdisk : q.eri);
  InstallRecord rec;
  rec.state = InstallState::kDone;
  rec.pid = static_cast<int>(::getpid());
  rec.started = rec.finished = static_cast<std::int64_t>(std::time(nullptr));
  rec.image = "test-mode";
  rec.guid = q.guid;
  rec.source = q.url;
  rec.content = job->content;
  rec.eki = ids.eki, rec.eri = ids.eri, rec.emi = ids.emi;
  if (auto w = registry_.put(record_key_of(q.guid, options_.test_mode), rec); !w) {
    return conf::unexpected(w.error());
  }
  return ids;
}

Result<ImageIds> Jobs::run_install(const std::shared_ptr<Job>& job) {
  const ImageRequest& q = job->request;
  const std::string name = download_dir_of(q.guid);
  const std::string dir = options_.download_dir + "/" + name;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return fail(Errc::kIo, "download folder " + dir + ": " + ec.message());
  if (auto space = reserve_space(name, q.size ? *q.size : head_size(q.url)); !space) {
    return conf::unexpected(space.error());
  }
  InstallOptions opt = base_;
  opt.url = q.url;
  opt.kind = SourceKind::kAuto;
  opt.expect_sha512 = q.sha512;
  opt.expect_size = q.size;
  opt.record_key = record_key_of(q.guid, options_.test_mode);
  opt.content = job->content;
  opt.download_dir = dir;
  opt.max_download = options_.download_space;  // a body larger than the cap is cut off
  opt.registry = &registry_;
  opt.guid = q.guid;
  opt.kernel_id = q.eki;
  opt.ramdisk_id = q.eri;
  opt.disk_kernel_id = options_.kernel;  // only a disk image takes the defaults
  opt.disk_ramdisk_id = options_.ramdisk;
  opt.architecture = q.architecture.empty() ? options_.architecture : q.architecture;
  if (!q.description.empty()) opt.description = q.description;

  // The job's state follows on_progress's steps and, for the steps it does not report, the
  // install's log lines. Leaving "downloading" means the file is complete: count what is on
  // disk from then on, and trim the folder.
  auto advance = [this, job, name](std::optional<JobState> stage, const std::uint64_t* bytes) {
    bool left_download = false;
    {
      std::lock_guard lock(mu_);
      JobState old = job->view.state;
      if (stage) job->view.state = *stage;
      if (job->view.state == JobState::kDownloading && bytes != nullptr) {
        job->view.done = bytes[0];
        job->view.total = bytes[1];
      }
      if (old != job->view.state) {
        left_download = old == JobState::kDownloading;
        log_("serve: " + job->view.guid + ": " + job_state_name(job->view.state));
      }
    }
    if (stage == JobState::kDownloading && bytes != nullptr && bytes[1] > 0) {
      std::lock_guard lock(space_mu_);  // the real size, for other jobs' reservations
      if (auto it = reserved_.find(name); it != reserved_.end() && it->second < bytes[1]) {
        it->second = bytes[1];
      }
    }
    if (left_download) {
      {
        std::lock_guard lock(space_mu_);
        if (auto it = reserved_.find(name); it != reserved_.end()) it->second = 0;
      }
      trim_space({});
    }
  };
  InstallIo io;
  io.log = [this, advance, guid = q.guid, url = q.url,
            shown = redact_url(q.url)](const std::string& line) {
    std::string safe = line;  // the installer names the URL as given
    for (std::size_t at = safe.find(url); at != std::string::npos && url != shown;
         at = safe.find(url, at + shown.size())) {
      safe.replace(at, url.size(), shown);
    }
    log_("serve: " + guid + ": " + safe);
    if (auto stage = stage_of_log(line)) advance(stage, nullptr);
  };
  io.on_progress = [advance](const char* step, std::uint64_t done, std::uint64_t total) {
    const std::uint64_t bytes[2] = {done, total};
    advance(stage_of_step(step != nullptr ? step : ""), bytes);
  };
  auto r = install_image(opt, io);
  trim_space(name);
  if (!r) return conf::unexpected(r.error());
  return ImageIds{r->eki, r->eri, r->emi};
}

void Jobs::finish(const std::shared_ptr<Job>& job, Result<ImageIds> result) {
  std::lock_guard lock(mu_);
  JobView& v = job->view;
  if (result) {
    v.state = JobState::kDone;
    v.eki = result->eki, v.eri = result->eri, v.emi = result->emi;
    log_("serve: " + v.guid + ": done " + v.emi + " (kernel " + (v.eki.empty() ? "-" : v.eki) +
         ", ramdisk " + (v.eri.empty() ? "-" : v.eri) + ")");
  } else {
    v.state = JobState::kFailed;
    // Install errors name the source: never with its userinfo or query (signatures, tokens).
    v.error = result.error().message;
    for (std::size_t at;
         !job->request.url.empty() && (at = v.error.find(job->request.url)) != std::string::npos;) {
      v.error.replace(at, job->request.url.size(), redact_url(job->request.url));
    }
    log_("serve: " + v.guid + ": failed: " + v.error);
  }
  finished_.push_back(v.guid);
  while (finished_.size() > kKeepFinished) {
    auto it = jobs_.find(finished_.front());
    if (it != jobs_.end() && !job_active(it->second->view.state)) jobs_.erase(it);
    finished_.pop_front();
  }
}

std::string Jobs::download_dir_of(const std::string& guid) const {
  Digest d(Digest::Algo::kSha256);
  d.update(guid);
  return d.final_hex().substr(0, 16);
}

Result<void> Jobs::reserve_space(const std::string& name, std::uint64_t need) {
  std::lock_guard lock(space_mu_);
  reserved_[name] = need;
  auto entries = scan_downloads(options_.download_dir);
  std::uint64_t held = 0;
  for (auto& e : entries) {
    if (auto it = reserved_.find(e.name); it != reserved_.end()) {
      e.active = true;
      e.reserved = it->second;
      if (e.name != name) held += std::max(e.bytes, e.reserved);
    }
  }
  SpacePlan plan = plan_download_space(entries, options_.download_space);
  if (!plan.fits) {
    reserved_.erase(name);
    return fail(Errc::kIo, "the download (" + std::to_string(need) +
                               " bytes) does not fit in the download space (serve.download_space " +
                               std::to_string(options_.download_space) + " bytes, " +
                               std::to_string(held) + " held by running downloads)");
  }
  for (const auto& victim : plan.remove) {
    std::error_code ec;
    fs::remove_all(options_.download_dir + "/" + victim, ec);
    log_("serve: removed the finished download " + victim + " to stay within the download space" +
         (ec ? " (failed: " + ec.message() + ")" : ""));
  }
  return {};
}

void Jobs::trim_space(const std::string& release) {
  std::lock_guard lock(space_mu_);
  if (!release.empty()) reserved_.erase(release);
  auto entries = scan_downloads(options_.download_dir);
  for (auto& e : entries) {
    if (auto it = reserved_.find(e.name); it != reserved_.end()) {
      e.active = true;
      e.reserved = it->second;
    }
  }
  for (const auto& victim : plan_download_space(entries, options_.download_space).remove) {
    std::error_code ec;
    fs::remove_all(options_.download_dir + "/" + victim, ec);
    log_("serve: removed the finished download " + victim + " to stay within the download space" +
         (ec ? " (failed: " + ec.message() + ")" : ""));
  }
}

}  // namespace installer
