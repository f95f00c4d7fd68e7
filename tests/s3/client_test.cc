// Tests of s3/client.cc against an in-process evhttp server (its own thread and event_base) that
// records every request and misbehaves on demand: S3 XML errors, a stall after the headers, a
// short body, a 64 MiB body, slow answers. The client runs on the test thread's own base.
// Tricky: the server thread's loop is stopped from the test thread, so libevent's pthread locking
// is switched on before any base exists.
#include "s3/client.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace s3 {
namespace {

constexpr const char* kEmptyHash =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr const char* kSecret = "super/secret+key=";
constexpr std::size_t kBig = 64u << 20;

char pattern(std::size_t i) { return static_cast<char>('a' + (i * 7 + i / 4096) % 26); }

// Built once, before the first request (see ClientTest): building it inside the server's handler
// would hold the answer back longer than a sanitizer build's patience.
const std::string& big_body() {
  static const std::string body = [] {
    std::string b(kBig, '\0');
    for (std::size_t i = 0; i < kBig; ++i) {
      b[i] = pattern(i);
    }
    return b;
  }();
  return body;
}

struct Seen {
  std::string method;
  std::string uri;
  HeaderList headers;
  std::string body;
  std::string header(std::string_view name) const {
    for (const auto& [n, v] : headers) {
      if (strcasecmp(n.c_str(), std::string(name).c_str()) == 0) {
        return v;
      }
    }
    return "<absent>";
  }
};

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

class TestServer {
 public:
  TestServer() {
    static const int threads = evthread_use_pthreads();  // once per process
    (void)threads;
    // Tests cancel transfers mid-body: curl closes, and this server's next write of the rest
    // of the body must fail with EPIPE, not kill the test binary (tuskd ignores SIGPIPE in
    // main for the same reason; libevent writes without MSG_NOSIGNAL).
    static const auto sigpipe = std::signal(SIGPIPE, SIG_IGN);
    (void)sigpipe;
    base_ = event_base_new();
    http_ = evhttp_new(base_);
    evhttp_set_allowed_methods(
        http_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_gencb(http_, &TestServer::on_request, this);
    evhttp_bound_socket* sock = evhttp_bind_socket_with_handle(http_, "127.0.0.1", 0);
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    getsockname(evhttp_bound_socket_get_fd(sock), reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { event_base_dispatch(base_); });
  }
  ~TestServer() {
    // loopexit, not loopbreak: it queues an event, so it also works when the thread has not yet
    // entered its loop (a loopbreak before dispatch is forgotten).
    event_base_loopexit(base_, nullptr);
    thread_.join();
    evhttp_free(http_);
    event_base_free(base_);
  }
  int port() const { return port_; }
  std::string origin() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<Seen> seen() {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  int max_slow_in_flight() const { return max_slow_.load(); }

 private:
  static void reply(evhttp_request* req, int code, const char* reason, std::string_view body,
                    const char* type = "application/xml") {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evbuffer* b = evbuffer_new();
    evbuffer_add(b, body.data(), body.size());
    evhttp_send_reply(req, code, reason, b);
    evbuffer_free(b);
  }
  static std::string xml_error(const char* code, const char* message) {
    return std::string("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>") + code +
           "</Code><Message>" + message + "</Message><RequestId>1</RequestId></Error>";
  }

  static void on_request(evhttp_request* req, void* arg) {
    auto* self = static_cast<TestServer*>(arg);
    Seen s;
    switch (evhttp_request_get_command(req)) {
      case EVHTTP_REQ_GET:
        s.method = "GET";
        break;
      case EVHTTP_REQ_HEAD:
        s.method = "HEAD";
        break;
      case EVHTTP_REQ_PUT:
        s.method = "PUT";
        break;
      case EVHTTP_REQ_DELETE:
        s.method = "DELETE";
        break;
      default:
        s.method = "?";
    }
    s.uri = evhttp_request_get_uri(req);
    evkeyvalq* in = evhttp_request_get_input_headers(req);
    for (evkeyval* kv = in->tqh_first; kv != nullptr; kv = kv->next.tqe_next) {
      s.headers.emplace_back(kv->key, kv->value);
    }
    evbuffer* body = evhttp_request_get_input_buffer(req);
    s.body.resize(evbuffer_get_length(body));
    evbuffer_copyout(body, s.body.data(), s.body.size());
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->seen_.push_back(s);
    }
    std::string path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    evkeyvalq* out = evhttp_request_get_output_headers(req);

    if (ends_with(path, "/sig")) {
      reply(req, 403, "Forbidden",
            xml_error("SignatureDoesNotMatch",
                      "The request signature we calculated does not match the signature you "
                      "provided. Check your key and signing method."));
    } else if (ends_with(path, "/denied")) {
      reply(req, 403, "Forbidden", xml_error("AccessDenied", "Access Denied"));
    } else if (ends_with(path, "/missing")) {
      reply(req, 404, "Not Found", xml_error("NoSuchKey", "The specified key does not exist."));
    } else if (ends_with(path, "/changed")) {
      reply(req, 412, "Precondition Failed",
            xml_error("PreconditionFailed", "At least one of the preconditions failed"));
    } else if (ends_with(path, "/hostile")) {
      // An upstream (or something in between) whose error text would forge log lines.
      reply(req, 500, "Internal Server Error",
            xml_error(
                "Evil\nCode",
                ("line one\n2026-01-01 [error] forged\x1b[2J\\" + std::string(2000, 'A')).c_str()));
    } else if (ends_with(path, "/nonauth")) {
      evhttp_add_header(out, "X-Origin", "1");
      reply(req, 203, "Non-Authoritative Information", "from a mirror", "text/plain");
    } else if (ends_with(path, "/bigerror")) {
      reply(req, 500, "Internal Server Error", std::string(70 * 1024, 'e'), "text/plain");
    } else if (ends_with(path, "/broken")) {
      reply(req, 503, "Service Unavailable", "not xml at all", "text/plain");
    } else if (ends_with(path, "/redirect")) {
      evhttp_add_header(out, "Location", "http://elsewhere.example.com/b/redirect");
      reply(req, 301, "Moved Permanently", "");
    } else if (ends_with(path, "/stall")) {
      // Headers, then silence: the client must give up after stall_timeout.
      evhttp_add_header(out, "Content-Length", "10");
      evhttp_send_reply_start(req, 200, "OK");
      // Ends the reply long after the client gave up, which frees the request (libevent hands a
      // request whose client vanished to us until we finish it).
      timeval later{1, 500000};
      event_base_once(
          self->base_, -1, EV_TIMEOUT,
          [](evutil_socket_t, short, void* r) {
            evhttp_send_reply_end(static_cast<evhttp_request*>(r));
          },
          req, &later);
    } else if (ends_with(path, "/short")) {
      // Promises 100 bytes, sends 10, closes.
      evhttp_add_header(out, "Content-Length", "100");
      evhttp_add_header(out, "Connection", "close");
      evhttp_send_reply_start(req, 200, "OK");
      evbuffer* b = evbuffer_new();
      evbuffer_add(b, "0123456789", 10);
      evhttp_send_reply_chunk(req, b);
      evbuffer_free(b);
      evhttp_send_reply_end(req);
    } else if (ends_with(path, "/big")) {
      reply(req, 200, "OK", big_body(), "application/octet-stream");
    } else if (ends_with(path, "/slow")) {
      // Answer after 200 ms, so concurrent requests overlap at the server.
      int now = ++self->slow_in_flight_;
      int prev = self->max_slow_.load();
      while (now > prev && !self->max_slow_.compare_exchange_weak(prev, now)) {
      }
      timeval tv{0, 200000};
      event_base_once(
          self->base_, -1, EV_TIMEOUT,
          [](evutil_socket_t, short, void* r) {
            auto* req = static_cast<evhttp_request*>(r);
            reply(req, 200, "OK", "slow", "text/plain");
          },
          req, &tv);
      event_base_once(
          self->base_, -1, EV_TIMEOUT,
          [](evutil_socket_t, short, void* me) { --static_cast<TestServer*>(me)->slow_in_flight_; },
          self, &tv);
    } else if (s.method == "PUT") {
      evhttp_add_header(out, "ETag", "\"put-etag\"");
      reply(req, 200, "OK", "");
    } else if (s.method == "DELETE") {
      evhttp_send_reply(req, 204, "No Content", nullptr);
    } else {
      evhttp_add_header(out, "ETag", "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"");
      evhttp_add_header(out, "Last-Modified", "Tue, 27 Mar 2007 19:36:42 GMT");
      reply(req, 200, "OK", "hello world", "text/plain");
    }
  }

  event_base* base_ = nullptr;
  evhttp* http_ = nullptr;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::vector<Seen> seen_;
  std::atomic<int> slow_in_flight_{0};
  std::atomic<int> max_slow_{0};
};

// Runs `base` until `pred` holds or `seconds` pass; a ticking event keeps the loop turning.
bool run_until(event_base* base, const std::function<bool()>& pred, double seconds = 10) {
  event* tick = event_new(
      base, -1, EV_PERSIST, [](evutil_socket_t, short, void*) {}, nullptr);
  timeval tv{0, 20000};
  event_add(tick, &tv);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!pred() && std::chrono::steady_clock::now() < deadline) {
    event_base_loop(base, EVLOOP_ONCE);
  }
  event_free(tick);
  return pred();
}

struct Outcome {
  int head_calls = 0;
  ResponseHead head;
  std::string body;
  int data_calls = 0;
  int done_calls = 0;
  std::optional<conf::Result<void, Error>> done;
};

Callbacks recorder(Outcome& o) {
  Callbacks cb;
  cb.on_head = [&o](const ResponseHead& h) {
    ++o.head_calls;
    o.head = h;
    return true;
  };
  cb.on_data = [&o](std::span<const char> d) {
    ++o.data_calls;
    o.body.append(d.data(), d.size());
    return true;
  };
  cb.on_done = [&o](conf::Result<void, Error> r) {
    ++o.done_calls;
    o.done = std::move(r);
  };
  return cb;
}

class ClientTest : public ::testing::Test {
 protected:
  ClientTest() : base_(event_base_new()) { big_body(); }
  ~ClientTest() override {
    client_.reset();
    event_base_free(base_);
  }

  conf::Upstream upstream(conf::Signature sig, std::string path = "") {
    conf::Upstream u;
    u.name = "test";
    u.endpoint = server_.origin() + path;
    u.signature = sig;
    u.region = "eucalyptus";
    u.access_key = "AKIDTEST";
    u.secret_key = kSecret;
    u.connect_timeout = conf::Millis(2000);
    u.stall_timeout = conf::Millis(10000);
    return u;
  }
  Client& client(conf::Signature sig = conf::Signature::kV4, std::string path = "") {
    auto c = Client::create(base_, upstream(sig, std::move(path)));
    EXPECT_TRUE(c.has_value());
    client_ = std::move(c.value());
    return *client_;
  }
  // An https:// endpoint on the plain HTTP test server: curl connects, then TLS fails.
  Client& https_client(std::string ca_file = "") {
    conf::Upstream u = upstream(conf::Signature::kV4);
    u.endpoint = "https://127.0.0.1:" + std::to_string(server_.port());
    u.ca_file = std::move(ca_file);
    client_ = std::move(Client::create(base_, u).value());
    return *client_;
  }
  Outcome fetch(Request req) {
    Outcome o;
    Transfer t = client_->start(std::move(req), recorder(o));
    EXPECT_TRUE(run_until(base_, [&] { return o.done_calls > 0; }));
    return o;
  }
  static Request get(std::string key, Method m = Method::kGet) {
    Request r;
    r.method = m;
    r.bucket = "b";
    r.key = std::move(key);
    return r;
  }

  TestServer server_;
  event_base* base_;
  std::unique_ptr<Client> client_;
};

// Recomputes the V4 signature from what the server received: proves the signed Host is the one
// curl sent and that every signed header arrived unchanged.
std::string resign_v4(const Seen& s, const std::vector<std::string>& names,
                      const std::string& path) {
  V4Input in;
  in.method = s.method;
  in.canonical_uri = path;
  for (const auto& n : names) {
    in.headers.emplace_back(n, s.header(n));
  }
  in.payload_hash = s.header("x-amz-content-sha256");
  in.region = "eucalyptus";
  in.amz_date = s.header("x-amz-date");
  return v4_sign(Credentials{"AKIDTEST", kSecret}, in).authorization;
}

TEST_F(ClientTest, GetWithBodyHeadersAndV4Signature) {
  client(conf::Signature::kV4);
  Outcome o = fetch(get("dir/my key+1@x.txt"));
  ASSERT_TRUE(o.done && o.done->has_value()) << o.done->error().message;
  EXPECT_EQ(o.head_calls, 1);
  EXPECT_EQ(o.head.status, 200);
  EXPECT_EQ(o.head.header("etag"), "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"");
  EXPECT_EQ(o.head.content_length(), 11u);
  EXPECT_EQ(o.body, "hello world");
  EXPECT_EQ(client_->requests_started(), 1u);

  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 1u);
  const Seen& s = seen[0];
  EXPECT_EQ(s.method, "GET");
  EXPECT_EQ(s.uri, "/b/dir/my%20key%2B1%40x.txt");
  EXPECT_EQ(s.header("x-amz-content-sha256"), kEmptyHash);
  EXPECT_EQ(s.header("x-amz-date").size(), 16u);
  EXPECT_EQ(s.header("Date"), "<absent>");
  EXPECT_EQ(s.header("Accept-Encoding"), "<absent>");  // bytes are cached exactly as stored
  EXPECT_EQ(s.header("Authorization").rfind("AWS4-HMAC-SHA256 Credential=AKIDTEST/", 0), 0u);
  EXPECT_EQ(s.header("Authorization"),
            resign_v4(s, {"host", "x-amz-content-sha256", "x-amz-date"}, s.uri));
  EXPECT_EQ(s.header("Host"), "127.0.0.1:" + std::to_string(server_.port()));
}

TEST_F(ClientTest, HeadHasNoBody) {
  client();
  Outcome o = fetch(get("k", Method::kHead));
  ASSERT_TRUE(o.done && o.done->has_value());
  EXPECT_EQ(o.head_calls, 1);
  EXPECT_EQ(o.head.status, 200);
  EXPECT_EQ(o.head.header("ETag"), "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"");
  EXPECT_EQ(o.data_calls, 0);
  auto seen = server_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "HEAD");
  EXPECT_EQ(seen[0].header("x-amz-content-sha256"), kEmptyHash);
}

TEST_F(ClientTest, RangeAndConditionalsAreSentAndSigned) {
  client();
  Request r = get("k");
  r.range = ByteRange{8388608, 16777215};
  r.if_match = "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"";
  r.if_none_match = "\"other\"";
  r.if_modified_since = "Tue, 27 Mar 2007 19:36:42 GMT";
  Outcome o = fetch(r);
  ASSERT_TRUE(o.done && o.done->has_value());
  auto s = server_.seen().at(0);
  EXPECT_EQ(s.header("Range"), "bytes=8388608-16777215");
  EXPECT_EQ(s.header("If-Match"), "\"5eb63bbbe01eeed093cb22bb8f5acdc3\"");
  EXPECT_EQ(s.header("If-None-Match"), "\"other\"");
  EXPECT_EQ(s.header("If-Modified-Since"), "Tue, 27 Mar 2007 19:36:42 GMT");
  EXPECT_EQ(s.header("Authorization"),
            resign_v4(s,
                      {"host", "if-match", "if-modified-since", "if-none-match", "range",
                       "x-amz-content-sha256", "x-amz-date"},
                      "/b/k"));
}

TEST_F(ClientTest, V2SendsDateOnlyAndSignsBucketKey) {
  client(conf::Signature::kV2, "/services/Walrus");
  Outcome o = fetch(get("my image.tgz"));
  ASSERT_TRUE(o.done && o.done->has_value()) << o.done->error().message;
  auto s = server_.seen().at(0);
  EXPECT_EQ(s.uri, "/services/Walrus/b/my%20image.tgz");
  EXPECT_EQ(s.header("x-amz-date"), "<absent>");
  EXPECT_EQ(s.header("x-amz-content-sha256"), "<absent>");
  ASSERT_NE(s.header("Date"), "<absent>");
  EXPECT_GT(parse_http_date(s.header("Date")), 0);
  V2Input in;
  in.method = "GET";
  in.date = s.header("Date");
  in.resource = "/b/my%20image.tgz";
  EXPECT_EQ(s.header("Authorization"), v2_authorization(Credentials{"AKIDTEST", kSecret}, in));
  EXPECT_EQ(s.header("Authorization").rfind("AWS AKIDTEST:", 0), 0u);
}

TEST_F(ClientTest, AnonymousSendsNoAuth) {
  client(conf::Signature::kNone);
  Outcome o = fetch(get("k"));
  ASSERT_TRUE(o.done && o.done->has_value());
  auto s = server_.seen().at(0);
  EXPECT_EQ(s.header("Authorization"), "<absent>");
  EXPECT_EQ(s.header("x-amz-date"), "<absent>");
  EXPECT_EQ(s.header("Date"), "<absent>");
}

TEST_F(ClientTest, PutBodyAndFileWithSignedExtraHeaders) {
  client();
  Request r = get("manifests/a.manifest.xml", Method::kPut);
  r.body = "<manifest/>";
  r.extra_headers = {{"x-amz-acl", "public-read"}, {"Content-Type", "application/xml"}};
  Outcome o = fetch(r);
  ASSERT_TRUE(o.done && o.done->has_value()) << o.done->error().message;
  EXPECT_EQ(o.head.header("ETag"), "\"put-etag\"");
  auto s = server_.seen().at(0);
  EXPECT_EQ(s.method, "PUT");
  EXPECT_EQ(s.body, "<manifest/>");
  EXPECT_EQ(s.header("Content-Length"), "11");
  EXPECT_EQ(s.header("Expect"), "<absent>");
  EXPECT_EQ(s.header("x-amz-content-sha256"), sha256_hex("<manifest/>"));
  EXPECT_EQ(
      s.header("Authorization"),
      resign_v4(s, {"content-type", "host", "x-amz-acl", "x-amz-content-sha256", "x-amz-date"},
                "/b/manifests/a.manifest.xml"));

  char path[] = "/tmp/tusk-put-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  std::string content(300000, 'z');
  ASSERT_EQ(write(fd, content.data(), content.size()), static_cast<ssize_t>(content.size()));
  close(fd);
  Request f = get("big.part", Method::kPut);
  f.body_file = path;
  o = fetch(f);
  std::remove(path);
  ASSERT_TRUE(o.done && o.done->has_value()) << o.done->error().message;
  s = server_.seen().at(1);
  EXPECT_EQ(s.body, content);
  EXPECT_EQ(s.header("x-amz-content-sha256"), "UNSIGNED-PAYLOAD");

  Request missing = get("x", Method::kPut);
  missing.body_file = "/nonexistent/tusk-body";
  o = fetch(missing);
  ASSERT_TRUE(o.done && !o.done->has_value());
  EXPECT_EQ(server_.seen().size(), 2u);
}

TEST_F(ClientTest, DeleteIsSignedAndSendsNoBody) {
  client();
  Outcome o = fetch(get("old/a.part.00", Method::kDelete));
  ASSERT_TRUE(o.done && o.done->has_value()) << o.done->error().message;
  EXPECT_EQ(o.head.status, 204);
  auto s = server_.seen().at(0);
  EXPECT_EQ(s.method, "DELETE");
  EXPECT_EQ(s.body, "");
  EXPECT_EQ(s.header("x-amz-content-sha256"), sha256_hex(""));
  EXPECT_EQ(s.header("Authorization"),
            resign_v4(s, {"host", "x-amz-content-sha256", "x-amz-date"}, "/b/old/a.part.00"));
}

TEST_F(ClientTest, S3XmlErrorsAreClassified) {
  client();
  struct Case {
    const char* key;
    Method method;
    Errc code;
    int status;
    const char* s3_code;
    const char* message_prefix;
  } cases[] = {
      {"sig", Method::kGet, Errc::kAuth, 403, "SignatureDoesNotMatch",
       "upstream 403 SignatureDoesNotMatch: The request signature we calculated does not match"},
      {"denied", Method::kGet, Errc::kForbidden, 403, "AccessDenied",
       "upstream 403 AccessDenied: Access Denied"},
      {"missing", Method::kGet, Errc::kNotFound, 404, "NoSuchKey", "upstream 404 NoSuchKey"},
      {"missing", Method::kHead, Errc::kNotFound, 404, "", "upstream 404 Not Found"},
      {"changed", Method::kGet, Errc::kPreconditionFailed, 412, "PreconditionFailed",
       "upstream 412 PreconditionFailed"},
      {"broken", Method::kGet, Errc::kServer, 503, "", "upstream 503 Service Unavailable"},
      {"redirect", Method::kGet, Errc::kHttp, 301, "", "upstream 301 Moved Permanently"},
  };
  for (const auto& c : cases) {
    Outcome o = fetch(get(c.key, c.method));
    ASSERT_TRUE(o.done && !o.done->has_value()) << c.key;
    const Error& e = o.done->error();
    EXPECT_EQ(e.code, c.code) << c.key << ": " << e.message;
    EXPECT_EQ(e.http_status, c.status) << c.key;
    EXPECT_EQ(e.s3_code, c.s3_code) << c.key;
    EXPECT_EQ(e.message.rfind(c.message_prefix, 0), 0u) << e.message;
    EXPECT_EQ(e.message.find(kSecret), std::string::npos);
    EXPECT_EQ(e.message.find("Signature="), std::string::npos);
    EXPECT_EQ(o.head_calls, 0) << c.key;  // error answers never reach on_head
    EXPECT_EQ(o.data_calls, 0) << c.key;
    EXPECT_EQ(o.done_calls, 1);
  }
  Outcome o = fetch(get("redirect"));
  EXPECT_NE(o.done->error().message.find("http://elsewhere.example.com/b/redirect"),
            std::string::npos);
  EXPECT_EQ(server_.seen().size(), 8u);  // the redirect was not followed
}

TEST_F(ClientTest, QueryIsSentEncodedAndSignedForwardHeadersAreNot) {
  client();
  Request r = get("k");
  r.query = {{"versionId", "3 x/y"}, {"response-content-type", "text/plain"}, {"flag", ""}};
  r.forward_headers = {{"X-Request-Id", "req-1"}, {"traceparent", "00-ab-cd-01"}};
  Outcome o = fetch(r);
  ASSERT_TRUE(o.done && o.done->has_value()) << o.done->error().message;
  auto s = server_.seen().at(0);
  EXPECT_EQ(s.uri, "/b/k?versionId=3%20x%2Fy&response-content-type=text%2Fplain&flag=");
  EXPECT_EQ(s.header("X-Request-Id"), "req-1");
  EXPECT_EQ(s.header("traceparent"), "00-ab-cd-01");
  V4Input in;
  in.method = "GET";
  in.canonical_uri = "/b/k";
  in.query = r.query;
  for (const char* n : {"host", "x-amz-content-sha256", "x-amz-date"}) {
    in.headers.emplace_back(n, s.header(n));
  }
  in.payload_hash = s.header("x-amz-content-sha256");
  in.region = "eucalyptus";
  in.amz_date = s.header("x-amz-date");
  // The forwarded headers are not among the signed ones: a proxy between may rewrite them.
  EXPECT_EQ(s.header("Authorization"), v4_sign(Credentials{"AKIDTEST", kSecret}, in).authorization);
}

TEST_F(ClientTest, V2SignsTheSubresourcesOfTheQuery) {
  client(conf::Signature::kV2, "/services/Walrus");
  Request r = get("k");
  r.query = {{"versionId", "7"}, {"other", "x"}, {"acl", ""}};
  Outcome o = fetch(r);
  ASSERT_TRUE(o.done && o.done->has_value()) << o.done->error().message;
  auto s = server_.seen().at(0);
  V2Input in;
  in.method = "GET";
  in.date = s.header("Date");
  in.resource = "/b/k?acl&versionId=7";  // sorted; "other" is not a sub-resource
  EXPECT_EQ(s.header("Authorization"), v2_authorization(Credentials{"AKIDTEST", kSecret}, in));
}

TEST_F(ClientTest, AnUnsignedUpstreamsOtherAnswersArriveWholeAsErrors) {
  client(conf::Signature::kNone);
  Outcome o = fetch(get("nonauth"));
  ASSERT_TRUE(o.done && !o.done->has_value());
  const Error& e = o.done->error();
  EXPECT_EQ(e.http_status, 203);
  ASSERT_TRUE(e.answer);
  EXPECT_EQ(e.answer->body, "from a mirror");
  EXPECT_EQ(e.answer->reason, "Non-Authoritative Information");
  EXPECT_EQ(e.answer->head.header("X-Origin"), "1");
  EXPECT_EQ(o.head_calls, 0);

  o = fetch(get("missing"));
  ASSERT_TRUE(o.done && !o.done->has_value() && o.done->error().answer);
  EXPECT_EQ(o.done->error().code, Errc::kNotFound);
  EXPECT_NE(o.done->error().answer->body.find("NoSuchKey"), std::string::npos);

  o = fetch(get("bigerror"));  // over 64 KiB: not whole, never passed on
  ASSERT_TRUE(o.done && !o.done->has_value());
  EXPECT_EQ(o.done->error().http_status, 500);
  EXPECT_FALSE(o.done->error().answer);
}

TEST_F(ClientTest, ASignedUpstreamsTwoHundredsAreAnswers) {
  client();
  Outcome o = fetch(get("nonauth"));
  ASSERT_TRUE(o.done && o.done->has_value());
  EXPECT_EQ(o.head_calls, 1);
}

TEST_F(ClientTest, UpstreamTextInErrorsIsEscapedAndBounded) {
  client();
  Outcome o = fetch(get("hostile"));
  ASSERT_TRUE(o.done && !o.done->has_value());
  const Error& e = o.done->error();
  EXPECT_EQ(e.code, Errc::kServer);
  EXPECT_EQ(e.s3_code, "Evil\nCode");  // the raw code stays available to the caller
  EXPECT_EQ(e.message.find('\n'), std::string::npos) << e.message;
  EXPECT_EQ(e.message.find('\x1b'), std::string::npos) << e.message;
  EXPECT_NE(e.message.find("Evil\\x0ACode: line one\\x0A2026-01-01"), std::string::npos)
      << e.message;
  EXPECT_NE(e.message.find("...(+"), std::string::npos) << e.message;
  EXPECT_LT(e.message.size(), 600u) << e.message;
}

TEST_F(ClientTest, BadCaFileIsAPermanentTlsError) {
  // curl connects, then cannot load the CA bundle: no retry can fix that.
  https_client("/nonexistent/tusk-test-ca.pem");
  Outcome o = fetch(get("k"));
  ASSERT_TRUE(o.done && !o.done->has_value());
  const Error& e = o.done->error();
  EXPECT_EQ(e.code, Errc::kTls) << e.message;
  EXPECT_EQ(e.message.rfind("TLS certificate verification failed for 127.0.0.1:" +
                                std::to_string(server_.port()) + ": ",
                            0),
            0u)
      << e.message;
  EXPECT_EQ(o.head_calls, 0);
}

TEST_F(ClientTest, BrokenTlsHandshakeIsNotPermanent) {
  // A plain HTTP server answers the ClientHello with garbage: a handshake failure that says
  // nothing about certificates stays kRefused (retried by fills).
  https_client();
  Outcome o = fetch(get("k"));
  ASSERT_TRUE(o.done && !o.done->has_value());
  EXPECT_EQ(o.done->error().code, Errc::kRefused) << o.done->error().message;
}

TEST(Classify, Table) {
  EXPECT_EQ(classify(404, ""), Errc::kNotFound);
  EXPECT_EQ(classify(403, "NoSuchBucket"), Errc::kNotFound);
  EXPECT_EQ(classify(403, ""), Errc::kForbidden);
  EXPECT_EQ(classify(403, "InvalidAccessKeyId"), Errc::kAuth);
  EXPECT_EQ(classify(403, "RequestTimeTooSkewed"), Errc::kAuth);
  EXPECT_EQ(classify(400, "AuthorizationHeaderMalformed"), Errc::kAuth);
  EXPECT_EQ(classify(412, ""), Errc::kPreconditionFailed);
  EXPECT_EQ(classify(416, "InvalidRange"), Errc::kRangeNotSatisfiable);
  EXPECT_EQ(classify(500, "InternalError"), Errc::kServer);
  EXPECT_EQ(classify(400, "InvalidArgument"), Errc::kHttp);
  EXPECT_STREQ(errc_name(Errc::kPreconditionFailed), "precondition_failed");
  EXPECT_STREQ(errc_name(Errc::kCancelled), "cancelled");
  EXPECT_STREQ(errc_name(Errc::kTls), "tls");
}

TEST(ParseErrorXml, Table) {
  XmlError x = parse_error_xml(
      "<Error><Code>AuthorizationHeaderMalformed</Code><Message>wrong region</Message>"
      "<Region>eu-west-1</Region></Error>");
  EXPECT_EQ(x.code, "AuthorizationHeaderMalformed");
  EXPECT_EQ(x.message, "wrong region");
  EXPECT_EQ(x.region, "eu-west-1");
  x = parse_error_xml(
      "<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code><Message>m</Message></Error>"
      "</Errors><RequestID>r</RequestID></Response>");
  EXPECT_EQ(x.code, "InvalidAMIID.NotFound");
  EXPECT_EQ(parse_error_xml("").code, "");
  EXPECT_EQ(parse_error_xml("<html>oops").code, "");
  EXPECT_EQ(parse_error_xml("<Other/>").code, "");
}

TEST_F(ClientTest, ConnectionRefused) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);  // nothing listens there now
  conf::Upstream u = upstream(conf::Signature::kV4);
  u.endpoint = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  client_ = std::move(Client::create(base_, u).value());
  Outcome o = fetch(get("k"));
  ASSERT_TRUE(o.done && !o.done->has_value());
  EXPECT_EQ(o.done->error().code, Errc::kRefused) << o.done->error().message;
  EXPECT_EQ(o.done->error().http_status, 0);
  EXPECT_EQ(o.head_calls, 0);
}

TEST_F(ClientTest, StallAfterHeadersTimesOut) {
  conf::Upstream u = upstream(conf::Signature::kV4);
  u.stall_timeout = conf::Millis(1000);
  client_ = std::move(Client::create(base_, u).value());
  auto start = std::chrono::steady_clock::now();
  Outcome o = fetch(get("stall"));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(o.done && !o.done->has_value());
  EXPECT_EQ(o.done->error().code, Errc::kTimeout) << o.done->error().message;
  EXPECT_EQ(o.head_calls, 0);  // no body byte ever came
  EXPECT_GE(secs, 0.9);
  EXPECT_LT(secs, 5.0);
  run_until(
      base_, [] { return false; }, 1.0);  // let the server finish its stalled reply
}

TEST_F(ClientTest, ShortBodyIsAProtocolError) {
  client();
  Outcome o = fetch(get("short"));
  ASSERT_TRUE(o.done && !o.done->has_value());
  EXPECT_EQ(o.done->error().code, Errc::kProtocol) << o.done->error().message;
  EXPECT_EQ(o.done->error().http_status, 200);
  EXPECT_EQ(o.head_calls, 1);
  EXPECT_EQ(o.body, "0123456789");
}

TEST_F(ClientTest, BigBodyStreamsInPieces) {
  client();
  std::size_t total = 0;
  std::size_t mismatches = 0;
  int calls = 0;
  bool done = false;
  bool ok = false;
  Callbacks cb;
  cb.on_head = [](const ResponseHead& h) { return h.content_length() == kBig; };
  cb.on_data = [&](std::span<const char> d) {
    ++calls;
    for (char c : d) {
      mismatches += c != pattern(total++);
    }
    return true;
  };
  cb.on_done = [&](conf::Result<void, Error> r) {
    done = true;
    ok = r.has_value();
  };
  Transfer t = client_->start(get("big"), std::move(cb));
  ASSERT_TRUE(run_until(
      base_, [&] { return done; }, 60));
  EXPECT_TRUE(ok);
  EXPECT_EQ(total, kBig);
  EXPECT_EQ(mismatches, 0u);
  EXPECT_GT(calls, 16);
  EXPECT_FALSE(t.active());
}

TEST_F(ClientTest, DroppedBeforeTheLoopRunsSendsNothing) {
  client();
  Outcome o;
  {
    Transfer t = client_->start(get("k"), recorder(o));
    EXPECT_TRUE(t.active());
  }
  run_until(
      base_, [] { return false; }, 0.3);
  EXPECT_EQ(o.head_calls + o.data_calls + o.done_calls, 0);
  EXPECT_EQ(client_->requests_started(), 0u);
  EXPECT_TRUE(server_.seen().empty());
}

TEST_F(ClientTest, TransferDroppedInsideItsOwnCallbackCallsNothingMore) {
  client();
  int data_calls = 0;
  int done_calls = 0;
  Transfer t;
  Callbacks cb;
  cb.on_data = [&](std::span<const char>) {
    ++data_calls;
    t = Transfer();  // destroys the running transfer from inside its callback
    return true;
  };
  cb.on_done = [&](conf::Result<void, Error>) { ++done_calls; };
  t = client_->start(get("big"), std::move(cb));
  run_until(base_, [&] { return data_calls > 0; });
  run_until(
      base_, [] { return false; }, 0.5);
  EXPECT_EQ(data_calls, 1);
  EXPECT_EQ(done_calls, 0);
  EXPECT_FALSE(t.active());
}

TEST_F(ClientTest, CancelFromTheOutsideMidBody) {
  client();
  int data_calls = 0;
  int done_calls = 0;
  Callbacks cb;
  cb.on_data = [&](std::span<const char>) {
    ++data_calls;
    return true;
  };
  cb.on_done = [&](conf::Result<void, Error>) { ++done_calls; };
  Transfer t = client_->start(get("big"), std::move(cb));
  run_until(base_, [&] { return data_calls > 0; });
  t.cancel();
  EXPECT_FALSE(t.active());
  int seen_calls = data_calls;
  run_until(
      base_, [] { return false; }, 0.5);
  EXPECT_EQ(data_calls, seen_calls);
  EXPECT_EQ(done_calls, 0);
}

TEST_F(ClientTest, CallbackReturningFalseEndsWithCancelled) {
  client();
  Outcome o;
  Callbacks cb = recorder(o);
  cb.on_head = [&o](const ResponseHead&) {
    ++o.head_calls;
    return false;
  };
  Transfer t = client_->start(get("big"), std::move(cb));
  ASSERT_TRUE(run_until(base_, [&] { return o.done_calls > 0; }));
  EXPECT_EQ(o.head_calls, 1);
  EXPECT_EQ(o.data_calls, 0);
  ASSERT_FALSE(o.done->has_value());
  EXPECT_EQ(o.done->error().code, Errc::kCancelled);

  // Same from on_data, and for an empty body (head delivered at completion).
  Outcome p;
  cb = recorder(p);
  cb.on_data = [&p](std::span<const char>) {
    ++p.data_calls;
    return false;
  };
  t = client_->start(get("big"), std::move(cb));
  ASSERT_TRUE(run_until(base_, [&] { return p.done_calls > 0; }));
  EXPECT_EQ(p.data_calls, 1);
  EXPECT_EQ(p.done->error().code, Errc::kCancelled);

  Outcome q;
  cb = recorder(q);
  cb.on_head = [](const ResponseHead&) { return false; };
  t = client_->start(get("k", Method::kHead), std::move(cb));
  ASSERT_TRUE(run_until(base_, [&] { return q.done_calls > 0; }));
  EXPECT_EQ(q.done->error().code, Errc::kCancelled);
}

TEST_F(ClientTest, ConcurrentTransfersAndCrossCancellation) {
  client();
  Outcome a;
  Outcome b;
  Transfer ta = client_->start(get("slow"), recorder(a));
  Transfer tb = client_->start(get("slow"), recorder(b));
  ASSERT_TRUE(run_until(base_, [&] { return a.done_calls > 0 && b.done_calls > 0; }));
  EXPECT_TRUE(a.done->has_value());
  EXPECT_TRUE(b.done->has_value());
  EXPECT_EQ(a.body, "slow");
  EXPECT_EQ(b.body, "slow");
  EXPECT_EQ(server_.max_slow_in_flight(), 2);  // both were at the server at once
  EXPECT_EQ(client_->requests_started(), 2u);

  // One transfer's completion drops another still in flight, and starts a new one.
  Outcome c;
  Outcome d;
  Outcome e;
  Transfer td;
  Transfer te;
  Callbacks cb = recorder(c);
  cb.on_done = [&](conf::Result<void, Error>) {
    ++c.done_calls;
    td = Transfer();
    te = client_->start(get("k"), recorder(e));
  };
  Transfer tc = client_->start(get("k"), std::move(cb));
  td = client_->start(get("slow"), recorder(d));
  ASSERT_TRUE(run_until(base_, [&] { return e.done_calls > 0; }));
  run_until(
      base_, [] { return false; }, 0.4);
  EXPECT_EQ(c.done_calls, 1);
  EXPECT_EQ(d.done_calls + d.data_calls + d.head_calls, 0);
  EXPECT_TRUE(e.done->has_value());
  EXPECT_EQ(e.body, "hello world");
}

TEST_F(ClientTest, TransferMayOutliveItsClient) {
  client();
  Outcome o;
  Transfer t = client_->start(get("slow"), recorder(o));
  run_until(base_, [&] { return client_->requests_started() > 0; });
  client_.reset();
  EXPECT_TRUE(t.active());
  t = Transfer();
  run_until(
      base_, [] { return false; }, 0.3);
  EXPECT_EQ(o.done_calls, 0);
}

TEST_F(ClientTest, PerformBlocks) {
  auto r = Client::perform(upstream(conf::Signature::kV2, "/services/Walrus"), get("k"));
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(r->head.status, 200);
  EXPECT_EQ(r->body, "hello world");
  auto err = Client::perform(upstream(conf::Signature::kV2), get("missing"));
  ASSERT_FALSE(err.has_value());
  EXPECT_EQ(err.error().code, Errc::kNotFound);
  EXPECT_EQ(err.error().s3_code, "NoSuchKey");
}

}  // namespace
}  // namespace s3
