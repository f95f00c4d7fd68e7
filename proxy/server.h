// The HTTP front: `workers` event loops, each with its own evhttp accepting on its own
// SO_REUSEPORT socket of every listen address (the kernel spreads connections), plus the admin
// listener (/healthz, /readyz, /metrics) on a loop of its own.
// Threads: start()/stop() from the main thread; handlers run on their worker.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "conf/result.h"
#include "proxy/hot_cache.h"
#include "proxy/loop.h"
#include "proxy/services.h"

struct evhttp;
struct evhttp_request;

namespace proxy {

class Server {
 public:
  explicit Server(Services& svc);
  ~Server();

  // Binds every listener and starts the loops. Error text names the address that failed.
  conf::Result<void, std::string> start();
  // Stops accepting new connections (in-flight requests go on).
  void stop_accepting();
  // Stops every loop; in-flight requests are dropped.
  void stop();

  int workers() const { return static_cast<int>(workers_.size()); }

 private:
  struct Worker {
    Services* svc = nullptr;
    std::unique_ptr<EventLoop> loop;
    evhttp* http = nullptr;
    HotCache hot;  // touched only on this worker's loop
  };
  static void on_request(evhttp_request* req, void* arg);
  static void on_admin(evhttp_request* req, void* arg);

  Services& svc_;
  std::vector<std::unique_ptr<Worker>> workers_;  // stable addresses: evhttp holds them
  std::unique_ptr<EventLoop> admin_loop_;
  evhttp* admin_http_ = nullptr;
};

// Creates a listening TCP socket (non-blocking, SO_REUSEADDR, optionally SO_REUSEPORT).
conf::Result<int, std::string> listen_socket(const std::string& address, bool reuseport);

}  // namespace proxy
