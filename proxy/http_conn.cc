// Server connections: states, deadlines, admission and the accept path. The life of one
// connection: Fresh (accepted, nothing read) -> Head -> [Body] -> Busy (the handler owns the
// exchange) -> Flushing (last bytes queued) -> Idle (keep-alive) -> Head ... or -> Linger (an
// error answer was sent: read and drop what the client still sends, then close) -> Closed.
// Tricky: a connection is freed only from the set's reaper event, after every callback that
// could still be on the stack has returned; closing frees the bufferevent at once so no new
// callback arrives.
#include "proxy/http_conn.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "proxy/access_log.h"
#include "proxy/http_text.h"
#include "proxy/metrics.h"
#include "proxy/outcome.h"
#include "proxy/proxy_protocol.h"
#include "s3/sign.h"

namespace proxy {

// The Exchange of a connection: its calls write to the connection.
class ConnExchange final : public Exchange {
 public:
  explicit ConnExchange(Connection& c) : conn_(c) {}
  void reply(int status, std::string_view reason, evbuffer* body) override;
  void start(int status, std::string_view reason) override;
  void send(evbuffer* chunk, void (*drained)(void*), void* arg) override;
  void end() override;
  void abort() override;

 private:
  Connection& conn_;
};

class Connection {
 public:
  enum class State { kProxy, kFresh, kIdle, kHead, kBody, kBusy, kFlushing, kLinger, kClosed };

  // Takes `bev` (a socket bufferevent that closes its socket when freed).
  Connection(ConnectionSet& set, bufferevent* bev);
  ~Connection();

  // Exchange's calls.
  void write_head(int status, std::string_view reason, bool has_body_hint, std::uint64_t length);
  void finish_response();
  void queue(evbuffer* chunk) { bufferevent_write_buffer(bev_, chunk); }
  void close_now(bool notify);
  bool head_only() const { return ex_.head_.method == "HEAD"; }

  State state() const { return state_; }
  std::list<Connection*>::iterator all_pos, idle_pos;
  bool in_idle = false;

 private:
  static void on_read(bufferevent*, void* self);
  static void on_write(bufferevent*, void* self);
  static void on_event(bufferevent*, short what, void* self);
  static void on_timer(int, short, void* self);
  static void on_resume(int, short, void* self);

  void process_input();
  bool read_proxy_header();  // true: go on with the next state
  bool read_head();  // true: go on with the next state
  bool read_body();
  void dispatch();
  void response_done();
  void fail(int status, std::string_view reason, std::string_view message);
  void start_linger();
  void arm(std::chrono::milliseconds after);

  ConnectionSet& set_;
  bufferevent* bev_ = nullptr;
  event* timer_ = nullptr;
  event* resume_ = nullptr;
  State state_ = State::kFresh;
  ConnExchange ex_;
  bool close_after_ = false;   // the current response ends the connection
  bool linger_after_ = false;  // ... after reading and dropping what the client still sends
  std::size_t scanned_ = 0;    // bytes of the head being read already searched for a line feed
  bool saw_line_ = false;      // the head being read has a line feed (its request line ended)
  bool read_paused_ = false;   // reading stopped: a head's worth of input waits behind an answer
  bool eof_ = false;           // the client half-closed: nothing more will be read
  std::uint64_t body_left_ = 0;
  std::unique_ptr<ChunkedBody> chunked_;
  std::uint64_t lingered_ = 0;
};

namespace {

// Frees a connection's bufferevent and closes its socket once this loop has told epoll to
// forget it. With the epoll changelist (worker loops, proxy/loop.h) event_del only records the
// change and the next dispatch applies it; a socket closed at once would free its number for
// another thread's accept or open before that epoll_ctl, which then names someone else's file
// (the kernel answers ENOENT or EPERM, but it is a race on the number, and ThreadSanitizer
// reports it). The close is a timer of 1 µs: timers run after the next dispatch, which applies
// the changelist first. Not a zero timeout: event_base_once activates those at once, in this
// same pass of callbacks, before any dispatch (the flaw CI's TSan pass caught in issue 14).
void free_and_close_later(event_base* base, bufferevent* bev) {
  const evutil_socket_t fd = bufferevent_getfd(bev);
  bufferevent_free(bev);
  if (fd < 0) {
    return;
  }
  const timeval soon{0, 1};
  auto close_fd = [](evutil_socket_t, short, void* arg) {
    evutil_closesocket(static_cast<evutil_socket_t>(reinterpret_cast<std::intptr_t>(arg)));
  };
  if (event_base_once(base, -1, EV_TIMEOUT, close_fd,
                      reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)), &soon) != 0) {
    evutil_closesocket(fd);
  }
}

constexpr std::uint64_t kMaxLinger = 1u << 20;  // bytes dropped while lingering before closing

bool status_has_body(int status) { return status >= 200 && status != 204 && status != 304; }

// A complete answer written straight to the socket, without waiting for the client to read:
// for a connection about to be closed (408) or never adopted (503). Best effort by design.
void send_final_answer(int fd, int status, std::string_view reason, std::string_view body,
                       std::string_view extra_fields = {}) {
  std::string a = "HTTP/1.1 " + std::to_string(status) + " " + std::string(reason) +
                  "\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
                  "\r\n" + std::string(extra_fields) + "Connection: close\r\n\r\n" +
                  std::string(body);
  [[maybe_unused]] ssize_t n = ::send(fd, a.data(), a.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

// The peer's address of a connected socket; nullopt when it has none (not an IP socket).
std::optional<conf::IpAddress> peer_ip(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
    return std::nullopt;
  }
  return conf::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss), len);
}

// The same as text, for the access log; "" when it has none.
std::string peer_address(int fd) {
  const auto ip = peer_ip(fd);
  return ip ? conf::to_string(*ip) : std::string();
}

timeval to_timeval(std::chrono::milliseconds d) {
  return timeval{static_cast<time_t>(d.count() / 1000),
                 static_cast<suseconds_t>((d.count() % 1000) * 1000)};
}

}  // namespace

// ---------------------------------------------------------------- ResponseHeaders

void ResponseHeaders::remove(std::string_view name) {
  std::erase_if(fields_, [name](const auto& f) { return iequals(f.first, name); });
}

// ---------------------------------------------------------------- Exchange

void Exchange::reset() {
  head_ = RequestHead{};
  body_.clear();
  out_.clear();
  on_close_ = nullptr;
  on_close_arg_ = nullptr;
  drained_ = nullptr;
  drained_arg_ = nullptr;
}

void ConnExchange::reply(int status, std::string_view reason, evbuffer* body) {
  const std::uint64_t n = body ? evbuffer_get_length(body) : 0;
  conn_.write_head(status, reason, true, n);
  if (body != nullptr && n > 0) {
    if (conn_.head_only() || !status_has_body(status)) {
      evbuffer_drain(body, n);
    } else {
      conn_.queue(body);
    }
  }
  conn_.finish_response();
}

void ConnExchange::start(int status, std::string_view reason) {
  conn_.write_head(status, reason, false, 0);
}

void ConnExchange::send(evbuffer* chunk, void (*drained)(void*), void* arg) {
  drained_ = drained;
  drained_arg_ = arg;
  conn_.queue(chunk);
}

void ConnExchange::end() { conn_.finish_response(); }

void ConnExchange::abort() { conn_.close_now(/*notify=*/false); }

// ---------------------------------------------------------------- Connection

Connection::Connection(ConnectionSet& set, bufferevent* bev) : set_(set), bev_(bev), ex_(*this) {
  ex_.peer_ = peer_ip(bufferevent_getfd(bev_));
  if (ex_.peer_) {
    ex_.client_ = conf::to_string(*ex_.peer_);
    if (set_.proxy_from_ && set_.proxy_from_(*ex_.peer_)) {
      state_ = State::kProxy;
    }
  }
  timeval send_tv = to_timeval(set_.limits_.send_timeout);
  bufferevent_set_timeouts(bev_, nullptr, &send_tv);  // counts only while output is pending
  bufferevent_setcb(bev_, &Connection::on_read, &Connection::on_write, &Connection::on_event, this);
  bufferevent_enable(bev_, EV_READ | EV_WRITE);
  timer_ = evtimer_new(set_.base_, &Connection::on_timer, this);
  resume_ = event_new(set_.base_, -1, 0, &Connection::on_resume, this);
  arm(set_.limits_.header_timeout);  // a new connection sends its first head within this
}

Connection::~Connection() {
  if (bev_ != nullptr) {
    const evutil_socket_t fd = bufferevent_getfd(bev_);
    bufferevent_free(bev_);  // the set is going away with its loop: close at once
    evutil_closesocket(fd);
  }
  if (timer_ != nullptr) {
    event_free(timer_);
  }
  if (resume_ != nullptr) {
    event_free(resume_);
  }
}

void Connection::arm(std::chrono::milliseconds after) {
  timeval tv = to_timeval(after);
  evtimer_add(timer_, &tv);
}

void Connection::on_read(bufferevent*, void* self) {
  static_cast<Connection*>(self)->process_input();
}

void Connection::on_resume(int, short, void* self) {
  static_cast<Connection*>(self)->process_input();
}

void Connection::process_input() {
  while (true) {
    switch (state_) {
      case State::kProxy:
        if (!read_proxy_header()) {
          return;
        }
        break;
      case State::kFresh:
      case State::kIdle:
      case State::kHead:
        if (!read_head()) {
          return;
        }
        break;
      case State::kBody:
        if (!read_body()) {
          return;
        }
        break;
      case State::kLinger: {
        evbuffer* in = bufferevent_get_input(bev_);
        lingered_ += evbuffer_get_length(in);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (lingered_ > kMaxLinger) {
          close_now(false);
        }
        return;
      }
      case State::kBusy:
      case State::kFlushing:
        // The read-ahead bound: while an answer is pending, reading stops once a head's worth
        // of what follows waits, so a client pipelining without reading answers costs one
        // head of memory, not its stream. (Not libevent's read watermark: in 2.1 a suspended
        // bufferevent whose input stays full keeps re-running the read callback, a busy loop.)
        if (!read_paused_ &&
            evbuffer_get_length(bufferevent_get_input(bev_)) >= set_.limits_.head.max_head) {
          bufferevent_disable(bev_, EV_READ);
          read_paused_ = true;
        }
        return;
      case State::kClosed:
        return;
    }
  }
}

bool Connection::read_head() {
  evbuffer* in = bufferevent_get_input(bev_);
  const std::size_t len = evbuffer_get_length(in);
  if (len == 0) {
    return false;
  }
  if (state_ != State::kHead) {
    if (state_ == State::kIdle) {
      arm(set_.limits_.header_timeout);  // the head's deadline runs from its first byte
    }
    state_ = State::kHead;
    set_.make_busy(this);
  }
  // Only bytes that brought a line feed can complete a head: the rest of a slow head costs
  // no rescan (a client trickling bytes pays, not us).
  const std::size_t window = std::min(len, set_.limits_.head.max_head + 4096);
  evbuffer_ptr from;
  evbuffer_ptr_set(in, &from, std::min(scanned_, window), EVBUFFER_PTR_SET);
  evbuffer_ptr nl = evbuffer_search(in, "\n", 1, &from);
  const bool new_line = nl.pos >= 0 && static_cast<std::size_t>(nl.pos) < window;
  saw_line_ = saw_line_ || new_line;
  const HeadLimits& lim = set_.limits_.head;
  if (!new_line && window <= lim.max_head && (saw_line_ || window <= lim.max_target + 32)) {
    scanned_ = window;
    return false;  // no limit broken and nothing new to parse
  }
  std::string_view bytes(
      reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(window))), window);
  HeadParse p = parse_request_head(bytes, lim);
  if (p.state == HeadParse::State::kIncomplete) {
    scanned_ = window;
    return false;
  }
  if (p.state == HeadParse::State::kError) {
    fail(p.error.status, p.error.reason, p.error.message);
    return false;
  }
  evbuffer_drain(in, p.consumed);
  scanned_ = 0;
  saw_line_ = false;
  ex_.head_ = std::move(p.head);
  const RequestHead& h = ex_.head_;
  if (h.body == BodyFraming::kLength) {
    if (h.content_length > set_.limits_.max_body) {
      fail(413, "Content Too Large", "request body too large");
      return false;
    }
    body_left_ = h.content_length;
    state_ = State::kBody;
    return true;
  }
  if (h.body == BodyFraming::kChunked) {
    chunked_ = std::make_unique<ChunkedBody>(set_.limits_.max_body);
    state_ = State::kBody;
    return true;
  }
  dispatch();
  return true;
}

// A PROXY protocol header from a trusted balancer: its source is the client from now on. A
// connection whose first bytes are not one is refused with 400 (a balancer without
// send-proxy, or someone else at its address). Bounded by kMaxProxyV2Header and the head's
// deadline, which runs from the connection's start.
bool Connection::read_proxy_header() {
  evbuffer* in = bufferevent_get_input(bev_);
  const std::size_t len = std::min(evbuffer_get_length(in), kMaxProxyV2Header);
  if (len == 0) {
    return false;
  }
  std::string_view bytes(
      reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(len))), len);
  ProxyHeader header;
  std::size_t consumed = 0;
  std::string error;
  switch (parse_proxy_header(bytes, &header, &consumed, &error)) {
    case ProxyParse::kNeedMore:
      if (len < kMaxProxyV2Header) {
        return false;
      }
      error = "longer than any PROXY protocol header";
      [[fallthrough]];
    case ProxyParse::kInvalid:
      fail(400, "Bad Request", "bad PROXY protocol header: " + error);
      return false;
    case ProxyParse::kDone:
      break;
  }
  evbuffer_drain(in, consumed);
  if (header.source) {
    ex_.peer_ = header.source;
    ex_.client_ = conf::to_string(*header.source);
  } else {
    ex_.forwarded_for_trusted_ = false;
  }
  state_ = State::kFresh;
  return true;
}

bool Connection::read_body() {
  evbuffer* in = bufferevent_get_input(bev_);
  std::size_t len = evbuffer_get_length(in);
  if (len == 0) {
    return false;
  }
  if (chunked_) {
    std::string_view bytes(
        reinterpret_cast<const char*>(evbuffer_pullup(in, static_cast<ev_ssize_t>(len))), len);
    ChunkedBody::Step st = chunked_->feed(bytes, ex_.body_);
    evbuffer_drain(in, st.consumed);
    if (st.state == ChunkedBody::State::kError) {
      if (st.too_large) {
        fail(413, "Content Too Large", "request body too large");
      } else {
        fail(400, "Bad Request", st.error);
      }
      return false;
    }
    if (st.state == ChunkedBody::State::kMore) {
      return false;
    }
    chunked_.reset();
  } else {
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(body_left_, len));
    std::size_t at = ex_.body_.size();
    ex_.body_.resize(at + n);
    evbuffer_remove(in, ex_.body_.data() + at, n);
    body_left_ -= n;
    if (body_left_ > 0) {
      return false;
    }
  }
  dispatch();
  return true;
}

void Connection::dispatch() {
  state_ = State::kBusy;
  evtimer_del(timer_);  // while the handler works, the fill's own deadlines apply
  close_after_ = !ex_.head_.keep_alive || set_.draining_;
  set_.handler_(ex_, set_.handler_arg_);
}

std::string render_response_head(int status, std::string_view reason, const Headers& fields,
                                 ConnectionToken token) {
  std::size_t n = 32 + reason.size();
  for (const auto& [k, v] : fields) {
    n += k.size() + v.size() + 4;
  }
  std::string h;
  h.reserve(n);
  h += "HTTP/1.1 ";
  h += std::to_string(status);
  h += ' ';
  h += reason;
  h += "\r\n";
  for (const auto& [k, v] : fields) {
    h += k;
    h += ": ";
    h += v;
    h += "\r\n";
  }
  if (token == ConnectionToken::kClose) {
    h += "Connection: close\r\n";
  } else if (token == ConnectionToken::kKeepAlive) {
    h += "Connection: keep-alive\r\n";
  }
  h += "\r\n";
  return h;
}

void Connection::write_head(int status, std::string_view reason, bool has_body_hint,
                            std::uint64_t length) {
  ResponseHeaders& out = ex_.out_;
  out.remove("Connection");
  if (has_body_hint && status_has_body(status) && out.find("Content-Length") == nullptr) {
    out.add("Content-Length", std::to_string(length));
  }
  ConnectionToken token = ConnectionToken::kNone;
  if (close_after_ || set_.draining_) {
    close_after_ = true;
    token = ConnectionToken::kClose;
  } else if (ex_.head_.minor == 0) {
    token = ConnectionToken::kKeepAlive;
  }
  const std::string h = render_response_head(status, reason, out.fields(), token);
  bufferevent_write(bev_, h.data(), h.size());
}

void Connection::finish_response() {
  state_ = State::kFlushing;
  ex_.drained_ = nullptr;
  // Write what fits now: a small answer leaves in this call, with no loop round trip (the
  // write event libevent armed finds nothing left and is cancelled by the changelist).
  evbuffer* out = bufferevent_get_output(bev_);
  if (evbuffer_get_length(out) > 0) {
    evbuffer_write(out, bufferevent_getfd(bev_));
  }
  if (evbuffer_get_length(out) == 0) {
    response_done();
  }
}

void Connection::on_write(bufferevent*, void* self) {
  auto* c = static_cast<Connection*>(self);
  if (c->state_ == State::kFlushing) {
    c->response_done();
  } else if (c->state_ == State::kBusy && c->ex_.drained_ != nullptr) {
    auto fn = c->ex_.drained_;
    c->ex_.drained_ = nullptr;
    fn(c->ex_.drained_arg_);
  }
}

void Connection::response_done() {
  ex_.reset();
  if (eof_) {
    close_now(false);  // nothing left to read or to linger for
    return;
  }
  if (read_paused_) {
    read_paused_ = false;
    bufferevent_enable(bev_, EV_READ);
  }
  if (linger_after_) {
    start_linger();
    return;
  }
  if (close_after_ || set_.draining_) {
    if (evbuffer_get_length(bufferevent_get_input(bev_)) > 0) {
      start_linger();  // closing with unread input would reset the answer away
    } else {
      close_now(false);
    }
    return;
  }
  state_ = State::kIdle;
  set_.make_idle(this);
  arm(set_.limits_.idle_timeout);
  if (evbuffer_get_length(bufferevent_get_input(bev_)) > 0) {
    event_active(resume_, EV_TIMEOUT, 0);  // a pipelined request: next loop round, no recursion
  }
}

void Connection::fail(int status, std::string_view reason, std::string_view message) {
  set_.count(ConnEvent::kBadRequest);
  if (set_.metrics_ != nullptr) {
    set_.metrics_->request(Outcome::kError, status);
  }
  set_.log_answer(status, message, ex_.client_);
  set_.make_busy(this);
  ex_.reset();
  ex_.head_.minor = 1;
  state_ = State::kBusy;
  close_after_ = true;
  linger_after_ = true;
  ResponseHeaders& out = ex_.out_;
  out.add("Date", s3::http_date(std::time(nullptr)));
  out.add("Content-Type", "text/plain; charset=utf-8");
  out.add("Cache-Control", "no-store");
  out.add("X-Cache", "ERROR");
  std::string body = std::string(message) + "\n";
  write_head(status, reason, true, body.size());
  bufferevent_write(bev_, body.data(), body.size());
  finish_response();
}

void Connection::start_linger() {
  // Our answer is out; stop sending, and read and drop what the client still sends until it
  // closes (or `linger` passes), so that closing does not reset the answer before it is read.
  state_ = State::kLinger;
  ::shutdown(bufferevent_getfd(bev_), SHUT_WR);
  arm(set_.limits_.linger);
  process_input();
}

void Connection::on_event(bufferevent*, short what, void* self) {
  auto* c = static_cast<Connection*>(self);
  if ((what & BEV_EVENT_EOF) != 0 && (what & BEV_EVENT_WRITING) == 0 &&
      (c->state_ == State::kBusy || c->state_ == State::kFlushing)) {
    // The client half-closed after its request (`nc -N`, some scripts): it still reads. Finish
    // the answer, then close; a client that is really gone fails the next write instead.
    c->close_after_ = true;
    c->eof_ = true;
    bufferevent_disable(c->bev_, EV_READ);
    return;
  }
  if ((what & BEV_EVENT_TIMEOUT) != 0) {
    c->set_.count(ConnEvent::kSendTimeout);
    spdlog::debug("client took no byte for {}s; closing", c->set_.limits_.send_timeout.count());
  }
  c->close_now(/*notify=*/true);
}

void Connection::on_timer(int, short, void* self) {
  auto* c = static_cast<Connection*>(self);
  switch (c->state_) {
    case State::kHead:
    case State::kBody: {
      c->set_.count(ConnEvent::kHeaderTimeout);
      c->set_.log_answer(408, "request head too slow", c->ex_.client_);
      send_final_answer(bufferevent_getfd(c->bev_), 408, "Request Timeout",
                        "request head too slow\n");
      c->close_now(false);
      return;
    }
    case State::kProxy:
    case State::kFresh:
      c->set_.count(ConnEvent::kHeaderTimeout);
      c->close_now(false);
      return;
    case State::kIdle:
    case State::kLinger:
      c->close_now(false);
      return;
    default:
      return;
  }
}

void Connection::close_now(bool notify) {
  if (state_ == State::kClosed) {
    return;
  }
  state_ = State::kClosed;
  free_and_close_later(set_.base_, bev_);  // no callback of it runs after this
  bev_ = nullptr;
  evtimer_del(timer_);
  event_del(resume_);
  set_.forget(this);
  auto fn = ex_.on_close_;
  void* arg = ex_.on_close_arg_;
  ex_.on_close_ = nullptr;
  if (notify && fn != nullptr) {
    fn(arg);
  }
}

// ---------------------------------------------------------------- ConnectionSet

ConnectionSet::ConnectionSet(event_base* base, ConnLimits limits, Handler handler,
                             void* handler_arg, std::atomic<int>& open, int max_connections,
                             Metrics* metrics)
    : base_(base),
      limits_(limits),
      handler_(handler),
      handler_arg_(handler_arg),
      open_(open),
      max_connections_(max_connections),
      metrics_(metrics) {
  reaper_ = event_new(base_, -1, 0, &ConnectionSet::on_reap, this);
}

ConnectionSet::~ConnectionSet() {
  while (!all_.empty()) {
    all_.front()->close_now(/*notify=*/true);
  }
  on_reap(-1, 0, this);
  event_free(reaper_);
}

void ConnectionSet::log_answer(int status, std::string_view what, std::string_view client) {
  if (access_log_) {
    // No client bytes: the request could not be read as one, so only our reason is logged.
    AccessEntry e;
    e.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
    e.client = client;
    e.status = status;
    e.outcome = "ERROR";
    e.reason = what;
    access_log_->write(e);
  }
}

void ConnectionSet::count(ConnEvent e) {
  if (metrics_ != nullptr) {
    metrics_->connection(e);
  }
}

void ConnectionSet::adopt(int fd) {
  if (draining_) {
    ::close(fd);
    return;
  }
  if (open_.fetch_add(1) >= max_connections_) {
    open_.fetch_sub(1);
    if (idle_.empty()) {
      // Every connection of this loop is in a request: refuse, quickly and visibly.
      send_final_answer(fd, 503, "Service Unavailable", "too many connections\n",
                        "Retry-After: 1\r\n");
      log_answer(503, "too many connections", access_log_ ? peer_address(fd) : std::string());
      ::close(fd);
      count(ConnEvent::kRefused);
      return;
    }
    // As nginx reuses connections: the one idle longest makes room.
    count(ConnEvent::kReaped);
    idle_.front()->close_now(/*notify=*/false);
    open_.fetch_add(1);
  }
  // Not BEV_OPT_CLOSE_ON_FREE: a connection's socket is closed by free_and_close_later.
  bufferevent* bev = bufferevent_socket_new(base_, fd, 0);
  if (bev == nullptr) {
    ::close(fd);
    open_.fetch_sub(1);
    count(ConnEvent::kRefused);
    return;
  }
  count(ConnEvent::kAccepted);
  auto* c = new Connection(*this, bev);
  all_.push_back(c);
  c->all_pos = std::prev(all_.end());
  make_idle(c);  // a new connection waiting for its first byte may be reaped, as in nginx
}

void ConnectionSet::make_idle(Connection* c) {
  if (c->in_idle) {
    idle_.erase(c->idle_pos);
  }
  idle_.push_back(c);
  c->idle_pos = std::prev(idle_.end());
  c->in_idle = true;
}

void ConnectionSet::make_busy(Connection* c) {
  if (c->in_idle) {
    idle_.erase(c->idle_pos);
    c->in_idle = false;
  }
}

void ConnectionSet::forget(Connection* c) {
  make_busy(c);
  all_.erase(c->all_pos);
  open_.fetch_sub(1);
  graveyard_.push_back(c);
  event_active(reaper_, EV_TIMEOUT, 0);
}

void ConnectionSet::on_reap(int, short, void* self) {
  auto* set = static_cast<ConnectionSet*>(self);
  std::vector<Connection*> dead;
  dead.swap(set->graveyard_);
  for (Connection* c : dead) {
    delete c;
  }
}

void ConnectionSet::drain() {
  draining_ = true;
  while (!idle_.empty()) {
    idle_.front()->close_now(/*notify=*/false);
  }
}

}  // namespace proxy
