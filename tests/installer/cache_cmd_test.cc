// Tests of installer/cache_cmd.cc: the pure parts table-driven (URLs and percent-encoding, token
// files, error answers, object and job parsing, every printed line, the exit-code decision), then
// the commands against a scripted admin API (what is sent, in which order, what is printed), with
// a recorded sleep instead of real waiting.
#include "installer/cache_cmd.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>

namespace installer {
namespace {

EnvFn env_of(std::map<std::string, std::string> vars) {
  return [vars](const char* name) -> std::optional<std::string> {
    auto it = vars.find(name);
    return it == vars.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
}

TEST(CacheCmd, AdminBase) {
  struct {
    std::string flag, env, want;
  } cases[] = {
      {"", "", "http://127.0.0.1:8081"},
      {"", "http://tusk:9000/", "http://tusk:9000"},
      {"https://h/admin//", "http://ignored", "https://h/admin"},
      {"http://h:1", "", "http://h:1"},
  };
  for (const auto& c : cases) {
    auto env = c.env.empty() ? env_of({}) : env_of({{"TUSK_ADMIN_URL", c.env}});
    auto got = admin_base(c.flag, env);
    ASSERT_TRUE(got) << c.flag;
    EXPECT_EQ(*got, c.want) << c.flag << " / " << c.env;
  }
  auto bad = admin_base("127.0.0.1:8081", env_of({}));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::kUsage);
}

TEST(CacheCmd, TokenFileContents) {
  struct {
    std::string contents;
    bool ok;
    std::string want;
  } cases[] = {
      {"s3cr3t\n", true, "s3cr3t"},
      {"s3cr3t", true, "s3cr3t"},
      {"s3cr3t\r\n", true, "s3cr3t"},
      {"s3cr3t\n\n", false, ""},
      {"", false, ""},
      {"\n", false, ""},
      {"s3c\nr3t\n", false, ""},
      {"s3c\tr3t", false, ""},
      {"with space", true, "with space"},
  };
  for (const auto& c : cases) {
    auto got = parse_token(c.contents, "/etc/tusk/token");
    ASSERT_EQ(got.has_value(), c.ok) << c.contents;
    if (c.ok) {
      EXPECT_EQ(*got, c.want);
    } else {
      EXPECT_EQ(got.error().code, Errc::kUsage);
      EXPECT_NE(got.error().message.find("/etc/tusk/token"), std::string::npos);
      EXPECT_EQ(got.error().message.find("s3c"), std::string::npos) << "the token leaked";
    }
  }
}

TEST(CacheCmd, TokenFileFromFlagOrEnvironment) {
  char path[] = "/tmp/tusk-token-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(write(fd, "abc\n", 4), 4);
  close(fd);
  EXPECT_EQ(read_admin_token(path, env_of({})).value_or("?"), "abc");
  EXPECT_EQ(read_admin_token("", env_of({{"TUSK_ADMIN_TOKEN_FILE", path}})).value_or("?"), "abc");
  EXPECT_EQ(read_admin_token("", env_of({})).value_or("?"), "");
  unlink(path);
  auto missing = read_admin_token(path, env_of({}));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kIo);
}

TEST(CacheCmd, QueryEncoding) {
  struct {
    std::string in, want;
  } cases[] = {
      {"/starter-emis/", "/starter-emis/"}, {"/a b/c.tgz", "/a%20b/c.tgz"},
      {"/a&b=c+d", "/a%26b%3Dc%2Bd"},       {"/100%/x#y?z", "/100%25/x%23y%3Fz"},
      {"/débian~_.-", "/d%C3%A9bian~_.-"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(query_encode(c.in), c.want) << c.in;
  }
}

TEST(CacheCmd, Urls) {
  const std::string b = "http://h:8081";
  EXPECT_EQ(objects_url(b, "", 1000, ""), "http://h:8081/objects?limit=1000");
  EXPECT_EQ(objects_url(b, "/s e/", 10, "c&1"),
            "http://h:8081/objects?prefix=/s%20e/&limit=10&after=c%261");
  EXPECT_EQ(purge_url(b, "/a+b.tgz", false), "http://h:8081/objects?path=/a%2Bb.tgz");
  EXPECT_EQ(purge_url(b, "/emis/", true), "http://h:8081/objects?prefix=/emis/");
  EXPECT_EQ(verify_url(b, ""), "http://h:8081/verify");
  EXPECT_EQ(verify_url(b, "/emis x/"), "http://h:8081/verify?prefix=/emis%20x/");
  EXPECT_EQ(job_url(b, "warm", "w1"), "http://h:8081/warm/w1");
  EXPECT_EQ(job_url(b, "verify", "v/../1"), "http://h:8081/verify/v%2F..%2F1");
  EXPECT_EQ(warm_body("/catalog.json", {}), R"({"catalog":"/catalog.json"})");
  EXPECT_EQ(warm_body("", {"/a", "/b \"q\""}), R"({"paths":["/a","/b \"q\""]})");
}

TEST(CacheCmd, ErrorAnswers) {
  struct {
    int status;
    std::string body, want;
  } cases[] = {
      {401, R"({"error": "missing bearer token"})", "401: missing bearer token"},
      {403, R"({"error": "admin.token_file is not configured: mutating calls are refused"})",
       "403: admin.token_file is not configured: mutating calls are refused"},
      {404, R"({"error": "no job w9"})", "404: no job w9"},
      {400, R"({"result": "failed"})", "400: HTTP 400"},
      {502, "", "502: HTTP 502"},
      {502, "Bad Gateway\r\n<html>...", "502: Bad Gateway"},
      {500, std::string(300, 'x'), "500: " + std::string(200, 'x')},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(admin_error_message(c.status, c.body), c.want) << c.body;
  }
}

TEST(CacheCmd, ObjectPageParsing) {
  auto p = parse_object_page(R"({"objects": [
      {"path": "/emis/x.tgz", "upstream": "walrus", "bucket": "emis", "key": "x.tgz", "size": 123,
       "cached_bytes": 100, "complete": false, "integrity": "unverified", "etag": "\"e\"",
       "stored_at": 1700000000, "expires_at": 1700003600, "accessed_at": 1700000100},
      {"path": null, "upstream": "walrus", "bucket": "old", "key": "y.tgz", "size": "mistyped"}],
      "next": "c2"})");
  ASSERT_TRUE(p);
  ASSERT_EQ(p->objects.size(), 2u);
  EXPECT_EQ(p->objects[0].path, "/emis/x.tgz");
  EXPECT_EQ(p->objects[0].size, 123u);
  EXPECT_EQ(p->objects[0].cached_bytes, 100u);
  EXPECT_FALSE(p->objects[0].complete);
  EXPECT_EQ(p->objects[0].integrity, "unverified");
  EXPECT_EQ(p->objects[0].stored_at, 1700000000);
  EXPECT_FALSE(p->objects[1].path);
  EXPECT_EQ(p->objects[1].size, 0u);
  EXPECT_EQ(object_name(p->objects[1]), "(no route) walrus:old/y.tgz");
  EXPECT_EQ(p->next, "c2");

  auto last = parse_object_page(R"({"objects": [], "next": null})");
  ASSERT_TRUE(last);
  EXPECT_FALSE(last->next);
  for (const char* bad : {"", "[]", "{}", R"({"objects": {}})", R"({"objects": [], "next": 3})"}) {
    auto r = parse_object_page(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::kFormat);
  }
}

TEST(CacheCmd, AgeAndCachedPercent) {
  const std::int64_t now = 1700100000;
  struct {
    std::int64_t stored_at;
    std::string want;
  } ages[] = {{0, "-"},
              {now, "0s"},
              {now + 30, "0s"},
              {now - 59, "59s"},
              {now - 60, "1m"},
              {now - 3599, "59m"},
              {now - 3600, "1h"},
              {now - 86399, "23h"},
              {now - 86400, "1d"},
              {now - 10 * 86400 - 5, "10d"}};
  for (const auto& a : ages) {
    EXPECT_EQ(format_age(a.stored_at, now), a.want) << a.stored_at;
  }
  struct {
    std::uint64_t size, cached;
    bool complete;
    std::string want;
  } pcts[] = {{0, 0, true, "100%"},      {0, 0, false, "0%"},
              {100, 0, false, "0%"},     {100, 50, false, "50%"},
              {1000, 999, false, "99%"}, {100, 100, true, "100%"},
              {3, 1, false, "33%"},      {1ull << 62, 1ull << 61, false, "50%"}};
  for (const auto& p : pcts) {
    CachedObject o;
    o.size = p.size;
    o.cached_bytes = p.cached;
    o.complete = p.complete;
    EXPECT_EQ(cached_percent(o), p.want) << p.size << " " << p.cached;
  }
}

TEST(CacheCmd, ObjectTable) {
  const std::int64_t now = 1700007200;
  CachedObject a;
  a.path = "/starter-emis/centos.tgz";
  a.size = 1610612736;  // 1.5 GiB
  a.cached_bytes = a.size;
  a.complete = true;
  a.integrity = "verified";
  a.stored_at = now - 7200;
  CachedObject b;
  b.path = "/é/x";
  b.size = 1024;
  b.cached_bytes = 512;
  b.integrity = "unverifiable";
  b.stored_at = now - 5;
  EXPECT_EQ(object_row(a, now), (std::vector<std::string>{"/starter-emis/centos.tgz", "1.5 GiB",
                                                          "100%", "yes", "verified", "2h"}));
  EXPECT_EQ(format_object_table({a, b}, now),
            "PATH                         SIZE  CACHED  COMPLETE  INTEGRITY     AGE\n"
            "/starter-emis/centos.tgz  1.5 GiB    100%  yes       verified      2h\n"
            "/é/x                      1.0 KiB     50%  no        unverifiable  5s\n");
  EXPECT_EQ(format_object_table({}, now), "PATH  SIZE  CACHED  COMPLETE  INTEGRITY  AGE\n");
}

Job job_of(const std::string& json) {
  auto j = parse_job(json);
  EXPECT_TRUE(j) << json;
  return j ? *j : Job{};
}

TEST(CacheCmd, JobParsing) {
  Job j = job_of(R"({"id": "w1", "kind": "warm", "done": false, "objects_total": 3,
      "objects_done": 1, "bytes_total": 3000, "bytes_done": 1500, "errors": 0, "objects": [
      {"path": "/e/a.tgz", "state": "done", "bytes_done": 1000, "bytes_total": 1000,
       "result": "ok", "error": null},
      {"path": "/e/b.tgz", "state": "running", "bytes_done": 500, "bytes_total": 1000,
       "result": null, "error": null}]})");
  EXPECT_EQ(j.id, "w1");
  EXPECT_EQ(j.kind, "warm");
  EXPECT_FALSE(j.done);
  EXPECT_EQ(j.objects_total, 3u);
  EXPECT_EQ(j.bytes_done, 1500u);
  ASSERT_EQ(j.objects.size(), 2u);
  EXPECT_EQ(j.objects[0].result, "ok");
  EXPECT_FALSE(j.objects[0].error);
  EXPECT_FALSE(j.objects[1].result);
  for (const char* bad : {"nope", "[]", R"({"id": "w1"})", R"({"id": "w1", "done": "yes"})"}) {
    auto r = parse_job(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::kFormat);
  }
}

TEST(CacheCmd, JobObjectLines) {
  struct {
    JobObject o;
    std::string line;
    bool problem;
  } cases[] = {
      {{"/x.tgz", "done", "ok", std::nullopt, 1258291, 1258291}, "done /x.tgz 1.2 MiB ok", false},
      {{"/x.tgz", "done", "cached", std::nullopt, 0, 2048}, "done /x.tgz 2.0 KiB cached", false},
      {{"/y.tgz", "failed", std::nullopt, "upstream 503", 10, 100},
       "failed /y.tgz: upstream 503",
       true},
      {{"/y.tgz", "failed", std::nullopt, std::nullopt, 0, 0}, "failed /y.tgz: no message", true},
      {{"/z.tgz", "done", "mismatch", "MD5 differs from the ETag", 5, 5},
       "done /z.tgz 5 B mismatch: MD5 differs from the ETag",
       true},
      {{"/m.tgz", "done", "unverifiable", std::nullopt, 9, 9},
       "done /m.tgz 9 B unverifiable",
       false},
      {{"/i.tgz", "done", "incomplete", std::nullopt, 1, 9}, "done /i.tgz 9 B incomplete", false},
      {{"/e.tgz", "done", "error", "read failed", 0, 9},
       "done /e.tgz 9 B error: read failed",
       true},
      {{std::nullopt, "done", "ok", std::nullopt, 1, 1}, "done (no path) 1 B ok", false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(job_object_line(c.o), c.line);
    EXPECT_EQ(is_problem(c.o), c.problem) << c.line;
  }
}

TEST(CacheCmd, ProgressLine) {
  Job j;
  j.id = "w1";
  j.kind = "warm";
  EXPECT_EQ(job_progress_line(j), "warm w1 reading the catalog");
  j.kind = "verify";
  EXPECT_EQ(job_progress_line(j), "verify w1 starting");
  j.kind = "warm";
  j.objects_total = 5;
  j.objects_done = 2;
  j.bytes_total = 3 << 20;
  j.bytes_done = 1258292;  // 40 % (0.4 * 3 MiB, rounded up)
  EXPECT_EQ(job_progress_line(j),
            "warm w1 [############                  ]  40%  2/5 objects  1.2 MiB / 3.0 MiB");
  j.bytes_total = 0;  // sizes unknown: objects decide
  j.bytes_done = 0;
  EXPECT_EQ(job_progress_line(j),
            "warm w1 [############                  ]  40%  2/5 objects  0 B / 0 B");
  j.bytes_total = 10;
  j.bytes_done = 20;  // never beyond 100 %
  EXPECT_EQ(job_progress_line(j).substr(0, 45), "warm w1 [##############################] 100%");
}

TEST(CacheCmd, SummaryAndExitCode) {
  auto obj = [](std::string state, std::optional<std::string> result) {
    JobObject o;
    o.path = "/p";
    o.state = std::move(state);
    o.result = std::move(result);
    return o;
  };
  struct {
    std::vector<JobObject> objects;
    std::uint64_t errors;
    std::string summary;
    int rc;
  } cases[] = {
      {{obj("done", "ok"), obj("done", "cached")},
       0,
       "warm w1: 2 objects, 3.0 KiB: 1 ok, 1 cached",
       0},
      {{obj("done", "ok"), obj("failed", std::nullopt)},
       1,
       "warm w1: 2 objects, 3.0 KiB: 1 ok, 1 failed; 1 error",
       1},
      {{obj("done", "mismatch")}, 0, "warm w1: 1 object, 3.0 KiB: 1 mismatch", 1},
      {{obj("done", "error")}, 0, "warm w1: 1 object, 3.0 KiB: 1 error", 1},
      {{obj("done", "unverifiable"), obj("done", "incomplete"), obj("done", "novel")},
       0,
       "warm w1: 3 objects, 3.0 KiB: 1 unverifiable, 1 incomplete, 1 novel",
       0},
      {{}, 2, "warm w1: 0 objects, 3.0 KiB; 2 errors", 1},
  };
  for (const auto& c : cases) {
    Job j;
    j.id = "w1";
    j.kind = "warm";
    j.done = true;
    j.objects = c.objects;
    j.objects_total = c.objects.size();
    j.bytes_done = 3072;
    j.errors = c.errors;
    EXPECT_EQ(job_summary(j), c.summary);
    EXPECT_EQ(job_exit_code(j), c.rc) << c.summary;
  }
}

TEST(CacheCmd, TrackerReportsEachFinishedObjectOnce) {
  auto snap = [](std::vector<std::pair<std::string, std::string>> objects) {
    Job j;
    for (auto& [p, s] : objects) {
      JobObject o;
      o.path = p;
      o.state = s;
      j.objects.push_back(o);
    }
    return j;
  };
  auto paths = [](const std::vector<JobObject>& v) {
    std::vector<std::string> out;
    for (const auto& o : v) out.push_back(*o.path + " " + o.state);
    return out;
  };
  using V = std::vector<std::string>;
  JobTracker t;
  EXPECT_EQ(paths(t.update(snap({{"/a", "running"}, {"/b", "queued"}, {"/a", "queued"}}))), V{});
  EXPECT_EQ(paths(t.update(snap({{"/a", "done"}, {"/b", "running"}, {"/a", "queued"}}))),
            V{"/a done"});
  // Reordered, and the second /a finished: only it is new.
  EXPECT_EQ(paths(t.update(snap({{"/b", "failed"}, {"/a", "done"}, {"/a", "done"}}))),
            (V{"/b failed", "/a done"}));
  EXPECT_EQ(paths(t.update(snap({{"/b", "failed"}, {"/a", "done"}, {"/a", "done"}}))), V{});
}

TEST(CacheCmd, Stats) {
  auto s = format_stats(R"({"objects": 12, "bytes": 123456, "max_bytes": 53687091200,
      "fills_in_flight": 1, "connections": 3, "requests": 100, "hits": 80, "misses": 15,
      "hit_ratio": 0.8, "bytes_sent": 1234567, "upstream_bytes": 23456, "evictions": 0,
      "integrity_failures": 0, "config_reloads": {"ok": 1, "failed": 0},
      "uptime_seconds": 42, "version": "0.2"})");
  ASSERT_TRUE(s);
  EXPECT_EQ(*s,
            "objects: 12\n"
            "bytes: 120.6 KiB of 50.0 GiB (0.0%)\n"
            "fills in flight: 1\n"
            "connections: 3\n"
            "requests: 100\n"
            "hits: 80\n"
            "misses: 15\n"
            "hit ratio: 80.0%\n"
            "bytes sent: 1.2 MiB\n"
            "upstream bytes: 22.9 KiB\n"
            "evictions: 0\n"
            "integrity failures: 0\n"
            "config reloads: 1 ok, 0 failed\n"
            "uptime seconds: 42\n"
            "version: 0.2\n");
  EXPECT_EQ(format_stats(R"({"objects": 1})").value_or("?"), "objects: 1\n");
  EXPECT_FALSE(format_stats("[1]"));
}

// --- the commands against a scripted admin API ---------------------------------------------------

struct Exchange {
  std::string method, url;
  int status;  // 0: the transport fails (connection refused)
  std::string body;
};

class Scripted {
 public:
  explicit Scripted(std::vector<Exchange> script) : script_(script.begin(), script.end()) {}
  ~Scripted() {
    std::fclose(out_);
    std::fclose(err_);
    std::free(out_buf_);
    std::free(err_buf_);
  }

  CacheContext context(bool json = false, bool tty = false) {
    CacheContext c;
    c.base = "http://h:8081";
    c.token = "t0ken";
    c.json = json;
    c.tty = tty;
    c.out = out_;
    c.err = err_;
    c.now = [] { return std::int64_t{1700000100}; };
    c.sleep = [this](std::chrono::milliseconds d) { sleeps.push_back(d.count()); };
    c.transport = [this](const std::string& method, const std::string& url, const Headers& h,
                         const std::string& body) -> Result<HttpResponse> {
      sent.push_back(method + " " + url + (body.empty() ? "" : " " + body));
      headers.push_back(h);
      if (script_.empty()) return fail(Errc::kFormat, "unscripted call " + method + " " + url);
      Exchange e = script_.front();
      script_.pop_front();
      EXPECT_EQ(method + " " + url, e.method + " " + e.url);
      if (e.status == 0) {
        return fail(Errc::kNetwork, method + " " + url + ": Connection refused");
      }
      HttpResponse r;
      r.status = e.status;
      r.body = e.body;
      return r;
    };
    return c;
  }
  std::string out() {
    std::fflush(out_);
    return std::string(out_buf_, out_len_);
  }
  std::string err() {
    std::fflush(err_);
    return std::string(err_buf_, err_len_);
  }
  bool finished() const { return script_.empty(); }

  std::vector<std::string> sent;
  std::vector<Headers> headers;
  std::vector<long> sleeps;

 private:
  std::deque<Exchange> script_;
  char* out_buf_ = nullptr;
  char* err_buf_ = nullptr;
  std::size_t out_len_ = 0, err_len_ = 0;
  std::FILE* out_ = open_memstream(&out_buf_, &out_len_);
  std::FILE* err_ = open_memstream(&err_buf_, &err_len_);
};

TEST(CacheCmd, LsFollowsEveryPage) {
  Scripted s({
      {"GET", "http://h:8081/objects?prefix=/emis/&limit=1000", 200,
       R"({"objects": [{"path": "/emis/a", "size": 10, "cached_bytes": 10, "complete": true,
           "integrity": "verified", "stored_at": 1700000000}], "next": "k/a"})"},
      {"GET", "http://h:8081/objects?prefix=/emis/&limit=1000&after=k/a", 200,
       R"({"objects": [{"path": "/emis/b", "size": 20, "cached_bytes": 0, "complete": false,
           "integrity": "unverified", "stored_at": 1700000090}], "next": null})"},
  });
  auto rc = cache_ls(s.context(), LsArgs{"/emis/", 0});
  ASSERT_TRUE(rc) << rc.error().message;
  EXPECT_EQ(*rc, 0);
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.out(),
            "PATH     SIZE  CACHED  COMPLETE  INTEGRITY   AGE\n"
            "/emis/a  10 B    100%  yes       verified    1m\n"
            "/emis/b  20 B      0%  no        unverified  10s\n");
  for (const auto& h : s.headers) {
    EXPECT_EQ(h, (Headers{{"Accept", "application/json"}, {"Authorization", "Bearer t0ken"}}));
  }
}

TEST(CacheCmd, LsLimitAndJson) {
  Scripted s({
      {"GET", "http://h:8081/objects?limit=3", 200,
       R"({"objects": [{"path": "/a", "size": 1}, {"path": "/b", "size": 2}], "next": "2"})"},
      {"GET", "http://h:8081/objects?limit=1&after=2", 200,
       R"({"objects": [{"path": "/c", "size": 3}, {"path": "/d", "size": 4}], "next": "4"})"},
  });
  auto rc = cache_ls(s.context(/*json=*/true), LsArgs{"", 3});
  ASSERT_TRUE(rc) << rc.error().message;
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.out(), R"([
  {
    "path": "/a",
    "size": 1
  },
  {
    "path": "/b",
    "size": 2
  },
  {
    "path": "/c",
    "size": 3
  }
]
)");
}

TEST(CacheCmd, LsRefusesALoopingCursor) {
  Scripted s({
      {"GET", "http://h:8081/objects?limit=1000", 200, R"({"objects": [], "next": "x"})"},
      {"GET", "http://h:8081/objects?limit=1000&after=x", 200, R"({"objects": [], "next": "x"})"},
  });
  auto rc = cache_ls(s.context(), LsArgs{});
  ASSERT_FALSE(rc);
  EXPECT_EQ(rc.error().code, Errc::kFormat);
}

TEST(CacheCmd, ErrorsAndUsage) {
  {
    Scripted s(
        {{"DELETE", "http://h:8081/objects?path=/a%20b", 403, R"({"error": "wrong token"})"}});
    auto rc = cache_purge(s.context(), PurgeArgs{"/a b", ""});
    ASSERT_FALSE(rc);
    EXPECT_EQ(rc.error().code, Errc::kRemote);
    EXPECT_EQ(rc.error().message, "403: wrong token");
  }
  {
    Scripted s({{"GET", "http://h:8081/stats", 0, ""}});
    auto rc = cache_stats(s.context());
    ASSERT_FALSE(rc);
    EXPECT_EQ(rc.error().code, Errc::kNetwork);
    EXPECT_NE(rc.error().message.find("admin API at http://h:8081"), std::string::npos);
    EXPECT_NE(rc.error().message.find("Connection refused"), std::string::npos);
    EXPECT_EQ(rc.error().message.find("t0ken"), std::string::npos);
  }
  // Usage errors: nothing is sent.
  Scripted s({});
  auto c = s.context();
  std::vector<Result<int>> usage;
  usage.push_back(cache_purge(c, PurgeArgs{}));
  usage.push_back(cache_purge(c, PurgeArgs{"/a", "/b/"}));
  usage.push_back(cache_purge(c, PurgeArgs{"a.tgz", ""}));
  usage.push_back(cache_warm(c, WarmArgs{}));
  usage.push_back(cache_warm(c, WarmArgs{"/catalog.json", {"/a"}, false}));
  usage.push_back(cache_warm(c, WarmArgs{"", {"/a", "b"}, false}));
  usage.push_back(cache_ls(c, LsArgs{"emis/", 0}));
  usage.push_back(cache_verify(c, VerifyArgs{"emis/", false}));
  for (std::size_t i = 0; i < usage.size(); ++i) {
    ASSERT_FALSE(usage[i]) << i;
    EXPECT_EQ(usage[i].error().code, Errc::kUsage) << i;
  }
  EXPECT_TRUE(s.sent.empty());
}

TEST(CacheCmd, PurgeByPrefix) {
  Scripted s({{"DELETE", "http://h:8081/objects?prefix=/emis/", 200, R"({"purged": 7})"}});
  auto rc = cache_purge(s.context(), PurgeArgs{"", "/emis/"});
  ASSERT_TRUE(rc);
  EXPECT_EQ(s.out(), "purged 7\n");
}

const char* kRunning = R"({"id": "w1", "kind": "warm", "done": false, "objects_total": 2,
    "objects_done": 1, "bytes_total": 3072, "bytes_done": 1024, "errors": 0, "objects": [
    {"path": "/a", "state": "done", "bytes_done": 1024, "bytes_total": 1024, "result": "ok"},
    {"path": "/b", "state": "running", "bytes_done": 0, "bytes_total": 2048, "result": null}]})";
const char* kFailed = R"({"id": "w1", "kind": "warm", "done": true, "objects_total": 2,
    "objects_done": 2, "bytes_total": 3072, "bytes_done": 1024, "errors": 1, "objects": [
    {"path": "/a", "state": "done", "bytes_done": 1024, "bytes_total": 1024, "result": "ok"},
    {"path": "/b", "state": "failed", "bytes_done": 0, "bytes_total": 2048, "result": null,
     "error": "upstream 503"}]})";

TEST(CacheCmd, WarmPollsUntilDone) {
  Scripted s({
      {"POST", "http://h:8081/warm", 202, R"({"id": "w1"})"},
      {"GET", "http://h:8081/warm/w1", 200,
       R"({"id": "w1", "kind": "warm", "done": false, "objects_total": 0, "objects": []})"},
      {"GET", "http://h:8081/warm/w1", 200, kRunning},
      {"GET", "http://h:8081/warm/w1", 0, ""},  // one transport failure is retried
      {"GET", "http://h:8081/warm/w1", 200, kFailed},
  });
  auto rc = cache_warm(s.context(), WarmArgs{"/catalog.json", {}, false});
  ASSERT_TRUE(rc) << rc.error().message;
  EXPECT_EQ(*rc, 1);
  EXPECT_TRUE(s.finished());
  EXPECT_EQ(s.sent[0], R"(POST http://h:8081/warm {"catalog":"/catalog.json"})");
  EXPECT_EQ(s.headers[0].back(),
            (std::pair<std::string, std::string>{"Content-Type", "application/json"}));
  EXPECT_EQ(s.sleeps, (std::vector<long>{500, 500, 500}));
  EXPECT_EQ(s.err(), "done /a 1.0 KiB ok\nfailed /b: upstream 503\n");
  EXPECT_EQ(s.out(), "warm w1: 2 objects, 1.0 KiB: 1 ok, 1 failed; 1 error\n");
}

TEST(CacheCmd, WarmOnATerminalDrawsABar) {
  Scripted s({
      {"POST", "http://h:8081/warm", 202, R"({"id": "w1"})"},
      {"GET", "http://h:8081/warm/w1", 200, kRunning},
      {"GET", "http://h:8081/warm/w1", 200, kFailed},
  });
  auto rc = cache_warm(s.context(/*json=*/false, /*tty=*/true), WarmArgs{"", {"/a", "/b"}, false});
  ASSERT_TRUE(rc);
  std::string err = s.err();
  // The first draw, then the bar is wiped (spaces, \r) for the failure line and drawn again.
  EXPECT_EQ(err.substr(0, 9), "\rwarm w1 ");
  EXPECT_NE(err.find(" \rfailed /b: upstream 503\n\rwarm w1 ["), std::string::npos) << err;
  EXPECT_EQ(err.find("done /a"), std::string::npos) << "fine objects are only counted";
  EXPECT_EQ(err.back(), '\n');
}

TEST(CacheCmd, VerifyJsonAndNoWait) {
  {
    Scripted s({{"POST", "http://h:8081/verify?prefix=/e/", 202, R"({"id": "v1"})"}});
    auto rc = cache_verify(s.context(), VerifyArgs{"/e/", true});
    ASSERT_TRUE(rc);
    EXPECT_EQ(*rc, 0);
    EXPECT_EQ(s.out(), "v1\n");
  }
  Scripted s({
      {"POST", "http://h:8081/verify", 202, R"({"id": "v1"})"},
      {"GET", "http://h:8081/verify/v1", 200,
       R"({"id": "v1", "kind": "verify", "done": true, "errors": 0, "objects": [
           {"path": "/a", "state": "done", "result": "unverifiable"}]})"},
  });
  auto rc = cache_verify(s.context(/*json=*/true), VerifyArgs{});
  ASSERT_TRUE(rc);
  EXPECT_EQ(*rc, 0);
  EXPECT_EQ(s.out().substr(0, 24), "{\n  \"id\": \"v1\",\n  \"kind\"");
  EXPECT_EQ(s.err(), "done /a 0 B unverifiable\n");
}

TEST(CacheCmd, PollGivesUpAfterThreeTransportFailures) {
  Scripted s({
      {"POST", "http://h:8081/warm", 202, R"({"id": "w1"})"},
      {"GET", "http://h:8081/warm/w1", 0, ""},
      {"GET", "http://h:8081/warm/w1", 0, ""},
      {"GET", "http://h:8081/warm/w1", 0, ""},
  });
  auto rc = cache_warm(s.context(), WarmArgs{"", {"/a"}, false});
  ASSERT_FALSE(rc);
  EXPECT_EQ(rc.error().code, Errc::kNetwork);
  EXPECT_NE(rc.error().message.find("the warm job w1 goes on in tuskd"), std::string::npos);
  EXPECT_TRUE(s.finished());
}

}  // namespace
}  // namespace installer
