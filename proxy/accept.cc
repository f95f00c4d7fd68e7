// The accept path: Acceptor hands accepted sockets to a ConnectionSet and pauses briefly when
// the process is out of descriptors (EMFILE) instead of spinning; raise_fd_limit sizes
// RLIMIT_NOFILE for max_connections. Declared in proxy/http_conn.h.
#include <event2/event.h>
#include <event2/listener.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "proxy/http_conn.h"

namespace proxy {

// ---------------------------------------------------------------- Acceptor

Acceptor::Acceptor(event_base* base, int fd, ConnectionSet& set, std::string name)
    : set_(set), name_(std::move(name)) {
  listener_ = evconnlistener_new(base, &Acceptor::on_accept, this,
                                 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
  if (listener_ == nullptr) {
    ::close(fd);
    return;
  }
  evconnlistener_set_error_cb(listener_, &Acceptor::on_error);
  resume_ = evtimer_new(base, &Acceptor::on_resume, this);
}

Acceptor::~Acceptor() {
  if (resume_ != nullptr) {
    event_free(resume_);
  }
  if (listener_ != nullptr) {
    evconnlistener_free(listener_);
  }
}

void Acceptor::on_accept(evconnlistener*, int fd, sockaddr*, int, void* self) {
  static_cast<Acceptor*>(self)->set_.adopt(fd);
}

void Acceptor::on_error(evconnlistener* l, void* self) {
  auto* a = static_cast<Acceptor*>(self);
  const int err = errno;
  ++a->failed_;
  if (a->set_.metrics_ != nullptr) {
    a->set_.metrics_->accept_error();
  }
  auto now = std::chrono::steady_clock::now();
  if (now - a->logged_at_ >= std::chrono::seconds(10)) {
    spdlog::error("accept on {} failed {} time(s) ({}); pausing accepts for 100 ms at a time",
                  a->name_, a->failed_, std::strerror(err));
    a->failed_ = 0;
    a->logged_at_ = now;
  }
  // Out of descriptors or memory: the pending connection stays in the backlog. Accepting
  // again at once would fail at once (the busy loop this replaces); retry shortly.
  evconnlistener_disable(l);
  timeval tv{0, 100 * 1000};
  evtimer_add(a->resume_, &tv);
}

void Acceptor::on_resume(int, short, void* self) {
  evconnlistener_enable(static_cast<Acceptor*>(self)->listener_);
}

// ---------------------------------------------------------------- descriptors

conf::Result<std::uint64_t, std::string> raise_fd_limit(int max_connections) {
  // Each connection is one socket and, while it reads a cache file nobody else reads, one more
  // descriptor; 1024 more for listeners, upstream transfers, spool files, LMDB and logs. The
  // socket and the margin are required; the second descriptor is asked for when the hard limit
  // allows (files of hot objects are shared, and running out only pauses accepting).
  const rlim_t need = static_cast<rlim_t>(max_connections) + 1024;
  const rlim_t want = static_cast<rlim_t>(max_connections) * 2 + 1024;
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return conf::unexpected(std::string("getrlimit(RLIMIT_NOFILE): ") + std::strerror(errno));
  }
  if (rl.rlim_cur >= want) {
    return static_cast<std::uint64_t>(rl.rlim_cur);
  }
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
    return conf::unexpected("server.max_connections " + std::to_string(max_connections) +
                            " needs at least " + std::to_string(need) +
                            " file descriptors but the hard limit is " +
                            std::to_string(rl.rlim_max) +
                            "; raise it (LimitNOFILE= in the unit, ulimit -Hn) or lower "
                            "server.max_connections");
  }
  const rlim_t target = rl.rlim_max == RLIM_INFINITY ? want : std::min(want, rl.rlim_max);
  if (target <= rl.rlim_cur) {
    return static_cast<std::uint64_t>(rl.rlim_cur);
  }
  rl.rlim_cur = target;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return conf::unexpected(std::string("setrlimit(RLIMIT_NOFILE): ") + std::strerror(errno));
  }
  return static_cast<std::uint64_t>(target);
}

}  // namespace proxy
