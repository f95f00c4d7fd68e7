// What every request of a running tuskd needs, built once in main and shared by all workers.
// Everything here is either immutable after start or thread-safe itself.
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

namespace spdlog {
class logger;
}

namespace proxy {

struct Services {
  const conf::Config& config;
  Router router;
  cache::Store& store;
  FillTable& fills;
  Metrics& metrics;
  conf::Clock clock;  // the process's one wall clock (unix seconds)
  std::shared_ptr<spdlog::logger> access_log;  // null: no access log
  std::atomic<int> in_flight{0};               // client requests not yet answered completely

  Services(const conf::Config& c, cache::Store& s, FillTable& f, Metrics& m,
           std::shared_ptr<spdlog::logger> log, conf::Clock now)
      : config(c),
        router(c.routes),
        store(s),
        fills(f),
        metrics(m),
        clock(std::move(now)),
        access_log(std::move(log)) {}
};

}  // namespace proxy
