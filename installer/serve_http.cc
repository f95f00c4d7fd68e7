// The HTTP side of `tusk serve` and run_service(): libevent's evhttp on the main thread (bounded
// bodies, headers, timeouts and connections), the bearer check, the two routes, and the stop on
// SIGTERM/SIGINT (stop accepting, let running registrations finish up to a bound, exit 0).
// Tricky: evhttp owns each request; an Exchange sends exactly one reply for it. libevent 2.1
// has no connection limit of its own: connections are counted from their first request (a close
// callback uncounts them), and those beyond the limit get 503 and are closed; connections that
// never send a request are closed by the read timeout.
#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "conf/config.h"
#include "installer/serve.h"
#include "installer/serve_jobs.h"

namespace installer {
namespace {

using json = nlohmann::json;

// Owners of the libevent handles (one owner per C handle).
struct BaseFree {
  void operator()(event_base* b) const { event_base_free(b); }
};
struct HttpFree {
  void operator()(evhttp* h) const { evhttp_free(h); }
};
struct EventFree {
  void operator()(event* e) const { event_free(e); }
};
using BasePtr = std::unique_ptr<event_base, BaseFree>;
using HttpPtr = std::unique_ptr<evhttp, HttpFree>;
using EventPtr = std::unique_ptr<event, EventFree>;

// Exactly one reply per request: the first send() wins, the destructor answers 500 if a path
// forgot to. libevent owns `req`.
class Exchange {
 public:
  explicit Exchange(evhttp_request* req) : req_(req) {}
  ~Exchange() {
    if (!sent_) send(500, json{{"error", "internal error: no answer was produced"}});
  }
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  evhttp_request* req() const { return req_; }
  void header(const char* name, const std::string& value) {
    evhttp_add_header(evhttp_request_get_output_headers(req_), name, value.c_str());
  }
  void send(int status, const json& body) {
    if (sent_) return;
    sent_ = true;
    std::string text = body.dump() + "\n";
    header("Content-Type", "application/json");
    header("Cache-Control", "no-store");
    evbuffer* out = evbuffer_new();
    evbuffer_add(out, text.data(), text.size());
    evhttp_send_reply(req_, status, nullptr, out);  // libevent adds the standard phrase
    evbuffer_free(out);
  }
  void error(int status, const std::string& message) { send(status, json{{"error", message}}); }

 private:
  evhttp_request* req_;
  bool sent_ = false;
};

json view_json(const JobView& v) {
  json j{{"guid", v.guid}, {"state", job_state_name(v.state)}};
  j["emi"] = v.emi;
  j["eki"] = v.eki;
  j["eri"] = v.eri;
  if (v.state == JobState::kDownloading) {
    j["bytes_done"] = v.done;
    j["bytes_total"] = v.total;
  }
  if (v.state == JobState::kFailed) j["error"] = v.error;
  return j;
}

class Server {
 public:
  Server(const ServeOptions& o, std::string token, Jobs& jobs, LogFn log)
      : options_(o), token_(std::move(token)), jobs_(jobs), log_(std::move(log)) {}
  // evhttp_free() runs the close callbacks of the open connections, which touch connections_:
  // free it while every member is still alive.
  ~Server() { http_.reset(); }
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  Result<void> start() {
    base_.reset(event_base_new());
    if (!base_) return fail(Errc::kIo, "cannot create the event loop");
    http_.reset(evhttp_new(base_.get()));
    evhttp_set_allowed_methods(http_.get(), EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD);
    evhttp_set_max_body_size(http_.get(), static_cast<ev_ssize_t>(options_.max_body));
    evhttp_set_max_headers_size(http_.get(), static_cast<ev_ssize_t>(options_.max_headers));
    evhttp_set_timeout(http_.get(), options_.timeout_seconds);
    evhttp_set_flags(http_.get(), EVHTTP_SERVER_LINGERING_CLOSE);  // a 413 reaches the client
    evhttp_set_gencb(http_.get(), &Server::on_request, this);
    auto hp = conf::parse_listen(options_.listen);
    if (!hp) return fail(Errc::kUsage, "--listen " + options_.listen + ": " + hp.error());
    bound_ = evhttp_bind_socket_with_handle(http_.get(), hp->host.c_str(),
                                            static_cast<ev_uint16_t>(hp->port));
    if (bound_ == nullptr) {
      return fail(Errc::kIo, "cannot listen on " + options_.listen + ": " + std::strerror(errno));
    }
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    int port = hp->port;
    if (::getsockname(evhttp_bound_socket_get_fd(bound_), reinterpret_cast<sockaddr*>(&addr),
                      &len) == 0) {
      port = ntohs(addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    }
    for (int sig : {SIGTERM, SIGINT}) {
      signals_.emplace_back(evsignal_new(base_.get(), sig, &Server::on_signal, this));
      event_add(signals_.back().get(), nullptr);
    }
    log_("tusk serve: listening on " + hp->host + ":" + std::to_string(port) +
         (options_.test_mode ? " (test mode: nothing is downloaded or registered)" : ""));
    return {};
  }

  // Runs until stopped; true when every running registration finished.
  bool run() {
    event_base_dispatch(base_.get());
    return jobs_.running() == 0;
  }

 private:
  static void on_signal(evutil_socket_t sig, short, void* self) {
    static_cast<Server*>(self)->stop(static_cast<int>(sig));
  }
  static void on_tick(evutil_socket_t, short, void* self) {
    auto* s = static_cast<Server*>(self);
    if (s->jobs_.running() == 0 || std::chrono::steady_clock::now() >= s->deadline_) {
      event_base_loopbreak(s->base_.get());
    }
  }
  static void on_close(evhttp_connection* conn, void* self) {
    static_cast<Server*>(self)->connections_.erase(conn);
  }
  static void on_request(evhttp_request* req, void* self) {
    Exchange ex(req);
    static_cast<Server*>(self)->handle(ex);
  }

  void stop(int sig) {
    if (stopping_) {
      log_("tusk serve: second signal: stopping now");
      event_base_loopbreak(base_.get());
      return;
    }
    stopping_ = true;
    if (bound_ != nullptr) {
      evhttp_del_accept_socket(http_.get(), bound_);  // no new connections
      bound_ = nullptr;
    }
    jobs_.stop_accepting();
    log_(std::string("tusk serve: ") + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
         ": stopped accepting; waiting up to " + std::to_string(options_.drain_seconds) +
         " s for " + std::to_string(jobs_.running()) + " running registration(s)");
    deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(options_.drain_seconds);
    tick_.reset(event_new(base_.get(), -1, EV_PERSIST, &Server::on_tick, this));
    timeval tv{0, 100 * 1000};
    event_add(tick_.get(), &tv);
  }

  void handle(Exchange& ex) {
    evhttp_request* req = ex.req();
    evhttp_connection* conn = evhttp_request_get_connection(req);
    if (conn != nullptr && connections_.insert(conn).second) {
      evhttp_connection_set_closecb(conn, &Server::on_close, this);
      if (connections_.size() > static_cast<std::size_t>(options_.max_connections)) {
        ex.header("Connection", "close");
        return ex.error(503, "too many connections");
      }
    }
    const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
    const char* raw_path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
    std::string path = raw_path != nullptr ? raw_path : "";
    const auto method = evhttp_request_get_command(req);
    if (path == "/healthz") {
      return ex.send(200, json{{"status", stopping_ ? "stopping" : "ok"}});
    }
    const bool collection = path == "/images";
    const bool item = path.rfind("/images/", 0) == 0 && path.size() > 8;
    if (!collection && !item) return ex.error(404, "no such resource (try POST /images)");
    const char* auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    switch (authorize_bearer(auth != nullptr ? auth : "", token_)) {
      case Auth::kMissing:
        ex.header("WWW-Authenticate", "Bearer realm=\"tusk serve\"");
        return ex.error(401, "this call needs Authorization: Bearer <token>");
      case Auth::kWrong:
        return ex.error(403, "wrong token");
      case Auth::kOk:
        break;
    }
    if (collection) {
      if (method != EVHTTP_REQ_POST) {
        ex.header("Allow", "POST");
        return ex.error(405, "POST /images registers an image; GET /images/<guid> reports one");
      }
      return post(ex);
    }
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
      ex.header("Allow", "GET");
      return ex.error(405, "GET /images/<guid> reports a registration");
    }
    std::string guid = path.substr(8);
    if (!valid_guid(guid)) {
      return ex.error(400, "the GUID must be 1 to 128 of A-Z a-z 0-9 . _ : -");
    }
    std::string error;
    auto view = jobs_.find(guid, &error);
    if (!error.empty()) return ex.error(503, error);
    if (!view) return ex.error(404, "no registration for GUID " + guid);
    ex.send(200, view_json(*view));
  }

  void post(Exchange& ex) {
    evbuffer* in = evhttp_request_get_input_buffer(ex.req());
    std::string body(evbuffer_get_length(in), '\0');
    evbuffer_copyout(in, body.data(), body.size());
    auto request = parse_image_request(body);
    if (!request) return ex.error(400, request.error().message);
    Jobs::PostAnswer a = jobs_.post(*request);
    if (a.status == 200 || a.status == 202) {
      if (a.status == 202) ex.header("Location", "/images/" + a.view.guid);
      return ex.send(a.status, view_json(a.view));
    }
    if (a.status == 409) {
      return ex.send(
          409,
          json{{"error", a.error}, {"guid", request->guid}, {"registered_url", a.registered_url}});
    }
    ex.error(a.status, a.error);
  }

  const ServeOptions& options_;
  const std::string token_;
  Jobs& jobs_;
  const LogFn log_;
  BasePtr base_;
  HttpPtr http_;  // declared after base_: freed before it
  evhttp_bound_socket* bound_ = nullptr;
  std::vector<EventPtr> signals_;
  EventPtr tick_;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::unordered_set<evhttp_connection*> connections_;
};

Result<std::string> read_token(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return fail(Errc::kUsage, "token file " + path + ": cannot read it");
  std::string token((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (token.size() >= 2 && token.compare(token.size() - 2, 2, "\r\n") == 0) {
    token.resize(token.size() - 2);
  } else if (!token.empty() && token.back() == '\n') {
    token.pop_back();
  }
  if (token.empty()) return fail(Errc::kUsage, "token file " + path + " is empty");
  if (token.size() > 4096 || token.find_first_of("\r\n") != std::string::npos) {
    return fail(Errc::kUsage, "token file " + path + " must hold one line of at most 4096 bytes");
  }
  return token;
}

}  // namespace

int run_service(const ServeOptions& options, const InstallOptions& base, const LogFn& log) {
  auto token = read_token(options.token_file);
  if (!token) {
    log("tusk: error: " + token.error().message);
    return 2;
  }
  auto registry = Registry::open(base.registry_dir);
  if (!registry) {
    log("tusk: error: " + registry.error().message);
    return 1;
  }
  ServeOptions o = options;
  if (o.download_dir.empty()) o.download_dir = base.registry_dir + "/downloads";
  std::error_code ec;
  std::filesystem::create_directories(o.download_dir, ec);
  if (ec) {
    log("tusk: error: download folder " + o.download_dir + ": " + ec.message());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  int rc = 0;
  bool clean = true;
  {
    Jobs jobs(o, base, *registry, log);
    Server server(o, std::move(*token), jobs, log);
    if (auto s = server.start(); !s) {
      log("tusk: error: " + s.error().message);
      return s.error().code == Errc::kUsage ? 2 : 1;
    }
    jobs.start();
    clean = server.run();
    if (!clean) {
      // Registrations still running after the bound: leave without waiting. Their records say
      // in progress, owned by this (dead) process: the next POST cleans up and resumes.
      log("tusk serve: " + std::to_string(jobs.running()) +
          " registration(s) still running after the drain bound: exiting; a later POST resumes "
          "them");
      std::fflush(stderr);
      jobs.abandon_workers();
      ::_exit(0);
    }
  }
  log("tusk serve: stopped");
  return rc;
}

}  // namespace installer
