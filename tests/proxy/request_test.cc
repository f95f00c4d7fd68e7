// The request state machine without sockets: a recording Exchange stands for the connection and
// a scripted Origin for the upstream (the same as tests/proxy/fetch_test.cc), a manual clock for
// time. Each scenario: a client request in, the upstream requests it causes, the reply out.
#include <event2/buffer.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <condition_variable>
#include <deque>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>

#include "cache/store.h"
#include "conf/clock.h"
#include "conf/config.h"
#include "proxy/fetch.h"
#include "proxy/fill.h"
#include "proxy/hot_cache.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "proxy/request.h"
#include "proxy/services.h"
#include "tests/proxy/scripted_origin.h"
#include "tests/proxy/test_store.h"

namespace proxy {
namespace {

namespace fs = std::filesystem;

// What the Request said to its connection, collected on the worker loop.
struct Reply {
  int status = 0;
  Headers headers;
  std::string body;
  bool aborted = false;
  std::string header(std::string_view name) const {
    const std::string* v = find_field(headers, name);
    return v ? *v : std::string();
  }
};

class RecordingExchange : public Exchange {
 public:
  RecordingExchange(EventLoop& loop, std::string method, std::string target, Headers fields)
      : loop_(loop) {
    head_.method = std::move(method);
    head_.target = std::move(target);
    head_.fields = std::move(fields);
  }
  void reply(int status, std::string_view, evbuffer* body) override {
    r_.status = status;
    take(body);
    done();
  }
  void start(int status, std::string_view) override { r_.status = status; }
  void send(evbuffer* chunk, void (*drained)(void*), void* arg) override {
    take(chunk);
    loop_.post([drained, arg] { drained(arg); });  // never from inside send()
  }
  void end() override { done(); }
  void abort() override {
    r_.aborted = true;
    done();
  }
  std::future<Reply> result() { return promise_.get_future(); }

 private:
  void take(evbuffer* b) {
    if (b == nullptr) {
      return;
    }
    // File segments (sendfile) can only be drained to a descriptor: write to a memory file.
    const int fd = ::memfd_create("reply", MFD_CLOEXEC);
    ASSERT_GE(fd, 0);
    while (evbuffer_get_length(b) > 0) {
      ASSERT_GT(evbuffer_write(b, fd), 0);
    }
    const off_t n = ::lseek(fd, 0, SEEK_CUR);
    std::string bytes(static_cast<std::size_t>(n), '\0');
    ASSERT_EQ(::pread(fd, bytes.data(), bytes.size(), 0), n);
    ::close(fd);
    r_.body += bytes;
  }
  void done() {
    r_.headers = out().fields();
    promise_.set_value(r_);
  }
  EventLoop& loop_;
  Reply r_;
  std::promise<Reply> promise_;
};

class RequestTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = make_temp_dir("tusk-request");
    conf::Upstream up;
    up.endpoint = "http://upstream.invalid";
    up.signature = conf::Signature::kNone;
    config_.upstreams["up"] = up;
    conf::Route route;
    route.prefix = "/b/";
    route.upstream = "up";
    route.bucket = "b";
    route.grace = std::chrono::seconds(60);
    config_.routes.push_back(route);
    store_ = open_test_store(dir_, clock_);
    ASSERT_NE(store_, nullptr);
    fills_ = std::make_unique<FillTable>(fetch_, *store_, metrics_,
                                         FillTable::Origins{{"up", std::shared_ptr<Origin>(&origin_, [](Origin*) {})}},
                                         FillTable::Options{dir_, 4}, clock_.clock());
    svc_ = std::make_unique<Services>(config_, *store_, *fills_, metrics_, nullptr,
                                      clock_.clock());
    origin_.set_retries(0);  // an upstream failure ends the fill at once
    fetch_.start();
    worker_.start();
  }
  void TearDown() override {
    worker_.stop();
    worker_.run_pending();
    fetch_.stop();
    fetch_.run_pending();
    svc_.reset();
    fills_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Starts a client request on the worker loop; the future is its reply.
  std::future<Reply> get(std::string target, Headers fields = {}, std::string method = "GET") {
    exchanges_.push_back(std::make_unique<RecordingExchange>(worker_, std::move(method),
                                                             std::move(target),
                                                             std::move(fields)));
    RecordingExchange* ex = exchanges_.back().get();
    auto f = ex->result();
    worker_.post([this, ex] { Request::handle(*ex, *svc_, worker_, hot_); });
    return f;
  }
  // Returns once the worker ran everything posted so far (a request parks or replies within
  // the call that starts it).
  void settle() {
    std::promise<void> done;
    worker_.post([&] { done.set_value(); });
    done.get_future().wait();
  }
  static Reply wait(std::future<Reply>& f) {
    if (f.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      ADD_FAILURE() << "no reply within 5 s";
      return Reply{};
    }
    return f.get();
  }
  // Answers upstream request `n` on the fetch loop.
  void answer(std::size_t n, int status, s3::HeaderList headers, std::string body) {
    ScriptedOrigin::Sent* s = origin_.request(n);
    ASSERT_NE(s, nullptr) << "request " << n << " was never sent";
    std::promise<void> done;
    fetch_.post([&] {
      if (*s->cancelled) {
        done.set_value();
        return;
      }
      s3::ResponseHead h;
      h.status = status;
      h.headers = std::move(headers);
      if (s->cb.on_head(h) &&
          (body.empty() || s->cb.on_data(std::span<const char>(body.data(), body.size())))) {
        s->cb.on_done({});
      }
      done.set_value();
    });
    done.get_future().wait();
  }
  void fail(std::size_t n, s3::Errc code) {
    ScriptedOrigin::Sent* s = origin_.request(n);
    ASSERT_NE(s, nullptr);
    std::promise<void> done;
    fetch_.post([&] {
      s->cb.on_done(conf::unexpected(s3::Error{code, 0, "", "scripted"}));
      done.set_value();
    });
    done.get_future().wait();
  }
  // Answers ranged request `n` with its bytes of "0123456789" (ETag "e", max-age=60).
  void answer_range(std::size_t n) {
    ScriptedOrigin::Sent* s = origin_.request(n);
    ASSERT_NE(s, nullptr) << "request " << n << " was never sent";
    ASSERT_TRUE(s->req.range.has_value());
    const std::uint64_t first = s->req.range->first;
    const std::uint64_t last = std::min<std::uint64_t>(s->req.range->last, 9);
    answer(n, 206,
           {{"Content-Range",
             "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/10"},
            {"Content-Length", std::to_string(last - first + 1)},
            {"ETag", "\"e\""},
            {"Cache-Control", "max-age=60"}},
           std::string("0123456789").substr(first, last - first + 1));
  }
  // Serves "0123456789" with max-age=60 through a cold miss (three ranged GETs of 4 bytes).
  void fill_object() {
    auto f = get("/b/k");
    for (std::size_t n = 0; n < 3; ++n) {
      answer_range(n);
    }
    Reply r = wait(f);
    ASSERT_EQ(r.status, 200);
    ASSERT_EQ(r.body, "0123456789");
    ASSERT_EQ(r.header("X-Cache"), "MISS");
    fills_->drain_disk();
    // The fill leaves the table once its marks are durable: wait for that.
    for (int i = 0; i < 500 && fills_->active() > 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  conf::ManualClock clock_{1'800'000'000};
  std::string dir_;
  conf::Config config_;
  EventLoop fetch_{"fetch-test"};
  EventLoop worker_{"worker-test"};
  HotCache hot_;
  Metrics metrics_;
  ScriptedOrigin origin_;
  std::unique_ptr<cache::Store> store_;
  std::unique_ptr<FillTable> fills_;
  std::unique_ptr<Services> svc_;
  std::vector<std::unique_ptr<RecordingExchange>> exchanges_;
};

TEST_F(RequestTest, ColdMissThenHit) {
  fill_object();
  auto f = get("/b/k");
  Reply r = wait(f);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "0123456789");
  EXPECT_EQ(r.header("X-Cache"), "HIT");
  EXPECT_EQ(origin_.count(), 3u);  // nothing more went upstream
}

TEST_F(RequestTest, HitAnswersRangesConditionalsAnd416FromTheEntry) {
  fill_object();
  auto range = get("/b/k", {{"Range", "bytes=2-4"}});
  Reply r = wait(range);
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, "234");
  EXPECT_EQ(r.header("Content-Range"), "bytes 2-4/10");
  auto inm = get("/b/k", {{"If-None-Match", "\"e\""}});
  EXPECT_EQ(wait(inm).status, 304);
  auto bad = get("/b/k", {{"Range", "bytes=50-60"}});
  r = wait(bad);
  EXPECT_EQ(r.status, 416);
  EXPECT_EQ(r.header("Content-Range"), "bytes */10");
  EXPECT_EQ(r.header("X-Cache"), "ERROR");
  EXPECT_EQ(origin_.count(), 3u);
}

TEST_F(RequestTest, StaleEntryIsRevalidatedOnceThenServedAsRevalidated) {
  fill_object();
  clock_.advance(61);  // max-age=60 has passed
  auto f = get("/b/k");
  ASSERT_NE(origin_.request(3), nullptr);
  EXPECT_EQ(origin_.request(3)->req.if_none_match, "\"e\"");
  answer(3, 304, {{"Cache-Control", "max-age=60"}}, "");
  Reply r = wait(f);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "0123456789");
  EXPECT_EQ(r.header("X-Cache"), "REVALIDATED");
  auto again = get("/b/k");
  EXPECT_EQ(wait(again).header("X-Cache"), "HIT");  // fresh again for 60 s
  EXPECT_EQ(origin_.count(), 4u);
}

TEST_F(RequestTest, UpstreamFailureServesTheStaleEntryWithinGrace) {
  fill_object();
  clock_.advance(61);
  auto f = get("/b/k");
  fail(3, s3::Errc::kServer);
  Reply r = wait(f);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("X-Cache"), "STALE");
  clock_.advance(120);  // beyond the 60 s grace
  auto late = get("/b/k");
  fail(4, s3::Errc::kServer);
  EXPECT_EQ(wait(late).status, 502);
}

TEST_F(RequestTest, UpstreamErrorsMapToStatuses) {
  auto missing = get("/b/missing");
  fail(0, s3::Errc::kNotFound);
  EXPECT_EQ(wait(missing).status, 404);
  auto slow = get("/b/slow");
  fail(1, s3::Errc::kTimeout);
  EXPECT_EQ(wait(slow).status, 504);
}

TEST_F(RequestTest, RequestsThatCannotBeServedGetTheirErrorBeforeAnyUpstreamRequest) {
  auto post = get("/b/k", {}, "POST");
  Reply r = wait(post);
  EXPECT_EQ(r.status, 405);
  EXPECT_EQ(r.header("Allow"), "GET, HEAD");
  auto unrouted = get("/elsewhere/k");
  EXPECT_EQ(wait(unrouted).status, 404);
  auto long_key = get("/b/" + std::string(1100, 'k'));
  EXPECT_EQ(wait(long_key).status, 414);
  EXPECT_EQ(origin_.count(), 0u);
}

TEST_F(RequestTest, SecondClientOfAColdObjectJoinsTheFill) {
  auto first = get("/b/k");
  ASSERT_NE(origin_.request(0), nullptr);
  auto second = get("/b/k", {{"Range", "bytes=8-9"}});
  settle();  // it has joined the fill
  for (std::size_t n = 0; n < 3; ++n) {
    answer_range(n);  // the second client's chunk is fetched first: it is urgent
  }
  EXPECT_EQ(wait(first).body, "0123456789");
  Reply r = wait(second);
  EXPECT_EQ(r.status, 206);
  EXPECT_EQ(r.body, "89");
  EXPECT_EQ(r.header("X-Cache"), "COALESCED");
  EXPECT_EQ(origin_.count(), 3u);
}

}  // namespace
}  // namespace proxy
