// What every request of a running tuskd needs, built once in main and shared by all workers.
// Everything here is either immutable after start or thread-safe itself.
//
// Live reload: what may change while serving (routes, upstreams and their keys, TTLs, the admin
// token) is one immutable `Live` generation. A request takes the current one when it starts and
// keeps it to the end, so it finishes on the configuration it started with; a reload publishes
// a new generation for the requests after it (proxy/reload.h).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "cache/store.h"
#include "conf/clock.h"
#include "conf/config.h"
#include "proxy/fill.h"
#include "proxy/metrics.h"
#include "proxy/router.h"

namespace proxy {

class AccessLog;

// One configuration generation. The router points into `config`, which it keeps alive.
struct Live {
  std::shared_ptr<const conf::Config> config;
  Router router;
  std::string admin_token;  // from admin.token_file; "" when none is configured
  std::uint64_t generation = 1;

  Live(std::shared_ptr<const conf::Config> c, std::string token, std::uint64_t gen)
      : config(std::move(c)),
        router(config->routes),
        admin_token(std::move(token)),
        generation(gen) {}
};

struct Services {
  // The configuration tuskd started with: the settings that need a restart (listen addresses,
  // the cache, connection limits) are read from here, everything else from live().
  const conf::Config& config;
  cache::Store& store;
  FillTable& fills;
  Metrics& metrics;
  conf::Clock clock;                      // the process's one wall clock (unix seconds)
  std::shared_ptr<AccessLog> access_log;  // null: no access log
  std::atomic<int> in_flight{0};          // client requests not yet answered completely

  Services(const conf::Config& c, cache::Store& s, FillTable& f, Metrics& m,
           std::shared_ptr<AccessLog> log, conf::Clock now,
           std::shared_ptr<const Live> first = nullptr)
      : config(c),
        store(s),
        fills(f),
        metrics(m),
        clock(std::move(now)),
        access_log(std::move(log)),
        live_(first
                  ? std::move(first)
                  : std::make_shared<const Live>(std::make_shared<const conf::Config>(c), "", 1)) {}

  // The current generation; any thread.
  std::shared_ptr<const Live> live() const { return live_.load(std::memory_order_acquire); }
  void set_live(std::shared_ptr<const Live> next) {
    live_.store(std::move(next), std::memory_order_release);
  }

 private:
  std::atomic<std::shared_ptr<const Live>> live_;
};

}  // namespace proxy
