// The HTTP front: `workers` event loops, each accepting on its own SO_REUSEPORT socket of every
// listen address (the kernel spreads connections) into its own ConnectionSet, all counted
// against server.max_connections; plus the admin listener (/healthz, /readyz, /metrics) on a
// loop of its own, with its own small limits; the admin API's other calls are proxy/admin.h.
// Threads: start()/stop() from the main thread; handlers run on their worker.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "conf/result.h"
#include "proxy/hot_cache.h"
#include "proxy/http_conn.h"
#include "proxy/loop.h"
#include "proxy/services.h"

namespace proxy {

class Admin;

class Server {
 public:
  // `admin` answers the admin API's calls (proxy/admin.h); null: only the three below.
  explicit Server(Services& svc, Admin* admin = nullptr);
  ~Server();

  // Binds every listener and starts the loops. Error text names the address that failed.
  conf::Result<void, std::string> start();
  // Draining begins: /readyz answers 503 from now on (a balancer takes this edge out of its
  // pool); connections are still accepted until stop_accepting().
  void begin_drain() { draining_.store(true); }
  // Stops accepting new connections and closes idle ones; in-flight requests go on and their
  // connections close after the answer.
  void stop_accepting();
  int connections() const { return open_.load(); }
  // Stops every loop; in-flight requests are dropped.
  void stop();

  int workers() const { return static_cast<int>(workers_.size()); }

 private:
  struct Worker {
    Services* svc = nullptr;
    std::unique_ptr<EventLoop> loop;
    std::unique_ptr<ConnectionSet> conns;
    std::vector<std::unique_ptr<Acceptor>> acceptors;
    HotCache hot;  // touched only on this worker's loop
  };
  static void on_request(Exchange& ex, void* arg);
  static void on_admin(Exchange& ex, void* arg);
  ConnLimits limits() const;
  std::string not_ready() const;

  static constexpr int kAdminConnections = 64;

  Services& svc_;
  Admin* admin_;
  std::atomic<bool> draining_{false};
  std::atomic<int> open_{0};                      // client connections of every worker
  std::vector<std::unique_ptr<Worker>> workers_;  // stable addresses: handlers hold them
  std::unique_ptr<EventLoop> admin_loop_;
  std::atomic<int> admin_open_{0};
  std::unique_ptr<ConnectionSet> admin_conns_;
  std::unique_ptr<Acceptor> admin_acceptor_;
};

// Creates a listening TCP socket (non-blocking, SO_REUSEADDR, optionally SO_REUSEPORT).
conf::Result<int, std::string> listen_socket(const std::string& address, bool reuseport);

}  // namespace proxy
