// Tests of installer/queue.cc (the RabbitMQ URI parser, a table), installer/queue_embedded.cc
// (FIFO, leases and redelivery after the taker dies, retry delays on an injected clock, park,
// list, drain, limits, corrupt records) and installer/queue_amqp.cc against brokers that
// misbehave (a port that closes at once, one that never answers): errors, never hangs.
// The real RabbitMQ is exercised by tests/integration/test_queue.py.
#include "installer/queue.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "cache/lmdb.h"
#include "installer/queue_amqp.h"
#include "installer/queue_embedded.h"

namespace installer {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

// --- parse_amqp_url ---------------------------------------------------------------------------

struct UrlCase {
  const char* url = "";
  bool ok = false;
  const char* user = "";
  const char* password = "";
  const char* host = "";
  int port = 0;
  const char* vhost = "";
};

TEST(AmqpUrl, Table) {
  const UrlCase cases[] = {
      {"amqp://u:p@h:1234/v", true, "u", "p", "h", 1234, "v"},
      {"amqp://u:p@h", true, "u", "p", "h", 5672, "/"},
      {"amqp://u:p@h/", true, "u", "p", "h", 5672, "/"},
      {"amqp://u:p@h:5673/%2F", true, "u", "p", "h", 5673, "/"},
      {"amqp://u:p@h/%2fprod", true, "u", "p", "h", 5672, "/prod"},
      {"amqp://h", true, "guest", "guest", "h", 5672, "/"},
      {"amqp://u@h", true, "u", "", "h", 5672, "/"},
      {"amqp://us%40er:p%3A%40ss@h:1/v%20x", true, "us@er", "p:@ss", "h", 1, "v x"},
      {"amqp://u:p@[::1]:5672/", true, "u", "p", "::1", 5672, "/"},
      {"amqp://u:p@[::1]/", true, "u", "p", "::1", 5672, "/"},
      {"amqp://u:p@127.0.0.1:65535", true, "u", "p", "127.0.0.1", 65535, "/"},
      {"", false},
      {"http://u:p@h/", false},
      {"amqps://u:p@h/", false},
      {"amqp://", false},
      {"amqp://u:p@", false},
      {"amqp://u:p@:5672/", false},
      {"amqp://u:p@h:/", false},
      {"amqp://u:p@h:0/", false},
      {"amqp://u:p@h:65536/", false},
      {"amqp://u:p@h:99999999999999999999/", false},
      {"amqp://u:p@h:12ab/", false},
      {"amqp://u:p@h:-1/", false},
      {"amqp://u:p@h/a/b", false},
      {"amqp://u:p@h/%zz", false},
      {"amqp://u:p@h/%2", false},
      {"amqp://u:p%@h/", false},
      {"amqp://u:p@x@h/", false},
      {"amqp://:p@h/", false},
      {"amqp://u:p@h/?heartbeat=5", false},
      {"amqp://u:p@h/#x", false},
      {"amqp://u:p@[::1/", false},
      {"amqp://u:p@[::1]x/", false},
      {"amqp://u:p@h /", false},
      {"amqp://u:p@h\n/", false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.url);
    auto u = parse_amqp_url(c.url);
    ASSERT_EQ(static_cast<bool>(u), c.ok) << (u ? "" : u.error().message);
    if (!c.ok) {
      EXPECT_EQ(u.error().code, Errc::kUsage);
      continue;
    }
    EXPECT_EQ(u->user, c.user);
    EXPECT_EQ(u->password, c.password);
    EXPECT_EQ(u->host, c.host);
    EXPECT_EQ(u->port, c.port);
    EXPECT_EQ(u->vhost, c.vhost);
  }
}

TEST(AmqpUrl, ErrorsNeverQuoteThePassword) {
  for (const char* url :
       {"amqp://u:Secr3tPw@h:port/", "amqp://u:Secr3tPw@h/a/b", "amqp://u:Secr3tPw@x@h/",
        "amqps://u:Secr3tPw@h/", "amqp://u:Secr3tPw%zz@h/", "amqp://u:p@Secr3tPw:99999/"}) {
    auto u = parse_amqp_url(url);
    ASSERT_FALSE(u) << url;
    EXPECT_EQ(u.error().message.find("Secr3tPw"), std::string::npos) << u.error().message;
  }
}

// --- the embedded queue -----------------------------------------------------------------------

TEST(QueueRecord, RoundTripAndDamage) {
  QueueRecord r;
  r.state = RecordState::kParked;
  r.attempts = 3;
  r.pid = 1234;
  r.pid_start = 987654321;
  r.not_before = 1700000000123;
  r.published = 1700000000000;
  r.error = "download failed";
  r.body = std::string("{\"identifier\":\"x\"}\0binary", 25);
  auto enc = encode_queue_record(r);
  auto back = decode_queue_record(enc);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->state, r.state);
  EXPECT_EQ(back->attempts, r.attempts);
  EXPECT_EQ(back->pid, r.pid);
  EXPECT_EQ(back->pid_start, r.pid_start);
  EXPECT_EQ(back->not_before, r.not_before);
  EXPECT_EQ(back->published, r.published);
  EXPECT_EQ(back->error, r.error);
  EXPECT_EQ(back->body, r.body);
  EXPECT_FALSE(decode_queue_record(""));
  EXPECT_FALSE(decode_queue_record("garbage"));
  EXPECT_FALSE(decode_queue_record(enc.substr(0, enc.size() - 1))) << "truncated";
  EXPECT_FALSE(decode_queue_record(enc + "x")) << "trailing bytes";
  auto v2 = enc;
  v2[1] = 2;
  EXPECT_FALSE(decode_queue_record(v2)) << "unknown version";
  auto bad_state = enc;
  bad_state[2] = 7;
  EXPECT_FALSE(decode_queue_record(bad_state));
  auto huge_len = enc;
  huge_len[huge_len.size() - r.body.size() - 4] = '\x7f';  // body length way past the end
  EXPECT_FALSE(decode_queue_record(huge_len));
}

class EmbeddedQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tusk-queue-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::unique_ptr<EmbeddedQueue> open(EmbeddedQueueOptions o = {}) {
    if (!o.now_ms) {
      o.now_ms = [this] { return now_.load(); };
    }
    o.poll = milliseconds(5);
    auto q = EmbeddedQueue::open(dir_.string(), std::move(o));
    EXPECT_TRUE(q) << q.error().message;
    return q ? std::move(*q) : nullptr;
  }

  static std::string event(const std::string& id) { return "{\"identifier\":\"" + id + "\"}"; }

  fs::path dir_;
  std::atomic<std::int64_t> now_{1'700'000'000'000};
};

TEST_F(EmbeddedQueueTest, FifoAckAndEmpty) {
  auto q = open();
  for (const char* id : {"a", "b", "c"}) {
    ASSERT_TRUE(q->publish(event(id)));
  }
  for (const char* id : {"a", "b", "c"}) {
    auto d = q->take(milliseconds(0));
    ASSERT_TRUE(d && *d);
    EXPECT_EQ((*d)->body, event(id));
    EXPECT_EQ((*d)->attempts, 0);
    ASSERT_TRUE(q->ack(**d));
  }
  auto none = q->take(milliseconds(30));
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  auto all = q->list();
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->empty());
  EXPECT_NE(q->describe().find(dir_.string()), std::string::npos);
}

TEST_F(EmbeddedQueueTest, SurvivesReopen) {
  {
    auto q = open();
    ASSERT_TRUE(q->publish(event("kept")));
  }
  auto q = open();
  auto d = q->take(milliseconds(0));
  ASSERT_TRUE(d && *d);
  EXPECT_EQ((*d)->body, event("kept"));
}

TEST_F(EmbeddedQueueTest, TakenIsInvisibleThenSettlingTwiceFails) {
  auto q = open();
  ASSERT_TRUE(q->publish(event("a")));
  ASSERT_TRUE(q->publish(event("b")));
  auto a = q->take(milliseconds(0));
  ASSERT_TRUE(a && *a);
  auto all = q->list();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].state, "taken");
  EXPECT_EQ((*all)[1].state, "ready");
  auto b = q->take(milliseconds(0));
  ASSERT_TRUE(b && *b);
  EXPECT_EQ((*b)->body, event("b")) << "a taken message is not delivered twice";
  ASSERT_TRUE(q->ack(**a));
  auto again = q->ack(**a);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::kUsage);
}

TEST_F(EmbeddedQueueTest, DeadTakerMeansRedelivery) {
  {
    auto q = open();
    ASSERT_TRUE(q->publish(event("crash")));
    ASSERT_TRUE(q->publish(event("after")));
  }
  // The child opens its own queue (never an env across fork), takes, and dies without settling.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto q = EmbeddedQueue::open(dir_.string());
    if (!q) ::_exit(2);
    auto d = (*q)->take(milliseconds(0));
    ::_exit(d && *d && (*d)->body == event("crash") ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto q = open();
  auto all = q->list();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].state, "ready") << "its taker is gone";
  auto d = q->take(milliseconds(0));
  ASSERT_TRUE(d && *d);
  EXPECT_EQ((*d)->body, event("crash")) << "delivered again, first in line";
  ASSERT_TRUE(q->ack(**d));
}

TEST_F(EmbeddedQueueTest, LiveTakerKeepsItsLeaseUntilKilled) {
  {
    auto q = open();
    ASSERT_TRUE(q->publish(event("held")));
  }
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    auto q = EmbeddedQueue::open(dir_.string());
    if (!q) ::_exit(2);
    auto d = (*q)->take(milliseconds(0));
    char ok = d && *d ? '1' : '0';
    (void)!::write(ready[1], &ok, 1);
    ::pause();
    ::_exit(0);
  }
  ::close(ready[1]);
  char ok = 0;
  ASSERT_EQ(::read(ready[0], &ok, 1), 1);
  ::close(ready[0]);
  ASSERT_EQ(ok, '1');
  {
    auto q = open();
    auto none = q->take(milliseconds(20));
    ASSERT_TRUE(none);
    EXPECT_FALSE(*none) << "the live child holds it";
    auto drained = q->drain();
    ASSERT_TRUE(drained);
    EXPECT_EQ(*drained, 0u) << "drain leaves what a live process holds";
  }
  ::kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  auto q = open();
  auto d = q->take(milliseconds(0));
  ASSERT_TRUE(d && *d);
  EXPECT_EQ((*d)->body, event("held"));
}

TEST_F(EmbeddedQueueTest, RetryWaitsForItsDelayAndCounts) {
  auto q = open();
  ASSERT_TRUE(q->publish(event("flaky")));
  auto d = q->take(milliseconds(0));
  ASSERT_TRUE(d && *d);
  ASSERT_TRUE(q->retry(**d, milliseconds(60'000), "HTTP 503"));
  auto all = q->list();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 1u);
  EXPECT_EQ((*all)[0].state, "delayed");
  EXPECT_EQ((*all)[0].attempts, 1);
  EXPECT_EQ((*all)[0].last_error, "HTTP 503");
  auto early = q->take(milliseconds(0));
  ASSERT_TRUE(early);
  EXPECT_FALSE(*early) << "not before its delay";
  now_ += 59'999;
  early = q->take(milliseconds(0));
  ASSERT_TRUE(early);
  EXPECT_FALSE(*early);
  now_ += 1;
  auto again = q->take(milliseconds(0));
  ASSERT_TRUE(again && *again);
  EXPECT_EQ((*again)->attempts, 1);
  EXPECT_EQ((*again)->body, event("flaky"));
}

TEST_F(EmbeddedQueueTest, TakeWaitsForAPublishFromAnotherProcess) {
  auto q = open();
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::this_thread::sleep_for(milliseconds(100));
    // A fresh process image is not needed: the child never touches the parent's env.
    auto other = EmbeddedQueue::open(dir_.string());
    ::_exit(other && (*other)->publish(event("late")) ? 0 : 2);
  }
  auto start = std::chrono::steady_clock::now();
  auto d = q->take(milliseconds(5000));
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(d && *d);
  EXPECT_EQ((*d)->body, event("late"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(3000));
}

TEST_F(EmbeddedQueueTest, ParkListDrain) {
  auto q = open();
  for (const char* id : {"p", "a", "b"}) {
    ASSERT_TRUE(q->publish(event(id)));
  }
  auto p = q->take(milliseconds(0));
  ASSERT_TRUE(p && *p);
  ASSERT_TRUE(q->park(**p, "checksum mismatch"));
  auto all = q->list();
  ASSERT_TRUE(all);
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0].body, event("a"));
  EXPECT_EQ((*all)[1].body, event("b"));
  EXPECT_EQ((*all)[2].body, event("p")) << "parked last";
  EXPECT_EQ((*all)[2].state, "parked");
  EXPECT_EQ((*all)[2].last_error, "checksum mismatch");
  auto a = q->take(milliseconds(0));
  ASSERT_TRUE(a && *a);
  EXPECT_EQ((*a)->body, event("a")) << "a parked message is never delivered";
  auto gone = q->park(**p, "twice");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Errc::kBusy) << "parked is not held by anyone";
  auto n = q->drain();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 2u) << "b and the parked p; a is held by this live process";
  ASSERT_TRUE(q->ack(**a));
  all = q->list();
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->empty());
}

TEST_F(EmbeddedQueueTest, BodyLimit) {
  auto q = open();
  EXPECT_TRUE(q->publish(std::string(kMaxQueueBody, 'x')));
  auto big = q->publish(std::string(kMaxQueueBody + 1, 'x'));
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::kFormat);
}

TEST_F(EmbeddedQueueTest, FullMapIsAClearErrorAndStaysUsable) {
  EmbeddedQueueOptions o;
  o.map_size = 4u << 20;
  auto q = open(o);
  Result<void> r;
  int published = 0;
  for (; published < 10; ++published) {
    r = q->publish(std::string(kMaxQueueBody - 100, 'x'));
    if (!r) break;
  }
  ASSERT_FALSE(r) << "a 4 MiB map cannot hold 10 MiB";
  EXPECT_EQ(r.error().code, Errc::kIo);
  EXPECT_NE(r.error().message.find("full"), std::string::npos) << r.error().message;
  auto n = q->drain();
  ASSERT_TRUE(n) << n.error().message;
  EXPECT_EQ(*n, static_cast<std::size_t>(published));
  EXPECT_TRUE(q->publish(event("room again")));
}

TEST_F(EmbeddedQueueTest, CorruptRecordIsAnErrorNotACrash) {
  {
    auto q = open();
    ASSERT_TRUE(q->publish(event("good")));
  }
  {
    // Overwrite message 1 through a separate env (the queue's is closed: one env per process).
    cache::lmdb::EnvOptions o;
    o.max_dbs = 2;
    o.map_size = 256u << 20;
    auto env = cache::lmdb::Env::open(dir_.string(), o);
    ASSERT_TRUE(env);
    auto txn = cache::lmdb::Txn::write(*env);
    ASSERT_TRUE(txn);
    auto dbi = txn->open_dbi("messages", false);
    ASSERT_TRUE(dbi);
    ASSERT_TRUE(txn->put(*dbi, std::string("\0\0\0\0\0\0\0\1", 8), "Q\1\0garbage"));
    ASSERT_TRUE(txn->commit());
  }
  auto q = open();
  auto all = q->list();
  ASSERT_FALSE(all);
  EXPECT_EQ(all.error().code, Errc::kFormat);
  EXPECT_NE(all.error().message.find("message 1 is corrupt"), std::string::npos);
  auto d = q->take(milliseconds(0));
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, Errc::kFormat);
  auto n = q->drain();
  ASSERT_TRUE(n);
  EXPECT_EQ(*n, 1u);
  ASSERT_TRUE(q->publish(event("next")));
  auto next = q->take(milliseconds(0));
  ASSERT_TRUE(next && *next);
  EXPECT_EQ((*next)->body, event("next"));
}

TEST_F(EmbeddedQueueTest, OpenQueueWithoutUrlIsEmbeddedBesideTheRegistry) {
  auto q = open_queue("", dir_.string());
  ASSERT_TRUE(q) << q.error().message;
  EXPECT_EQ((*q)->describe(), "embedded queue " + (dir_ / "queue").string());
  ASSERT_TRUE((*q)->publish(event("x")));
  EXPECT_TRUE(fs::exists(dir_ / "queue" / "data.mdb"));
  auto bad = open_queue("amqp://u:pw@h:0/", dir_.string());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::kUsage);
}

// --- RabbitMQ against brokers that misbehave --------------------------------------------------

// A listener on 127.0.0.1 whose accepted connections are closed at once (`close_at_once`) or
// held silently until the fake is destroyed.
class FakeBroker {
 public:
  explicit FakeBroker(bool close_at_once) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, 8), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this, close_at_once] {
      for (;;) {
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        if (close_at_once) {
          ::close(c);
        } else {
          held_.push_back(c);
        }
      }
    });
  }
  ~FakeBroker() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
    for (int c : held_) ::close(c);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> held_;
  std::thread thread_;
};

AmqpUrl local(int port) {
  AmqpUrl u;
  u.user = "tusk";
  u.password = "Secr3tPw";
  u.host = "127.0.0.1";
  u.port = port;
  return u;
}

TEST(AmqpQueueErrors, ClosedAtOnce) {
  FakeBroker fake(/*close_at_once=*/true);
  auto start = std::chrono::steady_clock::now();
  auto q = AmqpQueue::open(local(fake.port()));
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code, Errc::kNetwork);
  EXPECT_NE(q.error().message.find("127.0.0.1:" + std::to_string(fake.port())), std::string::npos)
      << q.error().message;
  EXPECT_EQ(q.error().message.find("Secr3tPw"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(AmqpQueueErrors, SilentBrokerTimesOut) {
  FakeBroker fake(/*close_at_once=*/false);
  AmqpOptions o;
  o.io_timeout = milliseconds(300);
  auto start = std::chrono::steady_clock::now();
  auto q = AmqpQueue::open(local(fake.port()), o);
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code, Errc::kNetwork);
  EXPECT_EQ(q.error().message.find("Secr3tPw"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3)) << q.error().message;
}

TEST(AmqpQueueErrors, NobodyListening) {
  int port = 0;
  {
    FakeBroker fake(true);
    port = fake.port();
  }
  auto q = AmqpQueue::open(local(port));
  ASSERT_FALSE(q);
  EXPECT_EQ(q.error().code, Errc::kNetwork);
  EXPECT_NE(q.error().message.find("cannot connect"), std::string::npos) << q.error().message;
}

}  // namespace
}  // namespace installer
