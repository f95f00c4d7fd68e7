#include "proxy/jobs.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cache/digest.h"
#include "proxy/decide.h"
#include "s3/printable.h"
#include "s3/sign.h"

namespace proxy {

namespace {

constexpr std::uint64_t kMaxCatalogBytes = 16u << 20;
constexpr auto kPoll = std::chrono::milliseconds(50);

}  // namespace

struct Jobs::Job {
  mutable std::mutex mu;
  JobView v;
};

// ---------------------------------------------------------------- pure helpers

std::optional<std::string> public_path(const conf::Config& config, std::string_view cache_key) {
  const std::size_t a = cache_key.find('\n');
  const std::size_t b = a == std::string_view::npos ? a : cache_key.find('\n', a + 1);
  if (b == std::string_view::npos) {
    return std::nullopt;
  }
  const std::string_view endpoint = cache_key.substr(0, a);
  const std::string_view bucket = cache_key.substr(a + 1, b - a - 1);
  // The key ends at a newline, which no key holds: a query ("\n?a=1&b=2", routes with `query:
  // key`) or a variant ("\n#...", proxy/vary.h) may follow.
  std::string_view key = cache_key.substr(b + 1);
  std::string_view query;
  if (const std::size_t c = key.find('\n'); c != std::string_view::npos) {
    std::string_view rest = key.substr(c);
    key = key.substr(0, c);
    if (rest.starts_with("\n?")) {
      query = rest.substr(1, rest.find('\n', 1) - 1);  // "?a=1&b=2"
    }
  }
  auto with_query = [&](std::optional<std::string> path) {
    if (path) {
      *path += query;
    }
    return path;
  };
  auto same_object = [&](const conf::Route& r) {
    auto up = config.upstreams.find(r.upstream);
    return up != config.upstreams.end() && up->second.endpoint == endpoint && r.bucket == bucket;
  };
  for (const conf::Route& r : config.routes) {
    if (!r.path.empty() && r.key == key && same_object(r)) {
      return with_query(path_for(r, key));
    }
  }
  // The prefix route with the longest key_prefix is the most specific way to name the key.
  const conf::Route* best = nullptr;
  for (const conf::Route& r : config.routes) {
    if (!r.prefix.empty() && path_for(r, key) && same_object(r) &&
        (best == nullptr || r.key_prefix.size() > best->key_prefix.size())) {
      best = &r;
    }
  }
  if (best == nullptr) {
    return std::nullopt;
  }
  return with_query(path_for(*best, key));
}

conf::Result<std::string, std::string> catalog_path(std::string_view url, std::string_view base) {
  std::string_view base_path = "/";
  if (const std::size_t scheme = base.find("://"); scheme != std::string_view::npos) {
    const std::size_t slash = base.find('/', scheme + 3);
    base_path = slash == std::string_view::npos ? "/" : base.substr(slash);
  } else if (!base.empty()) {
    base_path = base;
  }
  std::string dir(base_path);
  if (dir.empty() || dir.back() != '/') {
    dir += '/';
  }
  if (url.empty()) {
    return conf::unexpected(std::string("the image has no url"));
  }
  if (url.find("://") != std::string_view::npos) {
    if (!base.empty() && base.find("://") != std::string_view::npos) {
      std::string b(base);
      if (b.back() != '/') {
        b += '/';
      }
      if (url.starts_with(b)) {
        return dir + std::string(url.substr(b.size()));
      }
    }
    return conf::unexpected("absolute URL " + s3::printable(url) +
                            " is not on this edge (give \"base\" to warm it)");
  }
  if (url.front() == '/') {
    return std::string(url);
  }
  return dir + std::string(url);
}

std::string eustore_name(std::string_view md5_hex) {
  const uLong crc =
      crc32(0L, reinterpret_cast<const Bytef*>(md5_hex.data()), static_cast<uInt>(md5_hex.size()));
  char buf[16];
  std::snprintf(buf, sizeof buf, "%010lu", static_cast<unsigned long>(crc & 0xffffffffUL));
  return buf;
}

std::uint64_t purge_object(Services& svc, const std::string& cache_key) {
  const bool abandoned = svc.fills.abandon(cache_key);
  const bool removed = static_cast<bool>(svc.store.remove(cache_key));
  const std::uint64_t n = abandoned || removed ? 1 : 0;
  svc.metrics.purged(n);
  return n;
}

// ---------------------------------------------------------------- the table of jobs

Jobs::Jobs(Services& svc) : svc_(svc) {}

Jobs::~Jobs() {
  stop_.store(true);
  std::vector<std::pair<std::shared_ptr<Job>, std::thread>> threads;
  {
    std::lock_guard lock(mu_);
    threads.swap(threads_);
  }
  for (auto& [job, t] : threads) {
    t.join();
  }
}

void Jobs::reap_locked() {
  for (auto it = threads_.begin(); it != threads_.end();) {
    bool done = false;
    {
      std::lock_guard l(it->first->mu);
      done = it->first->v.done;
    }
    if (done) {
      it->second.join();  // it has set `done` and is returning
      it = threads_.erase(it);
    } else {
      ++it;
    }
  }
}

conf::Result<std::shared_ptr<Jobs::Job>, std::string> Jobs::add(const char* kind) {
  std::lock_guard lock(mu_);
  reap_locked();
  if (running_ >= kMaxRunning) {
    return conf::unexpected("already " + std::to_string(running_) +
                            " jobs running; try again when one is done");
  }
  auto job = std::make_shared<Job>();
  job->v.kind = kind;
  job->v.id = std::string(1, kind[0]) + std::to_string(next_id_++);
  jobs_.push_back(job);
  while (jobs_.size() > kKeep) {
    auto oldest = std::find_if(jobs_.begin(), jobs_.end(), [](const auto& j) {
      std::lock_guard l(j->mu);
      return j->v.done;
    });
    if (oldest == jobs_.end()) {
      break;
    }
    jobs_.erase(oldest);
  }
  ++running_;
  return job;
}

void Jobs::finish(const std::shared_ptr<Job>& job) {
  {
    std::lock_guard l(job->mu);
    job->v.done = true;
  }
  std::lock_guard lock(mu_);
  --running_;
}

std::optional<JobView> Jobs::view(const std::string& kind, const std::string& id) const {
  std::lock_guard lock(mu_);
  for (const auto& j : jobs_) {
    std::lock_guard l(j->mu);
    if (j->v.id == id && j->v.kind == kind) {
      return j->v;
    }
  }
  return std::nullopt;
}

conf::Result<std::string, std::string> Jobs::warm_catalog(std::string catalog, std::string base) {
  auto job = add("warm");
  if (!job) {
    return conf::unexpected(job.error());
  }
  std::lock_guard lock(mu_);
  threads_.emplace_back(
      *job, std::thread([this, j = *job, catalog = std::move(catalog), base = std::move(base)] {
        run_warm(j, catalog, base);
      }));
  return (*job)->v.id;
}

conf::Result<std::string, std::string> Jobs::warm_paths(std::vector<std::string> paths) {
  if (paths.empty() || paths.size() > kMaxObjects) {
    return conf::unexpected(std::string("give 1 to 100000 paths"));
  }
  auto job = add("warm");
  if (!job) {
    return conf::unexpected(job.error());
  }
  for (auto& p : paths) {
    JobObject o;
    o.path = std::move(p);
    (*job)->v.objects.push_back(std::move(o));
  }
  std::lock_guard lock(mu_);
  threads_.emplace_back(*job, std::thread([this, j = *job] { run_warm(j, "", ""); }));
  return (*job)->v.id;
}

conf::Result<std::string, std::string> Jobs::verify(std::string prefix) {
  auto job = add("verify");
  if (!job) {
    return conf::unexpected(job.error());
  }
  std::lock_guard lock(mu_);
  threads_.emplace_back(
      *job, std::thread([this, j = *job, prefix = std::move(prefix)] { run_verify(j, prefix); }));
  return (*job)->v.id;
}

// ---------------------------------------------------------------- warming

namespace {

// One object being warmed, on the job's thread.
struct Warming {
  std::size_t index = 0;  // in the job's objects
  std::string cache_key;
  std::string path;
  FillPtr fill;
  bool wanted = false;  // prefetch: none routes: the whole object was asked for
  bool prefetch_none = false;
};

// What a finished warm found on disk: the record, or why there is none.
struct Landed {
  std::optional<cache::Meta> meta;
  std::string error;
};

Landed landed(Services& svc, const std::string& key) {
  auto m = svc.store.lookup(key);
  if (!m) {
    return {std::nullopt, "not cached (the upstream marked it uncacheable, or no room)"};
  }
  if (!m->complete()) {
    return {std::nullopt, "not completely cached"};
  }
  return {std::move(m), ""};
}

// The MD5 of a complete cached body: the ETag's when the fill verified it, else read back.
std::string md5_of_entry(Services& svc, const std::string& key, const cache::Meta& m) {
  if (m.verified) {
    if (std::string md5 = cache::md5_of_etag(m.etag); !md5.empty()) {
      return md5;
    }
  }
  auto fd = svc.store.open_body(key, m.generation);
  if (!fd) {
    return "";
  }
  std::string md5 = cache::md5_of_fd(*fd, m.size);
  ::close(*fd);
  return md5;
}

}  // namespace

void Jobs::run_warm(const std::shared_ptr<Job>& job, std::string catalog, std::string base) {
  if (!catalog.empty()) {
    // The catalog itself is warmed first (it is an object like any other), then read.
    JobObject c;
    c.path = catalog;
    {
      std::lock_guard l(job->mu);
      job->v.objects.push_back(c);
    }
    warm_objects(job);
    std::string body;
    std::string error;
    {
      std::lock_guard l(job->mu);
      error = job->v.objects[0].error;
    }
    const auto live = svc_.live();
    auto target = live->router.route("", catalog);
    if (error.empty() && target) {
      const std::string key =
          make_cache_key(live->config->upstreams.at(target->upstream), target->bucket, target->key);
      Landed got = landed(svc_, key);
      if (!got.meta) {
        error = got.error;
      } else if (got.meta->size > kMaxCatalogBytes) {
        error = "the catalog is larger than 16 MiB";
      } else if (auto fd = svc_.store.open_body(key, got.meta->generation); !fd) {
        error = "cannot read the cached catalog: " + fd.error().message;
      } else {
        body.resize(got.meta->size);
        const ssize_t r = ::pread(*fd, body.data(), body.size(), 0);
        ::close(*fd);
        if (r != static_cast<ssize_t>(body.size())) {
          error = "cannot read the cached catalog";
        }
      }
    }
    std::vector<JobObject> images;
    if (error.empty()) {
      const auto json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
      if (json.is_discarded() || !json.is_object() || !json.contains("images") ||
          !json["images"].is_array()) {
        error = "not a eustore catalog (no \"images\" array)";
      } else {
        for (const auto& img : json["images"]) {
          if (images.size() >= kMaxObjects) {
            break;
          }
          JobObject o;
          const std::string url = img.is_object() && img.contains("url") && img["url"].is_string()
                                      ? img["url"].get<std::string>()
                                      : "";
          if (img.is_object() && img.contains("name") && img["name"].is_string()) {
            o.expect_name = img["name"].get<std::string>();
          }
          auto path = catalog_path(url, base);
          if (path) {
            o.path = *path;
          } else {
            o.path = url;
            o.state = "failed";
            o.error = path.error();
          }
          images.push_back(std::move(o));
        }
      }
    }
    {
      std::lock_guard l(job->mu);
      if (!error.empty()) {
        job->v.error = "catalog " + catalog + ": " + error;
      }
      for (auto& o : images) {
        job->v.objects.push_back(std::move(o));
      }
    }
    if (!error.empty()) {
      spdlog::warn("warm {}: {}", job->v.id, job->v.error);
      finish(job);
      return;
    }
  }
  warm_objects(job);
  finish(job);
}

// Fills every queued object of the job, kWarmParallel at a time, polling their fills.
bool Jobs::warm_objects(const std::shared_ptr<Job>& job) {
  std::vector<Warming> active;
  std::size_t next = 0;
  auto update = [&](std::size_t i, auto&& fn) {
    std::lock_guard l(job->mu);
    fn(job->v.objects[i]);
  };
  auto done = [&](const Warming& w, std::string result, std::string error) {
    update(w.index, [&](JobObject& o) {
      o.state = error.empty() ? "done" : "failed";
      o.result = std::move(result);
      o.error = std::move(error);
      if (o.state == "done") {
        o.bytes_done = o.bytes_total;
      }
    });
  };
  // The end of a warmed object: on disk, complete, and (catalogs) the eustore checksum right.
  auto check = [&](const Warming& w, const char* result) {
    Landed got = landed(svc_, w.cache_key);
    if (!got.meta) {
      return done(w, "", got.error);
    }
    update(w.index, [&](JobObject& o) { o.bytes_total = got.meta->size; });
    std::string expect;
    {
      std::lock_guard l(job->mu);
      expect = job->v.objects[w.index].expect_name;
    }
    if (!expect.empty()) {
      const std::string md5 = md5_of_entry(svc_, w.cache_key, *got.meta);
      if (md5.empty()) {
        return done(w, "", "cannot read the cached body back");
      }
      if (const std::string name = eustore_name(md5); name != expect) {
        svc_.metrics.integrity_failure("catalog");
        purge_object(svc_, w.cache_key);
        spdlog::error("integrity: {} has eustore checksum {} but the catalog says {}: purged",
                      s3::printable(w.path), name, s3::printable(expect));
        return done(w, "mismatch", "eustore checksum " + name + ", the catalog says " + expect);
      }
    }
    done(w, result, "");
  };
  while (!stop_.load()) {
    // Start objects up to the parallelism.
    while (active.size() < static_cast<std::size_t>(kWarmParallel)) {
      Warming w;
      {
        std::lock_guard l(job->mu);
        while (next < job->v.objects.size() && job->v.objects[next].state != "queued") {
          ++next;
        }
        if (next >= job->v.objects.size()) {
          break;
        }
        w.index = next++;
        w.path = job->v.objects[w.index].path;
        job->v.objects[w.index].state = "running";
      }
      const auto live = svc_.live();
      auto target = live->router.route("", w.path);
      if (!target) {
        done(w, "", "no route for " + s3::printable(w.path));
        continue;
      }
      w.cache_key =
          make_cache_key(live->config->upstreams.at(target->upstream), target->bucket, target->key);
      w.prefetch_none = target->route->prefetch == conf::Prefetch::kNone;
      auto meta = svc_.store.lookup(w.cache_key);
      if (classify(meta, svc_.clock()) == EntryState::kFresh) {
        check(w, "cached");
        continue;
      }
      bool joined = false;
      w.fill = svc_.fills.acquire(w.cache_key, *target, FillSeed{}, 0, &joined);
      if (!w.fill) {
        check(w, "cached");  // it became fresh meanwhile
        continue;
      }
      active.push_back(std::move(w));
    }
    if (active.empty()) {
      return true;
    }
    std::this_thread::sleep_for(kPoll);
    for (auto it = active.begin(); it != active.end();) {
      Warming& w = *it;
      const Fill::Snapshot snap = w.fill->snapshot();
      if (snap.head) {
        const std::uint64_t size = snap.head->size;
        if (w.prefetch_none && !w.wanted && size > 0) {
          w.fill->want(0, size - 1);  // warming means the whole object, whatever the route
          w.wanted = true;
        }
        const std::uint64_t have = w.fill->available_from(0);
        update(w.index, [&](JobObject& o) {
          o.bytes_total = size;
          o.bytes_done = have;
        });
      }
      const bool ended = snap.phase == Fill::Phase::kDone || snap.phase == Fill::Phase::kFailed;
      if (!ended || (snap.phase == Fill::Phase::kDone && !w.fill->retired())) {
        ++it;  // a finished fill leaves the table once its chunks are marked durable
        continue;
      }
      if (snap.phase == Fill::Phase::kFailed) {
        done(w, "", snap.error ? snap.error->message : "the fill failed");
      } else {
        check(w, "ok");
      }
      it = active.erase(it);
    }
  }
  return false;
}

// ---------------------------------------------------------------- verifying

void Jobs::run_verify(const std::shared_ptr<Job>& job, std::string prefix) {
  struct Item {
    std::string key;
    cache::Meta meta;
  };
  std::vector<Item> items;
  const auto live = svc_.live();
  std::string cursor;
  do {
    auto page = svc_.store.list(cursor, 1000, [&](const cache::Meta& m) {
      if (prefix.empty()) {
        return true;
      }
      auto path = public_path(*live->config, m.key);
      return path && path->starts_with(prefix);
    });
    if (!page) {
      std::lock_guard l(job->mu);
      job->v.error = page.error().message;
      break;
    }
    for (auto& e : page->items) {
      if (items.size() < kMaxObjects) {
        items.push_back(Item{e.meta.key, std::move(e.meta)});
      }
    }
    cursor = page->next;
  } while (!cursor.empty() && !stop_.load());
  {
    std::lock_guard l(job->mu);
    for (const Item& it : items) {
      JobObject o;
      o.path = public_path(*live->config, it.key).value_or(s3::printable(it.key));
      o.bytes_total = it.meta.size;
      job->v.objects.push_back(std::move(o));
    }
  }
  for (std::size_t i = 0; i < items.size() && !stop_.load(); ++i) {
    const Item& it = items[i];
    auto set = [&](const char* state, std::string result, std::string error) {
      std::lock_guard l(job->mu);
      JobObject& o = job->v.objects[i];
      o.state = state;
      o.result = std::move(result);
      o.error = std::move(error);
    };
    {
      std::lock_guard l(job->mu);
      job->v.objects[i].state = "running";
    }
    if (it.key.empty()) {
      set("done", "error", "a record of an older build without its key: purge it by prefix");
      continue;
    }
    if (!it.meta.complete()) {
      set("done", "incomplete", "");
      continue;
    }
    const std::string expect = cache::md5_of_etag(it.meta.etag);
    if (expect.empty()) {
      set("done", "unverifiable", "");
      continue;
    }
    auto fd = svc_.store.open_body(it.key, it.meta.generation);
    if (!fd) {
      set("done", "error", "gone meanwhile: " + fd.error().message);
      continue;
    }
    const std::string got = cache::md5_of_fd(*fd, it.meta.size, [&](std::uint64_t n) {
      std::lock_guard l(job->mu);
      job->v.objects[i].bytes_done += n;
      return !stop_.load();
    });
    if (stop_.load()) {
      break;
    }
    ::close(*fd);
    if (got.empty()) {
      set("failed", "error", "cannot read the body");
      continue;
    }
    if (got != expect) {
      svc_.metrics.integrity_failure("verify");
      std::string path;
      {
        std::lock_guard l(job->mu);
        path = job->v.objects[i].path;
      }
      spdlog::error("integrity: {} on disk has MD5 {} but its ETag says {}: purged",
                    s3::printable(path), got, expect);
      if (svc_.store.remove(it.key, it.meta.generation)) {
        svc_.metrics.purged(1);
      }
      set("done", "mismatch", "MD5 " + got + ", the ETag says " + expect);
      continue;
    }
    if (!it.meta.verified) {
      (void)svc_.store.set_verified(it.key, it.meta.generation);
    }
    set("done", "ok", "");
  }
  finish(job);
}

}  // namespace proxy
