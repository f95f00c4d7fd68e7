// tuskd: the daemon. `tuskd --config FILE` serves; `tuskd --check-config FILE` validates and
// exits 0 (valid) or 1 (the first error, as file:line:column). Signals are taken synchronously
// by the main thread (sigwait), so no handler ever runs inside an event loop.
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <thread>

#include "cache/store.h"
#include "conf/config.h"
#include "proxy/access_log.h"
#include "proxy/admin.h"
#include "proxy/fetch.h"
#include "proxy/fill.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "proxy/peers.h"
#include "proxy/reload.h"
#include "proxy/server.h"
#include "proxy/services.h"
#include "s3/client.h"

namespace {

int serve(const conf::Config& config, const std::string& config_path) {
  spdlog::set_level(spdlog::level::from_str(config.log.level));
  spdlog::flush_every(std::chrono::seconds(1));
  std::error_code ec;
  std::filesystem::create_directories(config.cache.dir, ec);
  std::string spool = config.cache.dir + "/tmp";
  std::filesystem::create_directories(spool, ec);
  if (ec) {
    spdlog::critical("cannot create {}: {}", spool, ec.message());
    return 1;
  }

  // The one wall clock of this process: the store, the fills and every request read it.
  const conf::Clock clock = conf::system_clock();
  cache::Options opts;
  opts.now = clock;
  opts.dir = config.cache.dir;
  opts.max_size = config.cache.max_size;
  opts.chunk_size = static_cast<std::uint32_t>(config.cache.chunk_size);
  opts.min_free = config.cache.min_free;
  auto store = cache::Store::open(opts);
  if (!store) {
    spdlog::critical("cannot open the cache in {}: {}", config.cache.dir, store.error().message);
    return 1;
  }

  proxy::Metrics metrics;
  metrics.set_cache_max(config.cache.max_size);
  metrics.set_cache_dir(config.cache.dir);
  // Lines are buffered and written once a second (proxy/access_log.h); SIGUSR1 reopens the file.
  auto access_log = proxy::AccessLog::open(config.log.access_log, config.log.format);
  if (!access_log) {
    spdlog::critical("{}", access_log.error());
    return 1;
  }
  auto token = proxy::read_token_file(config.admin.token_file);
  if (!token) {
    spdlog::critical("{}", token.error());
    return 1;
  }
  proxy::EventLoop fetch("fetch");
  proxy::FillTable::Origins origins;
  for (const auto& [name, up] : config.upstreams) {
    if (!up.tls_verify) {
      spdlog::warn("upstream '{}': TLS certificate verification is OFF", name);
    }
    auto c = s3::Client::create(fetch.base(), up);
    if (!c) {
      spdlog::critical("upstream '{}': {}", name, c.error().message);
      return 1;
    }
    origins[name] = proxy::client_origin(std::move(c).value(), &metrics);
  }
  proxy::FillTable::Options fill_opts{spool, config.fill.parallel, config.fill.memory_spill};
  auto fills = std::make_unique<proxy::FillTable>(fetch, **store, metrics, std::move(origins),
                                                  std::move(fill_opts), clock);
  if (!config.peers.self.empty()) {
    // A peer may take as long as the slowest upstream to send a byte (it is filling from it).
    conf::Millis stall{0};
    for (const auto& [name, up] : config.upstreams) {
      stall = std::max(stall, up.stall_timeout);
    }
    stall += std::chrono::seconds(5);
    std::map<std::string, std::shared_ptr<proxy::Origin>> clients;
    for (const auto& [name, url] : config.peers.members) {
      if (name == config.peers.self) {
        continue;
      }
      auto c = s3::Client::create(fetch.base(), proxy::peer_upstream(config.peers, url, stall));
      if (!c) {
        spdlog::critical("peer '{}': {}", name, c.error().message);
        return 1;
      }
      clients[name] = proxy::client_origin(std::move(c).value());
    }
    fills->set_peers(std::make_unique<proxy::Peers>(config.peers, std::move(clients), metrics));
    spdlog::info("fleet: this edge is '{}' of {} members", config.peers.self,
                 config.peers.members.size());
  }
  auto first = std::make_shared<const proxy::Live>(std::make_shared<const conf::Config>(config),
                                                   std::move(*token), 1);
  proxy::Services svc(config, **store, *fills, metrics, *access_log, clock, std::move(first));
  proxy::Reloader reloader(config_path, svc, fetch);
  std::atomic<proxy::Server*> server_ptr{nullptr};
  auto admin = std::make_unique<proxy::Admin>(svc, &reloader, [&server_ptr] {
    proxy::Server* s = server_ptr.load();
    return s == nullptr ? 0 : s->connections();
  });
  proxy::Server server(svc, admin.get());
  server_ptr.store(&server);
  fetch.start();
  if (auto started = server.start(); !started) {
    spdlog::critical("{}", started.error());
    server.stop();
    fetch.stop();
    return 1;
  }

  // Access times and eviction are batched; a maintenance thread writes them out.
  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::thread maintenance([&] {
    std::unique_lock lock(mu);
    while (!cv.wait_for(lock, std::chrono::seconds(2), [&] { return stopping; })) {
      lock.unlock();
      (*store)->flush();
      lock.lock();
    }
  });

  for (const auto& l : config.server.listen) {
    spdlog::info("tuskd serving on http://{}/ with {} workers (admin: {})", l, server.workers(),
                 config.admin.listen.empty() ? "off" : "http://" + config.admin.listen + "/");
  }

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  // SIGUSR1: logrotate renamed the access log; the next line goes to a new file at its path.
  auto reopen_access_log = [&svc] {
    if (!svc.access_log) {
      return;
    }
    if (auto r = svc.access_log->reopen(); !r) {
      spdlog::error("SIGUSR1: {}; still writing to the old file", r.error());
    } else {
      spdlog::info("SIGUSR1: access log reopened");
    }
  };
  int sig = 0;
  while (true) {
    sigwait(&set, &sig);
    if (sig == SIGHUP) {
      spdlog::info("SIGHUP: reloading {}", config_path);
      (void)reloader.reload();  // logs what it did, or why it refused
      continue;
    }
    if (sig == SIGUSR1) {
      reopen_access_log();
      continue;
    }
    break;
  }
  // Drain: /readyz turns 503 at once. On SIGTERM (a service manager, a fleet) new connections
  // are still accepted for drain_delay, so the balancer's health check notices before the
  // port closes; SIGINT (a terminal) and a second signal skip the delay.
  server.begin_drain();
  const auto& drain = config.server;
  if (sig == SIGTERM && drain.drain_delay.count() > 0) {
    spdlog::info("SIGTERM: draining; /readyz is 503, still accepting for {}s",
                 drain.drain_delay.count());
    const auto until = std::chrono::steady_clock::now() + drain.drain_delay;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(
          until - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        break;
      }
      const timespec delay{static_cast<time_t>(left.count() / 1000000000),
                           static_cast<long>(left.count() % 1000000000)};
      const int got = sigtimedwait(&set, nullptr, &delay);
      if (got == SIGUSR1) {
        reopen_access_log();
        continue;
      }
      if (got > 0) {
        spdlog::info("second signal: skipping the rest of the drain delay");
        break;
      }
      if (errno != EINTR) {
        break;  // EAGAIN: the delay is over
      }
    }
  } else {
    spdlog::info("signal {}: draining", sig);
  }
  server.stop_accepting();
  const auto deadline = std::chrono::steady_clock::now() + drain.drain_timeout;
  while (svc.in_flight.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (const int left = svc.in_flight.load(); left > 0) {
    spdlog::warn("drain_timeout: {} requests still in flight are cut off", left);
  }
  server.stop();
  admin.reset();  // stops warm and verify jobs (the fills they started are the fetch loop's)
  fetch.stop();
  // What the fetch loop was handed before it stopped (a fetch's last step releasing itself from
  // the fill table) runs now, while the table lives; EventLoop's destructor would run it after.
  fetch.run_pending();
  fills->drain_disk();
  fills.reset();
  {
    std::lock_guard lock(mu);
    stopping = true;
  }
  cv.notify_all();
  maintenance.join();
  (*store)->flush();
  spdlog::info("tuskd stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tuskd: an edge cache for S3 and Walrus buckets of VM images"};
  std::string config_path;
  std::string check_path;
  app.add_option("--config,-c", config_path, "serve with this configuration file");
  app.add_option("--check-config", check_path, "validate this configuration file and exit");
  app.set_version_flag("--version", "tuskd 0.1.0");
  CLI11_PARSE(app, argc, argv);

  // Block the signals we wait for before any thread exists, so every thread inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  if (!check_path.empty()) {
    auto cfg = conf::load_file(check_path);
    if (!cfg) {
      std::fprintf(stderr, "%s\n", cfg.error().str().c_str());
      return 1;
    }
    for (const std::string& w : cfg->warnings) {
      std::fprintf(stderr, "warning: %s\n", w.c_str());
    }
    std::printf("%s: OK (%zu upstreams, %zu routes)\n", check_path.c_str(), cfg->upstreams.size(),
                cfg->routes.size());
    return 0;
  }
  if (config_path.empty()) {
    std::fprintf(stderr, "tuskd: give --config FILE (or --check-config FILE); see --help\n");
    return 2;
  }
  auto cfg = conf::load_file(config_path);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().str().c_str());
    return 1;
  }
  for (const std::string& w : cfg->warnings) {
    spdlog::warn("{}", w);
  }
  return serve(*cfg, config_path);
}
