#include "proxy/server.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "proxy/request.h"

namespace proxy {
namespace {

void configure(evhttp* http, const conf::Config& c) {
  // Every method reaches our handler, so that we answer 405 with Allow ourselves.
  evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                       EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                                       EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
  evhttp_set_timeout(http, static_cast<int>(c.server.idle_timeout.count()));
  evhttp_set_max_headers_size(http, 32 * 1024);
  evhttp_set_max_body_size(http, 64 * 1024);  // GET/HEAD carry no body worth the name
  evhttp_set_default_content_type(http, "text/plain; charset=utf-8");
}

}  // namespace

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

Server::Server(Services& svc) : svc_(svc) {}

Server::~Server() { stop(); }

conf::Result<void, std::string> Server::start() {
  int n = svc_.config.server.workers;
  if (n <= 0) {
    n = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>();
    w->svc = &svc_;
    w->loop = std::make_unique<EventLoop>("worker-" + std::to_string(i), /*changelist=*/true);
    w->http = evhttp_new(w->loop->base());
    configure(w->http, svc_.config);
    evhttp_set_gencb(w->http, &Server::on_request, w.get());
    Worker* raw = w.get();
    workers_.push_back(std::move(w));  // stop() frees its evhttp on any failure below
    for (const std::string& addr : svc_.config.server.listen) {
      auto fd = listen_socket(addr, /*reuseport=*/true);
      if (!fd) {
        return conf::unexpected(fd.error());
      }
      if (evhttp_accept_socket_with_handle(raw->http, *fd) == nullptr) {
        ::close(*fd);
        return conf::unexpected("evhttp cannot accept on " + addr);
      }
    }
  }
  if (!svc_.config.admin.listen.empty()) {
    admin_loop_ = std::make_unique<EventLoop>("admin");
    admin_http_ = evhttp_new(admin_loop_->base());
    evhttp_set_gencb(admin_http_, &Server::on_admin, &svc_);
    auto fd = listen_socket(svc_.config.admin.listen, /*reuseport=*/false);
    if (!fd) {
      return conf::unexpected(fd.error());
    }
    evhttp_accept_socket_with_handle(admin_http_, *fd);
    admin_loop_->start();
  }
  for (auto& w : workers_) {
    w->loop->start();
  }
  return {};
}

void Server::stop_accepting() {
  for (auto& w : workers_) {
    evhttp* http = w->http;
    w->loop->post([http] {
      // Closing the bound sockets stops new connections; existing ones go on.
      while (true) {
        // evhttp has no "first bound socket" accessor; iterate by deleting as we go.
        struct Ctx {
          evhttp_bound_socket* found = nullptr;
        } ctx;
        evhttp_foreach_bound_socket(
            http, [](evhttp_bound_socket* s, void* a) { static_cast<Ctx*>(a)->found = s; }, &ctx);
        if (ctx.found == nullptr) {
          break;
        }
        evhttp_del_accept_socket(http, ctx.found);
      }
    });
  }
}

void Server::stop() {
  for (auto& w : workers_) {
    w->loop->stop();
  }
  if (admin_loop_) {
    admin_loop_->stop();
  }
  for (auto& w : workers_) {
    // evhttp_free frees outstanding requests and connections; the loop is stopped.
    evhttp_free(w->http);
  }
  workers_.clear();
  if (admin_http_ != nullptr) {
    evhttp_free(admin_http_);
    admin_http_ = nullptr;
  }
  admin_loop_.reset();
}

void Server::on_request(evhttp_request* req, void* arg) {
  auto* w = static_cast<Worker*>(arg);
  Request::handle(req, *w->svc, *w->loop, w->hot);
}

void Server::on_admin(evhttp_request* req, void* arg) {
  auto* svc = static_cast<Services*>(arg);
  const char* uri = evhttp_request_get_uri(req);
  std::string path(uri ? uri : "");
  path = path.substr(0, path.find('?'));
  evkeyvalq* out = evhttp_request_get_output_headers(req);
  evbuffer* buf = evbuffer_new();
  int code = 200;
  if (path == "/healthz") {
    evhttp_add_header(out, "Content-Type", "text/plain");
    evbuffer_add_printf(buf, "ok\n");
  } else if (path == "/readyz") {
    // Ready once the index is open, which it is for as long as the server runs.
    evhttp_add_header(out, "Content-Type", "text/plain");
    evbuffer_add_printf(buf, "ready\n");
  } else if (path == "/metrics") {
    svc->metrics.set_fills_active(svc->fills.active());
    std::string text = svc->metrics.render(svc->store.stats());
    evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4");
    evbuffer_add(buf, text.data(), text.size());
  } else {
    code = 404;
    evhttp_add_header(out, "Content-Type", "text/plain");
    evbuffer_add_printf(buf, "unknown admin path\n");
  }
  evhttp_send_reply(req, code, code == 200 ? "OK" : "Not Found", buf);
  evbuffer_free(buf);
}

}  // namespace proxy
