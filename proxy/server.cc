#include "proxy/server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "proxy/admin.h"
#include "proxy/request.h"

namespace proxy {

conf::Result<int, std::string> listen_socket(const std::string& address, bool reuseport) {
  auto hp = conf::parse_listen(address);
  if (!hp) {
    return conf::unexpected("bad listen address '" + address + "': " + hp.error());
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  std::string port = std::to_string(hp->port);
  int rc = getaddrinfo(hp->host.empty() ? nullptr : hp->host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) {
    return conf::unexpected("cannot resolve '" + address + "': " + gai_strerror(rc));
  }
  int fd = ::socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return conf::unexpected(std::string("socket: ") + std::strerror(errno));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport) {
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  }
  // Headers and body leave in separate writes; without TCP_NODELAY Nagle holds the body back
  // until the client's delayed ACK (tens of ms per small hit on a keep-alive connection). Set
  // here once: Linux gives accepted sockets the listener's TCP_NODELAY (no syscall per request).
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::bind(fd, res->ai_addr, res->ai_addrlen) != 0 || ::listen(fd, 1024) != 0) {
    std::string err = std::strerror(errno);
    ::close(fd);
    freeaddrinfo(res);
    return conf::unexpected("cannot listen on " + address + ": " + err);
  }
  freeaddrinfo(res);
  return fd;
}

Server::Server(Services& svc, Admin* admin) : svc_(svc), admin_(admin) {}

ConnLimits Server::limits() const {
  const conf::Server& c = svc_.config.server;
  ConnLimits l;
  l.head.max_head = c.max_header_size;
  l.head.max_target = std::min<std::size_t>(8 * 1024, c.max_header_size);
  l.max_body = 64 * 1024;  // GET/HEAD carry no body worth the name
  l.header_timeout = c.header_timeout;
  l.idle_timeout = c.idle_timeout;
  l.send_timeout = c.send_timeout;
  return l;
}

conf::Result<void, std::string> Server::start() {
  const conf::Server& c = svc_.config.server;
  auto fds = raise_fd_limit(c.max_connections);
  if (!fds) {
    return conf::unexpected(fds.error());
  }
  spdlog::info("file descriptor limit {} (server.max_connections {})", *fds, c.max_connections);
  int n = c.workers;
  if (n <= 0) {
    n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>();
    w->svc = &svc_;
    w->loop = std::make_unique<EventLoop>("worker-" + std::to_string(i), /*changelist=*/true);
    w->conns = std::make_unique<ConnectionSet>(w->loop->base(), limits(), &Server::on_request,
                                               w.get(), open_, c.max_connections, &svc_.metrics);
    w->conns->set_access_log(svc_.access_log);
    if (c.proxy_protocol) {
      // Who may send the header is read per connection: trusted_proxies is reloadable.
      Services* svc = &svc_;
      w->conns->set_proxy_protocol([svc](const conf::IpAddress& peer) {
        return svc->live()->config->server.trusted_proxies.contains(peer);
      });
    }
    Worker* raw = w.get();
    workers_.push_back(std::move(w));  // stop() frees it on any failure below
    for (const std::string& addr : c.listen) {
      auto fd = listen_socket(addr, /*reuseport=*/true);
      if (!fd) {
        return conf::unexpected(fd.error());
      }
      auto a = std::make_unique<Acceptor>(raw->loop->base(), *fd, *raw->conns, addr);
      if (!a->ok()) {
        return conf::unexpected("cannot accept on " + addr);
      }
      raw->acceptors.push_back(std::move(a));
    }
  }
  if (!svc_.config.admin.listen.empty()) {
    // The admin listener is for operators and Prometheus: small heads, small JSON bodies, a
    // few connections, the same deadlines.
    admin_loop_ = std::make_unique<EventLoop>("admin");
    ConnLimits l = limits();
    l.head.max_head = 8 * 1024;
    l.head.max_target = 2 * 1024;
    l.head.max_fields = 50;
    admin_conns_ = std::make_unique<ConnectionSet>(admin_loop_->base(), l, &Server::on_admin, this,
                                                   admin_open_, kAdminConnections, nullptr);
    auto fd = listen_socket(svc_.config.admin.listen, /*reuseport=*/false);
    if (!fd) {
      return conf::unexpected(fd.error());
    }
    admin_acceptor_ = std::make_unique<Acceptor>(admin_loop_->base(), *fd, *admin_conns_,
                                                 svc_.config.admin.listen);
    if (!admin_acceptor_->ok()) {
      return conf::unexpected("cannot accept on " + svc_.config.admin.listen);
    }
    admin_loop_->start();
  }
  for (auto& w : workers_) {
    w->loop->start();
  }
  return {};
}

void Server::stop_accepting() {
  draining_.store(true);
  for (auto& w : workers_) {
    Worker* raw = w.get();
    // Closing the listening sockets stops new connections; existing ones finish their answer.
    w->loop->post([raw] {
      raw->acceptors.clear();
      raw->conns->drain();
    });
  }
}

// Why this edge should not get traffic now, or "" when it should: draining, or the cache cannot
// be written (index or object directory), or the index cannot be read.
std::string Server::not_ready() const {
  if (draining_.load()) {
    return "draining";
  }
  const std::string& dir = svc_.config.cache.dir;
  for (const char* sub : {"/index", "/objects"}) {
    if (::access((dir + sub).c_str(), W_OK) != 0) {
      return "cache directory " + dir + sub + " is not writable: " + std::strerror(errno);
    }
  }
  return "";
}

void Server::stop() {
  for (auto& w : workers_) {
    w->loop->stop();
  }
  if (admin_loop_) {
    admin_loop_->stop();
  }
  // The loops are stopped: what was posted to them runs (stop_accepting's closures), then
  // their connections close here (close handlers run). The loops themselves stay until the
  // destructor: fills still running post wake-ups to them, which a stopped loop drops.
  for (auto& w : workers_) {
    w->loop->run_pending();
    w->acceptors.clear();
    w->conns.reset();
  }
  if (admin_loop_) {
    admin_loop_->run_pending();
  }
  admin_acceptor_.reset();
  admin_conns_.reset();
}

Server::~Server() {
  stop();
  workers_.clear();
  admin_loop_.reset();
}

void Server::on_request(Exchange& ex, void* arg) {
  auto* w = static_cast<Worker*>(arg);
  Request::handle(ex, *w->svc, *w->loop, w->hot);
}

void Server::on_admin(Exchange& ex, void* arg) {
  auto* self = static_cast<Server*>(arg);
  Services* svc = &self->svc_;
  std::string path = ex.head().target;
  path = path.substr(0, path.find('?'));
  if (self->admin_ != nullptr && path != "/healthz" && path != "/readyz" && path != "/metrics") {
    self->admin_->handle(ex);
    return;
  }
  ResponseHeaders& out = ex.out();
  evbuffer* buf = evbuffer_new();
  int code = 200;
  const char* reason = "OK";
  const bool known = path == "/healthz" || path == "/readyz" || path == "/metrics";
  const std::string& method = ex.head().method;
  out.add("Cache-Control", "no-store");
  if (known && method != "GET" && method != "HEAD") {
    code = 405;
    reason = "Method Not Allowed";
    out.add("Allow", "GET, HEAD");
    out.add("Content-Type", "text/plain; charset=utf-8");
    evbuffer_add_printf(buf, "%s takes GET and HEAD only\n", path.c_str());
  } else if (path == "/healthz") {
    out.add("Content-Type", "text/plain");
    evbuffer_add_printf(buf, "ok\n");
  } else if (path == "/readyz") {
    out.add("Content-Type", "text/plain");
    const std::string why = self->not_ready();
    if (!why.empty()) {
      code = 503;
      reason = "Service Unavailable";
      evbuffer_add_printf(buf, "not ready: %s\n", why.c_str());
    } else {
      evbuffer_add_printf(buf, "ready\n");
    }
    // Upstream health is reported, never a reason to leave the pool: stale copies and cached
    // objects still serve while Walrus is down.
    for (const auto& [name, up] : svc->live()->config->upstreams) {
      const UpstreamCounts c = svc->metrics.upstream_counts(name);
      evbuffer_add_printf(buf, "upstream %s: %llu requests, %llu errors\n", name.c_str(),
                          static_cast<unsigned long long>(c.requests),
                          static_cast<unsigned long long>(c.errors));
    }
  } else if (path == "/metrics") {
    svc->metrics.set_fills_active(svc->fills.active());
    svc->metrics.set_connections_open(self->open_.load());
    std::string text = svc->metrics.render(svc->store.stats());
    out.add("Content-Type", "text/plain; version=0.0.4");
    evbuffer_add(buf, text.data(), text.size());
  } else {
    code = 404;
    reason = "Not Found";
    out.add("Content-Type", "text/plain");
    evbuffer_add_printf(buf, "unknown admin path\n");
  }
  ex.reply(code, reason, buf);
  evbuffer_free(buf);
}

}  // namespace proxy
