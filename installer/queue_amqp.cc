// RabbitMQ through librabbitmq. Tricky: librabbitmq's plain frame waits block forever, so every
// wait here is amqp_simple_wait_frame_noblock with a deadline, RPCs run under the rpc timeout and
// the socket has send/receive timeouts; any failure drops the connection (its protocol state is
// unknown) and the broker requeues what it had delivered. Server-side closes are answered with
// close-ok so the broker sees a clean end. Only this file includes <amqp.h>.
#include "installer/queue_amqp.h"

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <thread>

#include "installer/queue_embedded.h"  // kMaxQueueBody

namespace installer {
namespace {

constexpr amqp_channel_t kWork = 1;    // confirm mode; takes, settles, publishes
constexpr amqp_channel_t kBrowse = 2;  // list(): opened, read, closed (which requeues)
constexpr int kTagBits = 48;           // a Delivery's tag: generation << 48 | delivery tag
constexpr std::size_t kMaxBody = 16 * kMaxQueueBody;  // read at most this much of a foreign body

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

amqp_bytes_t bytes(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}
std::string text(amqp_bytes_t b) { return std::string(static_cast<const char*>(b.bytes), b.len); }

// Table entries; the key and the bytes must outlive the table they are put in.
amqp_table_entry_t utf8_entry(const char* key, amqp_bytes_t value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_UTF8;
  e.value.value.bytes = value;
  return e;
}
amqp_table_entry_t i32_entry(const char* key, std::int32_t value) {
  amqp_table_entry_t e{};
  e.key = amqp_cstring_bytes(key);
  e.value.kind = AMQP_FIELD_KIND_I32;
  e.value.value.i32 = value;
  return e;
}

}  // namespace

// librabbitmq's connection and what we know about its health.
struct AmqpQueue::Connection {
  amqp_connection_state_t state = nullptr;
  std::string where;            // "RabbitMQ at host:port" for messages
  bool healthy = false;         // logged in and in protocol sync: close politely on destruction
  std::uint64_t published = 0;  // publishes on kWork = the confirm sequence number

  ~Connection() {
    if (state == nullptr) {
      return;
    }
    if (healthy) {
      amqp_connection_close(state, AMQP_REPLY_SUCCESS);  // bounded by the rpc timeout
    }
    amqp_destroy_connection(state);
  }

  conf::Unexpected<Error> broken(const std::string& what) {
    healthy = false;
    return fail(Errc::kNetwork, where + ": " + what);
  }

  // A failed RPC's reply as an error; answers a server close so the broker sees it handled.
  conf::Unexpected<Error> rpc_error(const std::string& what, const amqp_rpc_reply_t& r) {
    switch (r.reply_type) {
      case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        if (r.library_error == AMQP_STATUS_TIMEOUT) {
          return broken(what + ": no answer (timed out)");
        }
        return broken(what + ": " + amqp_error_string2(r.library_error));
      case AMQP_RESPONSE_SERVER_EXCEPTION:
        return server_close(what, r.reply);
      default:
        return broken(what + ": no reply");
    }
  }

  conf::Unexpected<Error> server_close(const std::string& what, const amqp_method_t& m) {
    if (m.id == AMQP_CONNECTION_CLOSE_METHOD) {
      auto* c = static_cast<amqp_connection_close_t*>(m.decoded);
      std::string why = std::to_string(c->reply_code) + " " + text(c->reply_text);
      amqp_connection_close_ok_t ok{};
      amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      return broken(what + ": the broker closed the connection: " + why);
    }
    if (m.id == AMQP_CHANNEL_CLOSE_METHOD) {
      auto* c = static_cast<amqp_channel_close_t*>(m.decoded);
      std::string why = std::to_string(c->reply_code) + " " + text(c->reply_text);
      // Simplest consistent state: drop the whole connection (the next call reconnects).
      return broken(what + ": the broker closed the channel: " + why);
    }
    return broken(what + ": unexpected method " + std::to_string(m.id));
  }

  // Non-null reply pointer of an RPC helper, else the reason it failed.
  template <class T>
  Result<T*> check(T* reply, const std::string& what) {
    if (reply != nullptr) {
      return reply;
    }
    return rpc_error(what, amqp_get_rpc_reply(state));
  }

  // The next frame, waiting at most `timeout`.
  Result<amqp_frame_t> frame(std::chrono::milliseconds timeout, const std::string& what) {
    amqp_frame_t f{};
    timeval tv = to_timeval(timeout);
    int rc = amqp_simple_wait_frame_noblock(state, &f, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) {
      return broken(what + ": no answer (timed out)");
    }
    if (rc != AMQP_STATUS_OK) {
      return broken(what + ": " + amqp_error_string2(rc));
    }
    if (f.frame_type == AMQP_FRAME_METHOD && (f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD ||
                                              f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD)) {
      return server_close(what, f.payload.method);
    }
    return f;
  }
};

namespace {

using Connection = AmqpQueue::Connection;

// A message's content after basic.get-ok: the header frame, then body frames.
struct Content {
  std::string body;
  int attempts = 0;
  std::string error;
};

Result<Content> read_content(Connection& c, amqp_channel_t ch, std::chrono::milliseconds timeout) {
  const std::string what = "reading a message";
  auto head = c.frame(timeout, what);
  if (!head) {
    return conf::unexpected(head.error());
  }
  if (head->frame_type != AMQP_FRAME_HEADER || head->channel != ch) {
    return c.broken(what + ": unexpected frame");
  }
  const std::uint64_t size = head->payload.properties.body_size;
  if (size > kMaxBody) {
    return c.broken(what + ": its body has " + std::to_string(size) + " bytes (at most " +
                    std::to_string(kMaxBody) + ")");
  }
  Content out;
  auto* props = static_cast<amqp_basic_properties_t*>(head->payload.properties.decoded);
  if (props != nullptr && (props->_flags & AMQP_BASIC_HEADERS_FLAG) != 0) {
    for (int i = 0; i < props->headers.num_entries; ++i) {
      const auto& e = props->headers.entries[i];
      const std::string key = text(e.key);
      if (key == "x-tusk-attempts") {
        switch (e.value.kind) {
          case AMQP_FIELD_KIND_I32:
            out.attempts = e.value.value.i32;
            break;
          case AMQP_FIELD_KIND_I64:
            out.attempts = static_cast<int>(e.value.value.i64);
            break;
          case AMQP_FIELD_KIND_U32:
            out.attempts = static_cast<int>(e.value.value.u32);
            break;
          default:
            break;  // another publisher's type: attempts unknown, counted from 0
        }
      } else if (key == "x-tusk-error" &&
                 (e.value.kind == AMQP_FIELD_KIND_UTF8 || e.value.kind == AMQP_FIELD_KIND_BYTES)) {
        out.error = text(e.value.value.bytes);
      }
    }
  }
  out.body.reserve(size);
  while (out.body.size() < size) {
    auto f = c.frame(timeout, what);
    if (!f) {
      return conf::unexpected(f.error());
    }
    if (f->frame_type != AMQP_FRAME_BODY || f->channel != ch ||
        f->payload.body_fragment.len > size - out.body.size()) {
      return c.broken(what + ": unexpected frame");
    }
    out.body += text(f->payload.body_fragment);
  }
  return out;
}

// basic.get: nullopt when the queue is empty, else the delivery tag and the content.
Result<std::optional<std::pair<std::uint64_t, Content>>> get_one(Connection& c, amqp_channel_t ch,
                                                                 const char* queue,
                                                                 std::chrono::milliseconds t) {
  amqp_maybe_release_buffers(c.state);
  auto r = amqp_basic_get(c.state, ch, amqp_cstring_bytes(queue), /*no_ack=*/0);
  if (r.reply_type != AMQP_RESPONSE_NORMAL) {
    return c.rpc_error(std::string("basic.get from ") + queue, r);
  }
  if (r.reply.id == AMQP_BASIC_GET_EMPTY_METHOD) {
    return std::optional<std::pair<std::uint64_t, Content>>();
  }
  if (r.reply.id != AMQP_BASIC_GET_OK_METHOD) {
    return c.broken(std::string("basic.get from ") + queue + ": unexpected reply");
  }
  const std::uint64_t tag = static_cast<amqp_basic_get_ok_t*>(r.reply.decoded)->delivery_tag;
  auto content = read_content(c, ch, t);
  if (!content) {
    return conf::unexpected(content.error());
  }
  return std::optional<std::pair<std::uint64_t, Content>>(std::in_place, tag, std::move(*content));
}

// Opens channel `ch`, and for kWork puts it in confirm mode and declares the three queues.
Result<void> setup(Connection& c) {
  if (auto r = c.check(amqp_channel_open(c.state, kWork), "channel.open"); !r) {
    return conf::unexpected(r.error());
  }
  if (auto r = c.check(amqp_confirm_select(c.state, kWork), "confirm.select"); !r) {
    return conf::unexpected(r.error());
  }
  amqp_table_entry_t dl[] = {
      utf8_entry("x-dead-letter-exchange", amqp_empty_bytes),
      utf8_entry("x-dead-letter-routing-key", amqp_cstring_bytes(kAmqpQueue))};
  struct {
    const char* name;
    amqp_table_t args;
  } queues[] = {{kAmqpQueue, amqp_empty_table},
                {kAmqpRetryQueue, amqp_table_t{2, dl}},
                {kAmqpParkedQueue, amqp_empty_table}};
  for (const auto& q : queues) {
    auto r =
        c.check(amqp_queue_declare(c.state, kWork, amqp_cstring_bytes(q.name), 0, 1, 0, 0, q.args),
                std::string("declaring queue ") + q.name);
    if (!r) {
      return conf::unexpected(r.error());
    }
  }
  return {};
}

}  // namespace

AmqpQueue::AmqpQueue(AmqpUrl url, AmqpOptions options) : url_(std::move(url)), options_(options) {}
AmqpQueue::~AmqpQueue() = default;

std::string AmqpQueue::describe() const {
  std::string vhost = url_.vhost == "/" ? "" : url_.vhost;
  return "amqp://" + url_.user + "@" + url_.host + ":" + std::to_string(url_.port) + "/" + vhost +
         " queue " + kAmqpQueue;
}

Result<std::unique_ptr<AmqpQueue>> AmqpQueue::open(const AmqpUrl& url, AmqpOptions options) {
  std::unique_ptr<AmqpQueue> q(new AmqpQueue(url, options));
  if (auto c = q->connection(); !c) {
    return conf::unexpected(c.error());
  }
  return q;
}

Result<AmqpQueue::Connection*> AmqpQueue::connection() {
  if (conn_ && conn_->healthy) {
    return conn_.get();
  }
  conn_.reset();
  auto c = std::make_unique<Connection>();
  const bool v6 = url_.host.find(':') != std::string::npos;
  c->where =
      "RabbitMQ at " + (v6 ? "[" + url_.host + "]" : url_.host) + ":" + std::to_string(url_.port);
  c->state = amqp_new_connection();
  if (c->state == nullptr) {
    return fail(Errc::kNetwork, c->where + ": out of memory");
  }
  amqp_socket_t* socket = amqp_tcp_socket_new(c->state);  // owned by the connection
  if (socket == nullptr) {
    return fail(Errc::kNetwork, c->where + ": cannot create a socket");
  }
  timeval connect_tv = to_timeval(options_.connect_timeout);
  int rc = amqp_socket_open_noblock(socket, url_.host.c_str(), url_.port, &connect_tv);
  if (rc != AMQP_STATUS_OK) {
    // librabbitmq's SOCKET_ERROR text ("a socket error occurred") hides the refused connect.
    std::string why = rc == AMQP_STATUS_TIMEOUT        ? "timed out"
                      : rc == AMQP_STATUS_SOCKET_ERROR ? "refused or unreachable"
                                                       : amqp_error_string2(rc);
    return fail(Errc::kNetwork, c->where + ": cannot connect: " + why);
  }
  timeval io = to_timeval(options_.io_timeout);
  const int fd = amqp_socket_get_sockfd(socket);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &io, sizeof io);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &io, sizeof io);
  amqp_set_handshake_timeout(c->state, &io);
  amqp_set_rpc_timeout(c->state, &io);
  // Heartbeats off: librabbitmq answers them only inside its calls, and a worker converts an
  // image for minutes between calls.
  auto login = amqp_login(c->state, url_.vhost.c_str(), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                          url_.user.c_str(), url_.password.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    std::string who = "login as '" + url_.user + "' on vhost '" + url_.vhost + "'";
    if (login.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        (login.library_error == AMQP_STATUS_CONNECTION_CLOSED ||
         login.library_error == AMQP_STATUS_SOCKET_ERROR)) {
      return fail(Errc::kNetwork, c->where + ": " + who +
                                      " refused: the broker closed the connection (wrong user "
                                      "or password, or no access to the vhost?)");
    }
    return c->rpc_error(who + " failed", login);
  }
  c->healthy = true;
  if (auto s = setup(*c); !s) {
    return conf::unexpected(s.error());
  }
  ++generation_;
  conn_ = std::move(c);
  return conn_.get();
}

Result<void> AmqpQueue::publish_to(const char* queue, const std::string& body, int attempts,
                                   const std::string& error, std::int64_t expiration_ms) {
  auto c = connection();
  if (!c) {
    return conf::unexpected(c.error());
  }
  Connection& conn = **c;
  amqp_maybe_release_buffers(conn.state);
  amqp_table_entry_t headers[] = {i32_entry("x-tusk-attempts", attempts),
                                  utf8_entry("x-tusk-error", bytes(error))};
  amqp_basic_properties_t props{};
  props._flags =
      AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
  props.content_type = amqp_cstring_bytes("application/json");
  props.delivery_mode = 2;  // persistent
  props.headers = amqp_table_t{2, headers};
  std::string expiration = std::to_string(expiration_ms);
  if (expiration_ms >= 0) {
    props._flags |= AMQP_BASIC_EXPIRATION_FLAG;
    props.expiration = bytes(expiration);
  }
  const std::string what = std::string("publishing to ") + queue;
  int rc = amqp_basic_publish(conn.state, kWork, amqp_empty_bytes, amqp_cstring_bytes(queue),
                              /*mandatory=*/1, /*immediate=*/0, &props, bytes(body));
  if (rc != AMQP_STATUS_OK) {
    return conn.broken(what + ": " + amqp_error_string2(rc));
  }
  const std::uint64_t seq = ++conn.published;
  // Wait for the confirm; a basic.return (no such queue) comes before its ack.
  std::string returned;
  const auto deadline = std::chrono::steady_clock::now() + options_.io_timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return conn.broken(what + ": no confirm (timed out)");
    }
    auto f = conn.frame(left, what);
    if (!f) {
      return conf::unexpected(f.error());
    }
    if (f->frame_type != AMQP_FRAME_METHOD) {
      continue;  // the header and body of a returned message
    }
    const auto& m = f->payload.method;
    if (m.id == AMQP_BASIC_RETURN_METHOD) {
      returned = text(static_cast<amqp_basic_return_t*>(m.decoded)->reply_text);
    } else if (m.id == AMQP_BASIC_NACK_METHOD) {
      return fail(Errc::kNetwork, conn.where + ": " + what + ": the broker refused the message");
    } else if (m.id == AMQP_BASIC_ACK_METHOD) {
      auto* a = static_cast<amqp_basic_ack_t*>(m.decoded);
      if (a->delivery_tag < seq) {
        continue;  // an older confirm (cannot happen: one publish at a time)
      }
      if (!returned.empty()) {
        return fail(Errc::kNetwork, conn.where + ": " + what + ": returned (" + returned + ")");
      }
      return {};
    }
  }
}

Result<void> AmqpQueue::publish(const std::string& body) {
  if (body.size() > kMaxQueueBody) {
    return fail(Errc::kFormat, "a queue message is at most " + std::to_string(kMaxQueueBody) +
                                   " bytes; this one has " + std::to_string(body.size()));
  }
  return publish_to(kAmqpQueue, body, 0, "", -1);
}

Result<std::optional<Delivery>> AmqpQueue::take(std::chrono::milliseconds wait) {
  const auto deadline = std::chrono::steady_clock::now() + wait;
  for (;;) {
    auto c = connection();
    if (!c) {
      return conf::unexpected(c.error());
    }
    auto got = get_one(**c, kWork, kAmqpQueue, options_.io_timeout);
    if (!got) {
      return conf::unexpected(got.error());
    }
    if (*got) {
      Delivery d;
      d.tag = (generation_ << kTagBits) | (*got)->first;
      d.body = std::move((*got)->second.body);
      d.attempts = (*got)->second.attempts;
      return std::optional<Delivery>(std::move(d));
    }
    auto left = deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      return std::optional<Delivery>();
    }
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(left, options_.poll));
  }
}

// Publishes the copy (when `to` is set) and, once it is confirmed, acknowledges the original.
Result<void> AmqpQueue::settle(const Delivery& d, const char* to, std::int64_t expiration_ms,
                               const std::string& error, int attempts) {
  const std::uint64_t tag = d.tag & ((std::uint64_t{1} << kTagBits) - 1);
  if ((d.tag >> kTagBits) != generation_ || !conn_ || !conn_->healthy) {
    return fail(Errc::kNetwork, "RabbitMQ at " + url_.host + ":" + std::to_string(url_.port) +
                                    ": the connection this message came on was lost; the "
                                    "broker delivers it again");
  }
  if (to != nullptr) {
    if (auto p = publish_to(to, d.body, attempts, error, expiration_ms); !p) {
      return p;
    }
  }
  Connection& conn = *conn_;
  if (int rc = amqp_basic_ack(conn.state, kWork, tag, 0); rc != AMQP_STATUS_OK) {
    return conn.broken(std::string("basic.ack: ") + amqp_error_string2(rc));
  }
  // basic.ack has no reply: a round trip makes an error it caused (unknown tag) surface here.
  auto r = conn.check(amqp_queue_declare(conn.state, kWork, amqp_cstring_bytes(kAmqpQueue), 1, 1, 0,
                                         0, amqp_empty_table),
                      "basic.ack");
  if (!r) {
    return conf::unexpected(r.error());
  }
  return {};
}

Result<void> AmqpQueue::ack(const Delivery& d) { return settle(d, nullptr, -1, "", d.attempts); }

Result<void> AmqpQueue::retry(const Delivery& d, std::chrono::milliseconds delay,
                              const std::string& error) {
  return settle(d, kAmqpRetryQueue, std::max<std::int64_t>(0, delay.count()), error,
                d.attempts + 1);
}

Result<void> AmqpQueue::park(const Delivery& d, const std::string& error) {
  return settle(d, kAmqpParkedQueue, -1, error, d.attempts);
}

Result<std::vector<QueuedMessage>> AmqpQueue::list() {
  auto c = connection();
  if (!c) {
    return conf::unexpected(c.error());
  }
  Connection& conn = **c;
  if (auto r = conn.check(amqp_channel_open(conn.state, kBrowse), "channel.open"); !r) {
    return conf::unexpected(r.error());
  }
  std::vector<QueuedMessage> out;
  const std::pair<const char*, const char*> queues[] = {
      {kAmqpQueue, "ready"}, {kAmqpRetryQueue, "delayed"}, {kAmqpParkedQueue, "parked"}};
  for (const auto& [queue, state] : queues) {
    for (std::size_t n = 0; n < options_.list_limit; ++n) {
      auto got = get_one(conn, kBrowse, queue, options_.io_timeout);
      if (!got) {
        return conf::unexpected(got.error());  // the dropped connection requeues them
      }
      if (!*got) {
        break;
      }
      QueuedMessage m;
      m.body = std::move((*got)->second.body);
      m.attempts = (*got)->second.attempts;
      m.last_error = std::move((*got)->second.error);
      m.state = state;
      out.push_back(std::move(m));
    }
  }
  // Closing the channel requeues everything it took, in the original order.
  auto closed = amqp_channel_close(conn.state, kBrowse, AMQP_REPLY_SUCCESS);
  if (closed.reply_type != AMQP_RESPONSE_NORMAL) {
    return conn.rpc_error("channel.close", closed);
  }
  return out;
}

Result<std::size_t> AmqpQueue::drain() {
  auto c = connection();
  if (!c) {
    return conf::unexpected(c.error());
  }
  Connection& conn = **c;
  std::size_t n = 0;
  for (const char* q : {kAmqpQueue, kAmqpRetryQueue, kAmqpParkedQueue}) {
    auto r = conn.check(amqp_queue_purge(conn.state, kWork, amqp_cstring_bytes(q)),
                        std::string("purging ") + q);
    if (!r) {
      return conf::unexpected(r.error());
    }
    n += (*r)->message_count;
  }
  return n;
}

}  // namespace installer
