// tuskd's HTTP/1.1 server connections: our own accept path and framing on libevent
// bufferevents, so that one client cannot exhaust an edge (DESIGN.md "Concurrency and
// admission"). libevent 2.1's evhttp has no hook for any of it (no accept hook, no header
// deadline, no read-ahead bound, its own HTML errors before a handler runs), so the server side
// is ours; libevent still does the I/O (bufferevent, evconnlistener, sendfile).
//
// Per connection: at most one request is parsed at a time and the next one is not read ahead
// beyond `max_head` bytes (the input buffer's high watermark stops reading the socket), one
// response is queued at a time, a whole request head must arrive within `header_timeout`, an
// idle keep-alive connection lives `idle_timeout`, a client that takes no byte for
// `send_timeout` is closed. Per set: at most `max_connections` over all sets sharing one
// counter; at the limit the oldest idle connection is closed to admit a new one, else the new
// one is refused with a 503.
//
// Threads: a ConnectionSet and its connections live on one event loop and are touched only
// there. The shared counter is atomic.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "conf/cidr.h"
#include "conf/result.h"
#include "proxy/http_head.h"
#include "proxy/metrics.h"

struct event_base;
struct sockaddr;
struct evbuffer;
struct evconnlistener;
struct event;

namespace proxy {

class AccessLog;
class Connection;

struct ConnLimits {
  HeadLimits head;
  std::uint64_t max_body = 64 * 1024;  // request bodies beyond this: 413 (GET/HEAD carry none)
  std::chrono::seconds header_timeout{10};
  std::chrono::seconds idle_timeout{60};
  std::chrono::seconds send_timeout{60};
  std::chrono::milliseconds linger{2000};  // after an error answer: read and discard, then close
};

// Response header fields, in order. Names are sent as given.
class ResponseHeaders {
 public:
  void add(std::string_view name, std::string_view value) { fields_.emplace_back(name, value); }
  void remove(std::string_view name);  // every field of that name (case-insensitive)
  const std::string* find(std::string_view name) const { return find_field(fields_, name); }
  const Headers& fields() const { return fields_; }
  void clear() { fields_.clear(); }

 private:
  Headers fields_;
};

// The status line and header block of a response, `fields` in order, then the Connection
// field the token asks for (none, `close`, or `keep-alive` for an HTTP/1.0 client). Pure.
enum class ConnectionToken { kNone, kClose, kKeepAlive };
std::string render_response_head(int status, std::string_view reason, const Headers& fields,
                                 ConnectionToken token);

// One request and its response on a connection. Handed to the handler when a request head
// (and its small body) has arrived; valid until the response ended (reply() or end()), abort(),
// or the close handler ran — after that the handler must not touch it.
// Exactly one of reply() / start()+end() / abort() per exchange.
// An interface: the connection's implementation is in http_conn.cc; unit tests drive a Request
// through one of their own (tests/proxy/request_test.cc), without sockets.
class Exchange {
 public:
  virtual ~Exchange() = default;
  const RequestHead& head() const { return head_; }
  const std::string& body() const { return body_; }  // at most ConnLimits::max_body bytes
  // The client's address ("192.0.2.1", "2001:db8::1"); "" when unknown. The connection's, so
  // it outlives reset().
  const std::string& client() const { return client_; }
  // The same as an address (the socket's peer, or the PROXY protocol's source); nullopt when
  // unknown (not an IP socket). What access control starts from (proxy/client_address.h).
  const std::optional<conf::IpAddress>& peer() const { return peer_; }
  // False when the connection's PROXY protocol header named no client (v2 LOCAL, v1 UNKNOWN,
  // a UNIX socket): the peer is then the balancer itself, and an X-Forwarded-For on such a
  // connection came from whoever is behind it, unchecked (a TCP-mode balancer passes it on).
  bool forwarded_for_trusted() const { return forwarded_for_trusted_; }
  ResponseHeaders& out() { return out_; }

  // The whole response. Adds Content-Length from `body` (null: empty) unless the caller set
  // one (HEAD) or the status has no body (1xx, 204, 304). Takes the bytes out of `body`.
  virtual void reply(int status, std::string_view reason, evbuffer* body) = 0;
  // The head of a streamed response; the caller has set Content-Length.
  virtual void start(int status, std::string_view reason) = 0;
  // Queues `chunk` (its bytes are moved; file segments stay sendfile) and calls
  // `drained(arg)` once everything queued so far has left for the socket. Never calls it from
  // inside send().
  virtual void send(evbuffer* chunk, void (*drained)(void*), void* arg) = 0;
  // Ends a streamed response.
  virtual void end() = 0;
  // Closes the connection now (a streamed body cannot be completed): the client sees fewer
  // bytes than Content-Length. The close handler does not run.
  virtual void abort() = 0;
  // `fn(arg)` runs if the connection closes before the response ended (client gone, send
  // timeout, shutdown). Pass nullptr to unhook.
  void set_close_handler(void (*fn)(void*), void* arg) {
    on_close_ = fn;
    on_close_arg_ = arg;
  }

 protected:
  friend class Connection;
  Exchange() = default;
  void reset();

  RequestHead head_;
  std::string body_;
  std::string client_;
  std::optional<conf::IpAddress> peer_;
  bool forwarded_for_trusted_ = true;
  ResponseHeaders out_;
  void (*on_close_)(void*) = nullptr;
  void* on_close_arg_ = nullptr;
  void (*drained_)(void*) = nullptr;
  void* drained_arg_ = nullptr;
};

using Handler = void (*)(Exchange& ex, void* arg);

class ConnectionSet {
 public:
  // `open` is shared by every set that counts against `max_connections`; `metrics` may be null.
  ConnectionSet(event_base* base, ConnLimits limits, Handler handler, void* handler_arg,
                std::atomic<int>& open, int max_connections, Metrics* metrics);
  ~ConnectionSet();  // closes every connection (close handlers run)

  // Adopts an accepted, non-blocking socket: admits it, reaps an idle connection for it, or
  // refuses it with a 503 and closes it.
  void adopt(int fd);
  // Where answers the connection gives itself (400, 408, 413, 431, 503, 505) are logged, in the
  // access log's format; null: not logged.
  void set_access_log(std::shared_ptr<AccessLog> log) { access_log_ = std::move(log); }
  // Connections from peers for which `from(peer)` is true begin with a PROXY protocol header
  // (proxy/proxy_protocol.h), read before the first request; its source becomes the client.
  // Other connections never have one. Unset: no connection does.
  void set_proxy_protocol(std::function<bool(const conf::IpAddress&)> from) {
    proxy_from_ = std::move(from);
  }
  // Draining: idle connections close now, the others after their current response, which
  // says "Connection: close".
  void drain();
  std::size_t size() const { return all_.size(); }

  ConnectionSet(const ConnectionSet&) = delete;
  ConnectionSet& operator=(const ConnectionSet&) = delete;

 private:
  friend class Connection;
  friend class Acceptor;
  void count(ConnEvent e);
  void log_answer(int status, std::string_view what, std::string_view client);
  void make_idle(Connection* c);
  void make_busy(Connection* c);
  void forget(Connection* c);  // the connection is closed: unlink and delete it later

  event_base* base_;
  ConnLimits limits_;
  Handler handler_;
  void* handler_arg_;
  std::atomic<int>& open_;
  int max_connections_;
  Metrics* metrics_;
  std::shared_ptr<AccessLog> access_log_;
  std::function<bool(const conf::IpAddress&)> proxy_from_;
  bool draining_ = false;
  std::list<Connection*> all_;
  std::list<Connection*> idle_;  // oldest idle first
  std::vector<Connection*> graveyard_;
  event* reaper_ = nullptr;  // frees closed connections once their callbacks have unwound
  static void on_reap(int, short, void* self);
};

// Accepts connections on one listening socket for a ConnectionSet. When the process or system
// runs out of descriptors (EMFILE, ENFILE, ENOBUFS, ENOMEM) it pauses accepting for a moment
// instead of spinning, and logs once per 10 s how many accepts failed.
class Acceptor {
 public:
  // Takes ownership of the listening socket `fd`.
  Acceptor(event_base* base, int fd, ConnectionSet& set, std::string name);
  ~Acceptor();
  bool ok() const { return listener_ != nullptr; }

  Acceptor(const Acceptor&) = delete;
  Acceptor& operator=(const Acceptor&) = delete;

 private:
  static void on_accept(evconnlistener* l, int fd, sockaddr* sa, int len, void* self);
  static void on_error(evconnlistener* l, void* self);
  static void on_resume(int, short, void* self);

  ConnectionSet& set_;
  std::string name_;
  evconnlistener* listener_ = nullptr;
  event* resume_ = nullptr;
  std::uint64_t failed_ = 0;  // accept errors since the last log line
  std::chrono::steady_clock::time_point logged_at_{};
};

// Raises the soft RLIMIT_NOFILE so that `max_connections` client connections fit beside the
// descriptors the rest of tuskd uses (cache files, upstream sockets, LMDB, logs). Returns the
// soft limit now in force; the error says what to change when the hard limit is too low.
conf::Result<std::uint64_t, std::string> raise_fd_limit(int max_connections);

}  // namespace proxy
