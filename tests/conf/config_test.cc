// Tests of conf/config.cc: the size, duration and address parsers, and loading with every
// validation rule, each as a table whose rows name the expected file:line:column and message.
// Key-file tests write into a fresh mkdtemp directory; the environment is always injected, so no
// test depends on (or changes) the real process environment.

#include "conf/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace conf {
namespace {

using namespace std::chrono_literals;

EnvLookup env_of(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) {
      return std::nullopt;
    }
    return it->second;
  };
}

Result<Config, ConfigError> load(const std::string& yaml, const EnvLookup& env = env_of({}),
                                 const std::string& base_dir = ".") {
  return load_string(yaml, "test.yaml", env, base_dir);
}

// A directory of its own per test, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "tusk-conf-XXXXXX").string();
    const char* made = mkdtemp(pattern.data());
    if (made == nullptr) {
      ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
      return;
    }
    path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }

 private:
  std::string path_;
};

// ---- parse_size ----

TEST(ParseSizeTest, AcceptsUnitsAndFractions) {
  const struct {
    std::string_view text;
    std::uint64_t bytes;
  } kCases[] = {
      {"0", 0},
      {"4096", 4096},
      {"1B", 1},
      {"7b", 7},
      {"1.0B", 1},
      {"4KiB", 4096},
      {"4kib", 4096},
      {"4KIB", 4096},
      {"1K", 1024},
      {"1KB", 1000},
      {"1kb", 1000},
      {"512MiB", 512ull << 20},
      {"2M", 2ull << 20},
      {"8MB", 8000000},
      {"10GiB", 10ull << 30},
      {"1G", 1ull << 30},
      {"1GB", 1000000000},
      {"1.5GiB", 1610612736},
      {"0.5KiB", 512},
      {"1.7GiB", 1825361100},  // 1825361100.8 rounded down
      {"10 GiB", 10ull << 30},
      {"1T", 1ull << 40},
      {"1TB", 1000000000000},
      {"15TiB", 15ull << 40},
      {"18446744073709551615", 18446744073709551615ull},
      {"16777215TiB", 16777215ull << 40},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.text);
    auto r = parse_size(c.text);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(*r, c.bytes);
  }
}

TEST(ParseSizeTest, RejectsGarbageNegativeAndOverflow) {
  const struct {
    std::string_view text;
    std::string_view error;
  } kCases[] = {
      {"", "empty size"},
      {"-1", "must not be negative"},
      {"-1GiB", "must not be negative"},
      {"abc", "invalid size 'abc'"},
      {"GiB", "invalid size"},
      {"10XB", "unknown unit"},
      {"1GiBx", "unknown unit"},
      {"1PiB", "unknown unit"},
      {"1e3", "unknown unit"},
      {"1..5G", "invalid size"},
      {".5G", "invalid size"},
      {"5.G", "invalid size"},
      {" 1GiB", "invalid size"},
      {"1.5", "no fraction"},
      {"1.5B", "no fraction"},
      {"18446744073709551616", "too large"},
      {"16777216TiB", "too large"},  // exactly 2^64
      {"99999999999999999999999GiB", "too large"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.text);
    auto r = parse_size(c.text);
    ASSERT_FALSE(r) << "parsed as " << *r;
    EXPECT_NE(r.error().find(c.error), std::string::npos) << r.error();
  }
}

// ---- parse_duration ----

TEST(ParseDurationTest, AcceptsUnitsAndCombinations) {
  const struct {
    std::string_view text;
    Millis value;
  } kCases[] = {
      {"0", 0ms},
      {"000", 0ms},
      {"0s", 0ms},
      {"250ms", 250ms},
      {"30s", 30s},
      {"5m", 5min},
      {"1h", 1h},
      {"1d", 24h},
      {"1w", 168h},
      {"1h30m", 90min},
      {"1m30s", 90s},
      {"1s500ms", 1500ms},
      {"1w2d3h4m5s6ms", 168h + 48h + 3h + 4min + 5s + 6ms},
      {"9223372036854775807ms", Millis{9223372036854775807}},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.text);
    auto r = parse_duration(c.text);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->count(), c.value.count());
  }
}

TEST(ParseDurationTest, RejectsAmbiguousGarbageAndOverflow) {
  const struct {
    std::string_view text;
    std::string_view error;
  } kCases[] = {
      {"", "empty duration"},
      {"30", "needs a unit"},
      {"1", "needs a unit"},
      {"1h30", "needs a unit"},
      {"0h5", "needs a unit"},
      {"-5s", "must not be negative"},
      {"5x", "unknown unit 'x'"},
      {"5M", "unknown unit 'M'"},
      {"5sec", "unknown unit 'sec'"},
      {"1h 30m", "unknown unit 'h '"},
      {"1.5h", "fractions are not supported"},
      {"30m1h", "largest to smallest"},
      {"1m1m", "largest to smallest"},
      {"s", "invalid duration"},
      {" 5s", "invalid duration"},
      {"9223372036854775808ms", "too large"},
      {"300000000000000w", "too large"},
      {"9223372036854776s", "too large"},
      {"15250284452w4d", "too large"},  // each part fits, the sum does not
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.text);
    auto r = parse_duration(c.text);
    ASSERT_FALSE(r) << "parsed as " << r->count() << "ms";
    EXPECT_NE(r.error().find(c.error), std::string::npos) << r.error();
  }
}

// ---- parse_listen ----

TEST(ParseListenTest, SplitsHostAndPort) {
  const struct {
    std::string_view text;
    std::string host;
    int port;
  } kCases[] = {
      {"127.0.0.1:8080", "127.0.0.1", 8080},
      {"0.0.0.0:65535", "0.0.0.0", 65535},
      {"localhost:1", "localhost", 1},
      {"[::1]:8081", "::1", 8081},
      {"[::]:80", "::", 80},
      {"cache-1.example.com:443", "cache-1.example.com", 443},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.text);
    auto r = parse_listen(c.text);
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->host, c.host);
    EXPECT_EQ(r->port, c.port);
  }
}

TEST(ParseListenTest, RejectsBadAddresses) {
  const struct {
    std::string_view text;
    std::string_view error;
  } kCases[] = {
      {"", "expected host:port"},
      {"127.0.0.1", "expected host:port"},
      {":8080", "missing host"},
      {"::1:8080", "in brackets"},
      {"[::1]8080", "expected [ipv6]:port"},
      {"[::1]", "expected [ipv6]:port"},
      {"[::1]:", "port must be 1..65535"},
      {"[nope]:80", "is not an IPv6 address"},
      {"[127.0.0.1]:80", "is not an IPv6 address"},
      {"h:0", "port must be 1..65535"},
      {"h:65536", "port must be 1..65535"},
      {"h:123456", "port must be 1..65535"},
      {"h:-1", "port must be 1..65535"},
      {"h:+80", "port must be 1..65535"},
      {"h:80a", "port must be 1..65535"},
      {"h:", "port must be 1..65535"},
      {"h_x:80", "invalid host"},
      {"a b:80", "invalid host"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.text);
    auto r = parse_listen(c.text);
    ASSERT_FALSE(r) << "parsed as " << r->host << " " << r->port;
    EXPECT_NE(r.error().find(c.error), std::string::npos) << r.error();
  }
}

// ---- ConfigError ----

TEST(ConfigErrorTest, FormatsPlace) {
  const struct {
    ConfigError error;
    std::string_view text;
  } kCases[] = {
      {{"tusk.yaml", 3, 7, "bad"}, "tusk.yaml:3:7: bad"},
      {{"tusk.yaml", 3, 0, "bad"}, "tusk.yaml:3: bad"},
      {{"tusk.yaml", 0, 0, "bad"}, "tusk.yaml: bad"},
  };
  for (const auto& c : kCases) {
    EXPECT_EQ(c.error.str(), c.text);
  }
}

// ---- loading: successes ----

// The schema of DESIGN.md with every key set, read from a file so key files resolve next to it.
TEST(LoadTest, ReadsEveryKey) {
  TempDir dir;
  dir.write("walrus.access", "AKIDEXAMPLE\n");
  dir.write("walrus.secret", "wJalr XUtn/K7MDENG\r\n");
  const std::string path = dir.write("tusk.yaml", R"(
server:   { listen: ["0.0.0.0:8080", "[::]:8080"], workers: 8, max_connections: 500, idle_timeout: 90s, header_timeout: 5s, send_timeout: 2m, max_header_size: 16KiB, sendfile: false }
admin:    { listen: "127.0.0.1:8081", token_file: /etc/tusk/admin.token }
cache:    { dir: cache, max_size: 50GiB, chunk_size: 4MiB, min_free: 5GiB }
fill:     { parallel: 16 }
log:      { level: debug, access_log: "off" }
upstreams:
  walrus:
    endpoint: http://walrus.example.com:8773/services/Walrus/
    signature: v2
    region: eu-west-1
    access_key_file: walrus.access
    secret_key_file: walrus.secret
    connect_timeout: 2s
    stall_timeout: 1m
    retries: 0
    tls_verify: false
    ca_file: ca.pem
    forward_headers: [X-Request-Id, traceparent]
routes:
  - { path: /catalog.json, upstream: walrus, bucket: starter-emis, key: catalog.json, ttl: 60s, grace: 1d }
  - prefix: /starter-emis/
    upstream: walrus
    bucket: starter-emis
    key_prefix: images/
    ttl: 30d
    ttl_override: true
    prefetch: none
    query: key
    host: Images.Example.COM
)");
  auto r = load_file(path, env_of({}));
  ASSERT_TRUE(r) << r.error().str();
  const Config& c = *r;
  EXPECT_EQ(c.source, path);
  EXPECT_EQ(c.server.listen, (std::vector<std::string>{"0.0.0.0:8080", "[::]:8080"}));
  EXPECT_EQ(c.server.workers, 8);
  EXPECT_EQ(c.server.max_connections, 500);
  EXPECT_EQ(c.server.idle_timeout, 90s);
  EXPECT_EQ(c.server.header_timeout, 5s);
  EXPECT_EQ(c.server.send_timeout, 120s);
  EXPECT_EQ(c.server.max_header_size, 16u * 1024);
  EXPECT_FALSE(c.server.sendfile);
  EXPECT_EQ(c.admin.listen, "127.0.0.1:8081");
  EXPECT_EQ(c.admin.token_file, "/etc/tusk/admin.token");
  EXPECT_EQ(c.cache.dir, dir.path() + "/cache");
  EXPECT_EQ(c.cache.max_size, 50ull << 30);
  EXPECT_EQ(c.cache.chunk_size, 4ull << 20);
  EXPECT_EQ(c.cache.min_free, 5ull << 30);
  EXPECT_EQ(c.fill.parallel, 16);
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.log.access_log, "off");

  ASSERT_EQ(c.upstreams.size(), 1u);
  const Upstream& u = c.upstreams.at("walrus");
  EXPECT_EQ(u.name, "walrus");
  EXPECT_EQ(u.endpoint, "http://walrus.example.com:8773/services/Walrus");
  EXPECT_EQ(u.signature, Signature::kV2);
  EXPECT_EQ(u.region, "eu-west-1");
  EXPECT_EQ(u.access_key, "AKIDEXAMPLE");
  EXPECT_EQ(u.secret_key, "wJalr XUtn/K7MDENG");
  EXPECT_EQ(u.connect_timeout, 2s);
  EXPECT_EQ(u.stall_timeout, 60s);
  EXPECT_EQ(u.retries, 0);
  EXPECT_FALSE(u.tls_verify);
  EXPECT_EQ(u.ca_file, dir.path() + "/ca.pem");

  ASSERT_EQ(c.routes.size(), 2u);
  const Route& exact = c.routes[0];
  EXPECT_EQ(exact.path, "/catalog.json");
  EXPECT_EQ(exact.prefix, "");
  EXPECT_EQ(exact.upstream, "walrus");
  EXPECT_EQ(exact.bucket, "starter-emis");
  EXPECT_EQ(exact.key, "catalog.json");
  EXPECT_EQ(exact.ttl, 60s);
  EXPECT_EQ(exact.grace, 24h);
  EXPECT_EQ(exact.line, 21);
  const Route& prefix = c.routes[1];
  EXPECT_EQ(prefix.prefix, "/starter-emis/");
  EXPECT_EQ(prefix.key_prefix, "images/");
  EXPECT_EQ(prefix.ttl, 30 * 24h);
  EXPECT_TRUE(prefix.ttl_override);
  EXPECT_EQ(prefix.prefetch, Prefetch::kNone);
  EXPECT_EQ(prefix.query, Query::kKey);
  EXPECT_EQ(c.routes[0].query, Query::kIgnore);
  EXPECT_EQ(c.upstreams.at("walrus").forward_headers,
            (std::vector<std::string>{"x-request-id", "traceparent"}));
  EXPECT_EQ(prefix.host, "images.example.com");
  EXPECT_EQ(prefix.line, 22);
}

TEST(LoadTest, DefaultsAreThoseOfConfigH) {
  // Empty file, comments only, and sections left empty all mean "defaults".
  for (const std::string yaml :
       {"", "# nothing yet\n", "server:\nadmin:\ncache:\nupstreams:\nroutes:\n",
        "server: {}\nfill: {}\nlog: {}\n"}) {
    SCOPED_TRACE(yaml);
    auto r = load(yaml);
    ASSERT_TRUE(r) << r.error().str();
    const Config& c = *r;
    const Config defaults;
    EXPECT_EQ(c.source, "test.yaml");
    EXPECT_EQ(c.server.listen, std::vector<std::string>{"127.0.0.1:8080"});
    EXPECT_EQ(c.server.workers, 0);
    EXPECT_EQ(c.server.max_connections, 10000);
    EXPECT_EQ(c.server.idle_timeout, 60s);
    EXPECT_EQ(c.server.header_timeout, 10s);
    EXPECT_EQ(c.server.send_timeout, 60s);
    EXPECT_EQ(c.server.max_header_size, 32u * 1024);
    EXPECT_TRUE(c.server.sendfile);
    EXPECT_EQ(c.admin.listen, "127.0.0.1:8081");
    EXPECT_EQ(c.admin.token_file, "");
    EXPECT_EQ(c.cache.dir, "/var/cache/tusk");
    EXPECT_EQ(c.cache.max_size, 50ull << 30);
    EXPECT_EQ(c.cache.chunk_size, 8ull << 20);
    EXPECT_EQ(c.cache.min_free, 0u);
    EXPECT_EQ(c.fill.parallel, 4);
    EXPECT_EQ(c.log.level, "info");
    EXPECT_EQ(c.log.access_log, "");
    EXPECT_TRUE(c.upstreams.empty());
    EXPECT_TRUE(c.routes.empty());
  }
}

TEST(LoadTest, UpstreamAndRouteDefaults) {
  auto r = load(R"(
upstreams:
  s3: { endpoint: "https://s3.example.com" }
routes:
  - { prefix: /, upstream: s3, bucket: b }
)",
                env_of({{"TUSK_S3_ACCESS_KEY", "a"}, {"TUSK_S3_SECRET_KEY", "s"}}));
  ASSERT_TRUE(r) << r.error().str();
  const Upstream& u = r->upstreams.at("s3");
  EXPECT_EQ(u.signature, Signature::kV4);
  EXPECT_EQ(u.region, "us-east-1");
  EXPECT_EQ(u.connect_timeout, 5s);
  EXPECT_EQ(u.stall_timeout, 30s);
  EXPECT_EQ(u.retries, 3);
  EXPECT_TRUE(u.tls_verify);
  EXPECT_EQ(u.ca_file, "");
  const Route& route = r->routes.at(0);
  EXPECT_EQ(route.ttl, 3600s);
  EXPECT_FALSE(route.ttl_override);
  EXPECT_EQ(route.grace, 0s);
  EXPECT_EQ(route.prefetch, Prefetch::kWhole);
  EXPECT_EQ(route.key_prefix, "");
  EXPECT_EQ(route.host, "");
}

// One upstream needing no keys, for tests about other things.
const std::string kUpstream =
    "upstreams:\n"
    "  u:\n"
    "    endpoint: http://s3.test\n"
    "    signature: none\n";

TEST(LoadTest, ReadsValueVariants) {
  const struct {
    std::string name;
    std::string yaml;
    std::function<void(const Config&)> check;
  } kCases[] = {
      {"listen as one string", "server: { listen: '[::1]:9000' }\n",
       [](const Config& c) { EXPECT_EQ(c.server.listen, std::vector<std::string>{"[::1]:9000"}); }},
      {"empty admin listen disables admin", "admin: { listen: '' }\n",
       [](const Config& c) { EXPECT_EQ(c.admin.listen, ""); }},
      {"workers 0 stays 0", "server: { workers: 0 }\n",
       [](const Config& c) { EXPECT_EQ(c.server.workers, 0); }},
      {"workers upper bound", "server: { workers: 1024 }\n",
       [](const Config& c) { EXPECT_EQ(c.server.workers, 1024); }},
      {"quoted integer", "fill: { parallel: '64' }\n",
       [](const Config& c) { EXPECT_EQ(c.fill.parallel, 64); }},
      {"chunk size of 1GiB", "cache: { chunk_size: 1GiB, max_size: 1GiB }\n",
       [](const Config& c) { EXPECT_EQ(c.cache.chunk_size, 1ull << 30); }},
      {"smallest chunk", "cache: { chunk_size: 4KiB, max_size: 4096 }\n",
       [](const Config& c) { EXPECT_EQ(c.cache.max_size, 4096u); }},
      {"retries bounds", kUpstream + "    retries: 20\n",
       [](const Config& c) { EXPECT_EQ(c.upstreams.at("u").retries, 20); }},
      {"tls_verify yes", kUpstream + "    tls_verify: yes\n",
       [](const Config& c) { EXPECT_TRUE(c.upstreams.at("u").tls_verify); }},
      {"tls_verify FALSE", kUpstream + "    tls_verify: FALSE\n",
       [](const Config& c) { EXPECT_FALSE(c.upstreams.at("u").tls_verify); }},
      {"tls_verify off", kUpstream + "    tls_verify: off\n",
       [](const Config& c) { EXPECT_FALSE(c.upstreams.at("u").tls_verify); }},
      {"timeouts in ms", kUpstream + "    connect_timeout: 250ms\n    stall_timeout: 1m30s\n",
       [](const Config& c) {
         EXPECT_EQ(c.upstreams.at("u").connect_timeout, 250ms);
         EXPECT_EQ(c.upstreams.at("u").stall_timeout, 90s);
       }},
      {"ttl 0 and grace 0",
       kUpstream + "routes: [{prefix: /, upstream: u, bucket: b, ttl: 0, grace: 0s}]\n",
       [](const Config& c) {
         EXPECT_EQ(c.routes.at(0).ttl, 0s);
         EXPECT_EQ(c.routes.at(0).grace, 0s);
       }},
      {"same path on two hosts",
       kUpstream + "routes:\n"
                   "  - {path: /a, upstream: u, bucket: b, key: k, host: one.test}\n"
                   "  - {path: /a, upstream: u, bucket: b, key: k, host: two.test}\n"
                   "  - {path: /a, upstream: u, bucket: b, key: k}\n",
       [](const Config& c) { EXPECT_EQ(c.routes.size(), 3u); }},
      {"same string as path and prefix",
       kUpstream + "routes:\n"
                   "  - {path: /a/, upstream: u, bucket: b, key: k}\n"
                   "  - {prefix: /a/, upstream: u, bucket: b}\n",
       [](const Config& c) { EXPECT_EQ(c.routes.size(), 2u); }},
      {"v6 route host",
       kUpstream + "routes: [{prefix: /, upstream: u, bucket: b, host: '[::1]'}]\n",
       [](const Config& c) { EXPECT_EQ(c.routes.at(0).host, "[::1]"); }},
      {"unused upstream", kUpstream, [](const Config& c) { EXPECT_TRUE(c.routes.empty()); }},
      {"relative paths stay with base '.'",
       "cache: { dir: data }\nlog: { access_log: access.log }\n",
       [](const Config& c) {
         EXPECT_EQ(c.cache.dir, "data");
         EXPECT_EQ(c.log.access_log, "access.log");
       }},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    auto r = load(c.yaml);
    ASSERT_TRUE(r) << r.error().str();
    c.check(*r);
  }
}

TEST(LoadTest, NormalizesEndpoints) {
  const struct {
    std::string_view endpoint;
    std::string_view normalized;
  } kCases[] = {
      {"http://s3.test", "http://s3.test"},
      {"http://s3.test/", "http://s3.test"},
      {"http://s3.test//", "http://s3.test"},
      {"HTTPS://s3.test:8443/services/Walrus/", "https://s3.test:8443/services/Walrus"},
      {"http://[::1]:9000/", "http://[::1]:9000"},
      {"http://[::1]", "http://[::1]"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.endpoint);
    auto r = load("upstreams: { u: { signature: none, endpoint: '" + std::string(c.endpoint) +
                  "' } }\n");
    ASSERT_TRUE(r) << r.error().str();
    EXPECT_EQ(r->upstreams.at("u").endpoint, c.normalized);
  }
}

// ---- loading: errors, one row per rule ----

struct ErrorCase {
  std::string name;
  std::string yaml;
  int line;
  int column;
  std::string message;  // must appear in the error message
  std::map<std::string, std::string> env = {};
};

std::ostream& operator<<(std::ostream& os, const ErrorCase& c) { return os << c.name; }

class LoadErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(LoadErrorTest, NamesPlaceAndProblem) {
  const ErrorCase& c = GetParam();
  std::optional<Result<Config, ConfigError>> r;
  ASSERT_NO_THROW(r.emplace(load(c.yaml, env_of(c.env))));
  ASSERT_FALSE(*r) << "loaded:\n" << c.yaml;
  const ConfigError& e = r->error();
  EXPECT_EQ(e.file, "test.yaml");
  EXPECT_EQ(e.line, c.line) << e.str();
  EXPECT_EQ(e.column, c.column) << e.str();
  EXPECT_NE(e.message.find(c.message), std::string::npos) << e.str();
  EXPECT_EQ(e.str(), "test.yaml:" + std::to_string(c.line) + ":" + std::to_string(c.column) + ": " +
                         e.message);
}

// Routes below start at line 5, after kUpstream.
const ErrorCase kErrorCases[] = {
    // Syntax and document shape.
    {"syntax", "server:\n  listen: [\"a:1\"\n", 3, 1, "YAML error: end of sequence flow"},
    {"unclosed_quote", "log:\n  level: \"info", 2, 15, "YAML error: illegal EOF in scalar"},
    {"unknown_anchor", "server: *nope\n", 1, 9, "YAML error"},
    {"two_documents", "server: {}\n---\nfill: {}\n", 2, 1, "expected one YAML document, found 2"},
    // yaml-cpp 0.7's LoadAll never ends on this stream (found by tests/fuzz); loading must.
    {"loadall_loop", ", bucketro\\\\\\utes: [ { prefix: /a/, upstream: nope, bucket: b } ]\n", 1,
     1, "expected one YAML document"},
    {"top_level_list", "- a\n", 1, 1, "expected a map, got a list"},
    {"top_level_scalar", "hello\n", 1, 1, "expected a map, got 'hello'"},
    // Keys.
    {"unknown_top_key", "fill: {}\nservr: {}\n", 2, 1, "unknown key 'servr' at top level"},
    {"unknown_server_key", "server:\n  lisen: [\"127.0.0.1:1\"]\n", 2, 3,
     "unknown key 'lisen' in server"},
    {"duplicate_key", "server:\n  workers: 1\n  workers: 2\n", 3, 3,
     "duplicate key 'workers' in server"},
    {"duplicate_section", "fill: {}\nfill: {}\n", 2, 1, "duplicate key 'fill' at top level"},
    {"non_scalar_key", "server:\n  ? [a]\n  : 1\n", 2, 5, "keys must be plain strings in server"},
    {"section_not_map", "server: 5\n", 1, 9, "server: expected a map, got '5'"},
    // server.
    {"workers_not_int", "server:\n  workers: abc\n", 2, 12,
     "server.workers: expected an integer, got 'abc'"},
    {"workers_fraction", "server:\n  workers: 1.5\n", 2, 12, "expected an integer, got '1.5'"},
    {"workers_list", "server:\n  workers: [1]\n", 2, 12, "expected an integer, got a list"},
    {"workers_empty", "server:\n  workers:\n", 2, 3,
     "server.workers: expected an integer, got nothing"},
    {"workers_negative", "server:\n  workers: -1\n", 2, 12,
     "server.workers: must be between 0 and 1024, got '-1'"},
    {"workers_too_many", "server:\n  workers: 1025\n", 2, 12, "must be between 0 and 1024"},
    {"workers_overflow", "server:\n  workers: 99999999999999999999\n", 2, 12,
     "must be between 0 and 1024"},
    {"max_connections_zero", "server:\n  max_connections: 0\n", 2, 20,
     "server.max_connections: must be between 1"},
    {"idle_timeout_zero", "server:\n  idle_timeout: 0\n", 2, 17,
     "server.idle_timeout: must be greater than 0"},
    {"idle_timeout_bare", "server:\n  idle_timeout: 60\n", 2, 17, "needs a unit"},
    {"header_timeout_zero", "server:\n  header_timeout: 0s\n", 2, 19,
     "server.header_timeout: must be greater than 0"},
    {"send_timeout_zero", "server:\n  send_timeout: 0\n", 2, 17,
     "server.send_timeout: must be greater than 0"},
    {"max_header_size_small", "server:\n  max_header_size: 100\n", 2, 20,
     "server.max_header_size: must be between 1KiB and 1MiB"},
    {"max_header_size_huge", "server:\n  max_header_size: 2MiB\n", 2, 20, "between 1KiB"},
    {"sendfile_not_bool", "server:\n  sendfile: maybe\n", 2, 13, "server.sendfile:"},
    {"idle_timeout_millis", "server:\n  idle_timeout: 1500ms\n", 2, 17,
     "must be a whole number of seconds"},
    {"listen_no_port", "server:\n  listen: [\"127.0.0.1\"]\n", 2, 12,
     "server.listen[0]: invalid listen address '127.0.0.1'"},
    {"listen_second_bad", "server:\n  listen: [\"h:1\", \"h:0\"]\n", 2, 19,
     "server.listen[1]: invalid listen address 'h:0': port must be 1..65535"},
    {"listen_port_zero_scalar", "server:\n  listen: 'h:0'\n", 2, 11, "port must be 1..65535"},
    {"listen_empty_list", "server:\n  listen: []\n", 2, 11, "needs at least one address"},
    {"listen_duplicate", "server:\n  listen: [\"h:1\", \"h:1\"]\n", 2, 19,
     "duplicate address 'h:1'"},
    {"listen_map", "server:\n  listen: {a: 1}\n", 2, 11, "expected an address or a list"},
    {"listen_v6_unbracketed", "server:\n  listen: '::1:80'\n", 2, 11, "in brackets"},
    // admin.
    {"admin_listen_bad", "admin:\n  listen: nope\n", 2, 11, "admin.listen: invalid listen address"},
    {"admin_listen_clash", "admin:\n  listen: 127.0.0.1:8080\n", 2, 11,
     "'127.0.0.1:8080' is also in server.listen"},
    {"admin_unknown", "admin:\n  token: x\n", 2, 3, "unknown key 'token' in admin"},
    {"admin_token_list", "admin:\n  token_file: [x]\n", 2, 15,
     "admin.token_file: expected a string, got a list"},
    // cache.
    {"cache_dir_empty", "cache:\n  dir: ''\n", 2, 8, "cache.dir: must not be empty"},
    {"cache_dir_null", "cache:\n  dir:\n", 2, 3, "cache.dir: expected a string, got nothing"},
    {"chunk_zero", "cache:\n  chunk_size: 0\n", 2, 15, "must be a non-zero multiple of 4096"},
    {"chunk_unaligned", "cache:\n  chunk_size: 1000\n", 2, 15,
     "cache.chunk_size: must be a non-zero multiple of 4096 bytes, got '1000'"},
    {"chunk_decimal_unaligned", "cache:\n  chunk_size: 8MB\n", 2, 15, "multiple of 4096"},
    {"chunk_too_big", "cache:\n  chunk_size: 2GiB\n  max_size: 10GiB\n", 2, 15,
     "must be at most 1GiB"},
    {"max_below_default_chunk", "cache:\n  max_size: 1MiB\n", 2, 13,
     "cache.max_size: must be at least cache.chunk_size (8388608 bytes), got '1MiB'"},
    {"max_below_later_chunk", "cache:\n  max_size: 4MiB\n  chunk_size: 8MiB\n", 2, 13,
     "must be at least cache.chunk_size"},
    {"max_size_zero", "cache:\n  max_size: 0\n", 2, 13, "must be at least cache.chunk_size"},
    {"size_garbage", "cache:\n  min_free: lots\n", 2, 13, "cache.min_free: invalid size 'lots'"},
    {"size_negative", "cache:\n  max_size: -1GiB\n", 2, 13, "must not be negative"},
    {"size_overflow", "cache:\n  max_size: 99999999TiB\n", 2, 13, "too large"},
    {"size_map", "cache:\n  max_size: {a: 1}\n", 2, 13, "expected a size like 8MiB, got a map"},
    // fill and log.
    {"parallel_zero", "fill:\n  parallel: 0\n", 2, 13, "fill.parallel: must be between 1 and 64"},
    {"parallel_too_many", "fill:\n  parallel: 65\n", 2, 13, "must be between 1 and 64"},
    {"log_level", "log:\n  level: verbose\n", 2, 10,
     "log.level: expected one of trace, debug, info, warn, error, got 'verbose'"},
    {"log_level_case", "log:\n  level: INFO\n", 2, 10, "expected one of"},
    {"access_log_list", "log:\n  access_log: [a]\n", 2, 15, "expected a string, got a list"},
    // upstreams.
    {"upstreams_list", "upstreams: [a]\n", 1, 12, "upstreams: expected a map of named upstreams"},
    {"upstream_no_endpoint", "upstreams:\n  u:\n    signature: none\n", 2, 3,
     "upstreams.u: missing required key 'endpoint'"},
    {"upstream_empty", "upstreams:\n  u:\n", 2, 3, "missing required key 'endpoint'"},
    {"upstream_not_map", "upstreams:\n  u: http://h\n", 2, 3, "upstreams.u: expected a map"},
    {"upstream_unknown_key", kUpstream + "    retry: 3\n", 5, 5,
     "unknown key 'retry' in upstreams.u"},
    {"upstream_duplicate", kUpstream + "  u:\n    endpoint: http://h\n", 5, 3,
     "duplicate key 'u' in upstreams"},
    {"endpoint_scheme", "upstreams:\n  u:\n    endpoint: ftp://h\n", 3, 15,
     "upstreams.u.endpoint: must start with http:// or https://"},
    {"endpoint_no_scheme", "upstreams:\n  u:\n    endpoint: s3.test\n", 3, 15,
     "must start with http://"},
    {"endpoint_query", "upstreams:\n  u:\n    endpoint: http://h/x?a=1\n", 3, 15,
     "must not have a query or fragment"},
    {"endpoint_fragment", "upstreams:\n  u:\n    endpoint: 'http://h/#f'\n", 3, 15,
     "must not have a query or fragment"},
    {"endpoint_no_host", "upstreams:\n  u:\n    endpoint: http:///x\n", 3, 15, "has no host"},
    {"endpoint_port_zero", "upstreams:\n  u:\n    endpoint: http://h:0/\n", 3, 15,
     "bad host or port"},
    {"endpoint_port_big", "upstreams:\n  u:\n    endpoint: http://h:65536\n", 3, 15,
     "bad host or port"},
    {"endpoint_port_empty", "upstreams:\n  u:\n    endpoint: 'http://h:'\n", 3, 15,
     "bad host or port"},
    {"endpoint_space", "upstreams:\n  u:\n    endpoint: 'http://h/a b'\n", 3, 15, "spaces"},
    {"endpoint_credentials", "upstreams:\n  u:\n    endpoint: http://user:pw@h\n", 3, 15,
     "must not contain credentials"},
    {"signature_twice", kUpstream + "    signature: v4\n", 5, 5,
     "duplicate key 'signature'"},  // kUpstream already sets it
    {"signature_bad", "upstreams:\n  u:\n    endpoint: http://h\n    signature: v3\n", 4, 16,
     "upstreams.u.signature: expected v2, v4 or none, got 'v3'"},
    {"v4_without_keys", "upstreams:\n  u:\n    endpoint: http://h\n", 2, 3,
     "upstreams.u: signature v4 needs an access key: set access_key_file or TUSK_U_ACCESS_KEY"},
    {"v2_without_secret",
     "upstreams:\n  u:\n    endpoint: http://h\n    signature: v2\n",
     2,
     3,
     "signature v2 needs a secret key: set secret_key_file or TUSK_U_SECRET_KEY",
     {{"TUSK_U_ACCESS_KEY", "a"}}},
    {"v2_without_access",
     "upstreams:\n  u:\n    endpoint: http://h\n    signature: v2\n",
     2,
     3,
     "signature v2 needs an access key",
     {{"TUSK_U_SECRET_KEY", "s"}}},
    {"empty_env_is_unset",
     "upstreams:\n  u:\n    endpoint: http://h\n",
     2,
     3,
     "needs a secret key",
     {{"TUSK_U_ACCESS_KEY", "a"}, {"TUSK_U_SECRET_KEY", ""}}},
    {"env_of_other_upstream",
     "upstreams:\n  u:\n    endpoint: http://h\n",
     2,
     3,
     "needs an access key",
     {{"TUSK_V_ACCESS_KEY", "a"}, {"TUSK_V_SECRET_KEY", "s"}}},
    {"key_file_empty_name", kUpstream + "    access_key_file: ''\n", 5, 22,
     "upstreams.u.access_key_file: must not be empty"},
    {"key_file_missing", kUpstream + "    secret_key_file: /nonexistent/tusk.secret\n", 5, 22,
     "upstreams.u.secret_key_file: cannot read '/nonexistent/tusk.secret': No such file"},
    {"region_empty", kUpstream + "    region: ''\n", 5, 13,
     "upstreams.u.region: must not be empty"},
    {"retries_negative", kUpstream + "    retries: -1\n", 5, 14,
     "upstreams.u.retries: must be between 0 and 20"},
    {"retries_too_many", kUpstream + "    retries: 21\n", 5, 14, "must be between 0 and 20"},
    {"tls_verify_maybe", kUpstream + "    tls_verify: maybe\n", 5, 17,
     "upstreams.u.tls_verify: expected true or false, got 'maybe'"},
    {"connect_timeout_zero", kUpstream + "    connect_timeout: 0\n", 5, 22,
     "must be greater than 0"},
    {"stall_timeout_bare", kUpstream + "    stall_timeout: 30\n", 5, 20, "needs a unit"},
    {"stall_timeout_garbage", kUpstream + "    stall_timeout: soon\n", 5, 20,
     "upstreams.u.stall_timeout: invalid duration 'soon'"},
    // routes.
    {"routes_map", "routes: {a: 1}\n", 1, 9, "routes: expected a list of routes, got a map"},
    {"route_scalar", kUpstream + "routes:\n  - /x\n", 6, 5, "routes[0]: expected a map, got '/x'"},
    {"route_both",
     kUpstream + "routes:\n  - {path: /a, prefix: /b, upstream: u, bucket: b, key: k}\n", 6, 5,
     "routes[0]: has both 'path' and 'prefix'"},
    {"route_neither", kUpstream + "routes:\n  - {upstream: u, bucket: b}\n", 6, 5,
     "routes[0]: needs 'path' (exact) or 'prefix'"},
    {"path_relative", kUpstream + "routes:\n  - {path: a, upstream: u, bucket: b, key: k}\n", 6, 12,
     "routes[0].path: must start with '/', got 'a'"},
    {"prefix_relative", kUpstream + "routes:\n  - {prefix: a/, upstream: u, bucket: b}\n", 6, 14,
     "routes[0].prefix: must start with '/'"},
    {"prefix_empty", kUpstream + "routes:\n  - {prefix: '', upstream: u, bucket: b}\n", 6, 14,
     "must start with '/'"},
    {"no_upstream", kUpstream + "routes:\n  - {path: /a, bucket: b, key: k}\n", 6, 5,
     "routes[0]: missing required key 'upstream'"},
    {"no_bucket", kUpstream + "routes:\n  - {path: /a, upstream: u, key: k}\n", 6, 5,
     "routes[0]: missing required key 'bucket'"},
    {"no_key", kUpstream + "routes:\n  - {path: /a, upstream: u, bucket: b}\n", 6, 5,
     "routes[0]: missing required key 'key'"},
    {"block_route_no_key", kUpstream + "routes:\n  - path: /a\n    upstream: u\n    bucket: b\n", 6,
     5, "routes[0]: missing required key 'key'"},
    {"empty_bucket", kUpstream + "routes:\n  - {prefix: /a, upstream: u, bucket: ''}\n", 6, 39,
     "routes[0].bucket: must not be empty"},
    {"empty_key", kUpstream + "routes:\n  - {path: /a, upstream: u, bucket: b, key: ''}\n", 6, 45,
     "routes[0].key: must not be empty"},
    {"undeclared_upstream",
     kUpstream + "routes:\n  - {path: /a, upstream: nope, bucket: b, key: k}\n", 6, 26,
     "routes[0].upstream: no upstream named 'nope'"},
    {"routes_without_upstreams", "routes:\n  - {path: /a, upstream: u, bucket: b, key: k}\n", 2, 26,
     "routes[0].upstream: no upstream named 'u'"},
    {"second_route_bad",
     kUpstream +
         "routes:\n  - {prefix: /a/, upstream: u, bucket: b}\n  - {prefix: /b/, upstream: x, "
         "bucket: b}\n",
     7, 29, "routes[1].upstream: no upstream named 'x'"},
    {"prefix_with_key", kUpstream + "routes:\n  - {prefix: /p/, upstream: u, bucket: b, key: k}\n",
     6, 48, "routes[0].key: is only for exact-path routes"},
    {"path_with_key_prefix",
     kUpstream + "routes:\n  - {path: /a, upstream: u, bucket: b, key: k, key_prefix: x/}\n", 6, 60,
     "routes[0].key_prefix: is only for prefix routes"},
    {"query_bad", kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, query: all}\n",
     6, 48, "routes[0].query: expected ignore or key, got 'all'"},
    {"forward_authorization",
     kUpstream + "    forward_headers: [X-Request-Id, Authorization]\n"
                 "routes:\n  - {prefix: /, upstream: u, bucket: b}\n",
     5, 37, "'Authorization' is never forwarded"},
    {"forward_cookie",
     kUpstream + "    forward_headers: [cookie]\nroutes:\n  - {prefix: /, upstream: u, bucket: b}\n",
     5, 23, "'cookie' is never forwarded"},
    {"forward_hop_by_hop",
     kUpstream + "    forward_headers: [Connection]\nroutes:\n  - {prefix: /, upstream: u, bucket: b}\n",
     5, 23, "'Connection' is never forwarded"},
    {"forward_host",
     kUpstream + "    forward_headers: [Host]\nroutes:\n  - {prefix: /, upstream: u, bucket: b}\n", 5,
     23, "'Host' is never forwarded"},
    {"forward_amz",
     kUpstream + "    forward_headers: [X-Amz-Date]\nroutes:\n  - {prefix: /, upstream: u, bucket: b}\n",
     5, 23, "'X-Amz-Date' is never forwarded"},
    {"forward_range",
     kUpstream + "    forward_headers: [range]\nroutes:\n  - {prefix: /, upstream: u, bucket: b}\n", 5,
     23, "'range' is never forwarded"},
    {"forward_not_a_name",
     kUpstream + "    forward_headers: ['a b']\nroutes:\n  - {prefix: /, upstream: u, bucket: b}\n", 5,
     23, "not a header name: 'a b'"},
    {"forward_duplicate",
     kUpstream + "    forward_headers: [a, A]\nroutes:\n  - {prefix: /, upstream: u, bucket: b}\n", 5,
     26, "duplicate header name 'A'"},
    {"forward_scalar",
     kUpstream + "    forward_headers: a\nroutes:\n  - {prefix: /, upstream: u, bucket: b}\n", 5, 22,
     "expected a list of header names"},
    {"prefetch_bad",
     kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, prefetch: some}\n", 6, 51,
     "routes[0].prefetch: expected whole or none, got 'some'"},
    {"ttl_fraction", kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, ttl: 1.5h}\n", 6,
     46, "fractions are not supported"},
    {"ttl_millis", kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, ttl: 500ms}\n", 6,
     46, "routes[0].ttl: must be a whole number of seconds"},
    {"grace_bare", kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, grace: 60}\n", 6,
     48, "routes[0].grace: invalid duration '60'"},
    {"ttl_override_bad",
     kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, ttl_override: 2}\n", 6, 55,
     "routes[0].ttl_override: expected true or false, got '2'"},
    {"host_with_port",
     kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, host: 'a.test:80'}\n", 6, 47,
     "routes[0].host: must not include a port"},
    {"route_unknown_key",
     kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, ttl_overide: true}\n", 6, 41,
     "unknown key 'ttl_overide' in routes[0]"},
    {"duplicate_path",
     kUpstream + "routes:\n  - {path: /a, upstream: u, bucket: b, key: k}\n"
                 "  - {path: /a, upstream: u, bucket: c, key: j}\n",
     7, 12, "routes[1]: duplicate path '/a' (first at line 6)"},
    {"duplicate_path_host_case",
     kUpstream + "routes:\n  - {path: /a, upstream: u, bucket: b, key: k, host: A.test}\n"
                 "  - {path: /a, upstream: u, bucket: b, key: k, host: a.TEST}\n",
     7, 12, "duplicate path '/a' for host a.test"},
    {"duplicate_prefix",
     kUpstream + "routes:\n  - {prefix: /p/, upstream: u, bucket: b}\n"
                 "  - {prefix: /p/, upstream: u, bucket: c}\n",
     7, 14, "routes[1]: duplicate prefix '/p/' (first at line 6)"},
    // Who may read (issue 15).
    {"allow_not_a_list", kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, allow: 10.0.0.0/8}\n",
     6, 48, "routes[0].allow: expected a list of addresses or CIDR ranges"},
    {"allow_empty", kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, allow: []}\n", 6,
     48, "is empty; leave the key out"},
    {"allow_host_bits", kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, allow: [10.0.0.1/8]}\n",
     6, 49, "10.0.0.0/8"},
    {"allow_junk", kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, allow: [everyone]}\n",
     6, 49, "routes[0].allow[0]"},
    {"allow_duplicate",
     kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, allow: [::1, '::1/128']}\n", 6,
     54, "duplicate range"},
    {"auth_bad", kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, auth: basic}\n", 6,
     47, "expected none, token or presigned, got 'basic'"},
    {"auth_token_without_file",
     kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, auth: token}\n", 6, 5,
     "auth: token needs auth_token_file"},
    {"auth_presigned_without_keys",
     kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, auth: presigned}\n", 6, 5,
     "auth: presigned needs client_keys_file"},
    {"auth_token_file_unreadable",
     kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, auth: token, auth_token_file: /nonexistent/t}\n",
     6, 71, "cannot read '/nonexistent/t'"},
    {"auth_region_without_presigned",
     kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, auth_region: eu-west-1}\n", 6, 5,
     "auth_region is only for auth: presigned"},
    {"auth_region_bad",
     kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, auth_region: EU West}\n", 6, 54,
     "expected 1..64 of a-z 0-9 -"},
    {"same_endpoint_other_identity",
     kUpstream + "  v:\n    endpoint: http://s3.test\n    signature: v4\n", 5, 3,
     "same endpoint as upstream 'u' but another identity",
     {{"TUSK_V_ACCESS_KEY", "a"}, {"TUSK_V_SECRET_KEY", "s"}}},
    {"trusted_proxies_bad", "server:\n  trusted_proxies: [10.0.0.0/33]\n", 2, 21, "prefix"},
    {"proxy_protocol_without_trusted", "server:\n  proxy_protocol: true\n", 2, 3,
     "proxy_protocol needs trusted_proxies"},
    // log.format and peers (issue 11).
    {"log_format", "log:\n  format: xml\n", 2, 11, "expected combined or json, got 'xml'"},
    {"peers_self_not_member",
     "peers:\n  self: c\n  members: {a: 'http://10.0.0.1:8080', b: 'http://10.0.0.2:8080'}\n", 2, 3,
     "peers: self 'c' is not one of the members"},
    {"peers_without_self", "peers:\n  members: {a: 'http://10.0.0.1:8080'}\n", 2, 3,
     "missing required key 'self'"},
    {"peers_without_members", "peers:\n  self: a\n", 2, 3, "missing required key 'members'"},
    {"peers_empty_members", "peers:\n  self: a\n  members: {}\n", 3, 12,
     "expected a map of peer names to base URLs"},
    {"peer_url_with_path", "peers:\n  self: a\n  members: {a: 'http://h:1/x'}\n", 3, 16,
     "without a path"},
    {"peer_url_scheme", "peers:\n  self: a\n  members: {a: 'ftp://h:1'}\n", 3, 16, "ftp"},
    {"peer_duplicate", "peers:\n  self: a\n  members: {a: 'http://h:1', a: 'http://h:2'}\n", 3,
     30, "duplicate peer 'a'"},
    {"peers_unknown_key", "peers:\n  self: a\n  member: {}\n", 3, 3, "unknown key 'member'"},
};

INSTANTIATE_TEST_SUITE_P(Rules, LoadErrorTest, ::testing::ValuesIn(kErrorCases),
                         [](const auto& info) { return info.param.name; });

TEST(LoadTest, ReadsPeersAndLogFormat) {
  auto r = load(
      "log: {format: json, access_log: stdout}\n"
      "peers:\n  self: edge2\n  connect_timeout: 250ms\n  down_for: 30s\n"
      "  members: {edge1: 'http://10.0.0.1:8080/', edge2: 'http://[::1]:8081'}\n");
  ASSERT_TRUE(r) << r.error().str();
  EXPECT_EQ(r->log.format, LogFormat::kJson);
  EXPECT_EQ(r->log.access_log, "stdout");
  EXPECT_EQ(r->peers.self, "edge2");
  EXPECT_EQ(r->peers.members.at("edge1"), "http://10.0.0.1:8080");
  EXPECT_EQ(r->peers.members.at("edge2"), "http://[::1]:8081");
  EXPECT_EQ(r->peers.connect_timeout, 250ms);
  EXPECT_EQ(r->peers.down_for, 30s);
  auto none = load("server: {}\n");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->peers.self.empty());
  EXPECT_EQ(none->log.format, LogFormat::kCombined);
}

TEST(LoadTest, ReadsAccessControl) {
  TempDir dir;
  dir.write("tokens", "# robots\n\nalpha-token-0123456789\r\n  beta-token-0123456789  \n");
  dir.write("keys", "AK1:secret/one\nAK2:secret+two\n");
  auto r = load(kUpstream +
                    "server:\n  trusted_proxies: [10.0.0.0/8, '::1']\n  proxy_protocol: true\n"
                    "routes:\n"
                    "  - {prefix: /t/, upstream: u, bucket: b, auth: token, auth_token_file: tokens,"
                    " allow: [192.0.2.0/24, '2001:db8::/32']}\n"
                    "  - {prefix: /p/, upstream: u, bucket: b, auth: presigned,"
                    " client_keys_file: keys, auth_region: eu-west-1, auth_service: s3}\n"
                    "  - {prefix: /o/, upstream: u, bucket: b}\n",
                env_of({}), dir.path());
  ASSERT_TRUE(r) << r.error().str();
  EXPECT_TRUE(r->server.proxy_protocol);
  ASSERT_EQ(r->server.trusted_proxies.size(), 2u);
  EXPECT_TRUE(r->server.trusted_proxies.contains(*parse_ip("10.9.8.7")));
  const Route& t = r->routes[0];
  EXPECT_EQ(t.auth, Auth::kToken);
  EXPECT_EQ(t.token_digests, (std::vector<std::string>{token_digest("alpha-token-0123456789"),
                                                       token_digest("beta-token-0123456789")}));
  EXPECT_EQ(t.auth_token_file, dir.path() + "/tokens");
  EXPECT_TRUE(t.allow.contains(*parse_ip("192.0.2.9")));
  EXPECT_TRUE(t.allow.contains(*parse_ip("2001:db8::5")));
  EXPECT_FALSE(t.allow.contains(*parse_ip("198.51.100.1")));
  const Route& p = r->routes[1];
  EXPECT_EQ(p.auth, Auth::kPresigned);
  EXPECT_EQ(p.client_keys.at("AK2"), "secret+two");
  EXPECT_EQ(p.auth_region, "eu-west-1");
  EXPECT_EQ(r->routes[2].auth, Auth::kNone);
  EXPECT_TRUE(r->routes[2].allow.empty());
  // A token file others may read is accepted with a warning, as key files are.
  EXPECT_EQ(r->warnings.size(), 2u);

  // A bad line is reported by its number, never by its text.
  dir.write("short", "tiny-secret\n");
  auto bad = load(kUpstream + "routes:\n  - {prefix: /, upstream: u, bucket: b, auth: token,"
                               " auth_token_file: short}\n",
                  env_of({}), dir.path());
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("line 1: a token must be at least 16 bytes"),
            std::string::npos);
  EXPECT_EQ(bad.error().message.find("tiny-secret"), std::string::npos);
}

// Input that makes yaml-cpp throw must come back as an error, never as an exception.
TEST(LoadTest, YamlExceptionsStayInside) {
  const std::string deep = "a: " + std::string(5000, '[') + std::string(5000, ']') + "\n";
  for (const std::string& yaml : {std::string("{"), std::string("]"), std::string("a: [\n"),
                                  std::string("\t- x\n"), std::string("a: !!binary '%%%'\n"),
                                  std::string("&a x: *b\n"), std::string("\"\\q\"\n"), deep}) {
    SCOPED_TRACE(yaml.substr(0, 40));
    std::optional<Result<Config, ConfigError>> r;
    ASSERT_NO_THROW(r.emplace(load(yaml)));
    ASSERT_FALSE(*r);
    EXPECT_EQ(r->error().file, "test.yaml");
    EXPECT_FALSE(r->error().message.empty());
  }
}

// ---- key files and the environment ----

TEST(KeyFileTest, StripsOneTrailingLineBreakOnly) {
  const struct {
    std::string content;
    std::string key;
  } kCases[] = {
      {"AKID", "AKID"},
      {"AKID\n", "AKID"},
      {"AKID\r\n", "AKID"},
      {"AKID\n\n", "AKID\n"},
      {"AKID\r", "AKID\r"},
      {"AKID \t\n", "AKID \t"},
      {" two words \n", " two words "},
      {"\tAKID", "\tAKID"},
      {"line1\nline2\n", "line1\nline2"},
  };
  TempDir dir;
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.content);
    dir.write("access", c.content);
    dir.write("secret", c.content + "S");
    auto r = load(
        "upstreams:\n  u:\n    endpoint: http://h\n    access_key_file: access\n"
        "    secret_key_file: secret\n",
        env_of({}), dir.path());
    ASSERT_TRUE(r) << r.error().str();
    EXPECT_EQ(r->upstreams.at("u").access_key, c.key);
    EXPECT_EQ(r->upstreams.at("u").secret_key, c.content + "S");  // no line break at the end
  }
}

TEST(KeyFileTest, ResolvesPathsAndPrefersFilesOverEnvironment) {
  TempDir dir;
  const std::string access = dir.write("ak", "FILE-ACCESS\n");
  dir.write("sk", "FILE-SECRET\n");
  const auto env = env_of({{"TUSK_MY_WALRUS_2_ACCESS_KEY", "ENV-ACCESS"},
                           {"TUSK_MY_WALRUS_2_SECRET_KEY", "ENV-SECRET"}});
  const struct {
    std::string name;
    std::string keys;  // lines added to the upstream
    std::string base_dir;
    std::string access;
    std::string secret;
  } kCases[] = {
      {"relative to base_dir", "    access_key_file: ak\n    secret_key_file: sk\n", dir.path(),
       "FILE-ACCESS", "FILE-SECRET"},
      {"relative with ./", "    access_key_file: ./ak\n    secret_key_file: sk\n", dir.path() + "/",
       "FILE-ACCESS", "FILE-SECRET"},
      {"absolute ignores base_dir", "    access_key_file: " + access + "\n", "/nonexistent",
       "FILE-ACCESS", "ENV-SECRET"},
      {"environment only", "", dir.path(), "ENV-ACCESS", "ENV-SECRET"},
      {"secret file, access env", "    secret_key_file: sk\n", dir.path(), "ENV-ACCESS",
       "FILE-SECRET"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    auto r =
        load("upstreams:\n  my-walrus.2:\n    endpoint: http://h\n    signature: v2\n" + c.keys,
             env, c.base_dir);
    ASSERT_TRUE(r) << r.error().str();
    EXPECT_EQ(r->upstreams.at("my-walrus.2").access_key, c.access);
    EXPECT_EQ(r->upstreams.at("my-walrus.2").secret_key, c.secret);
  }
}

TEST(KeyFileTest, UnreadableOrEmptyFileIsAnErrorAtItsNode) {
  TempDir dir;
  dir.write("empty", "");
  dir.write("newline", "\n");
  std::filesystem::create_directory(dir.path() + "/adir");
  dir.write("huge", std::string(100 * 1024, 'k'));
  const struct {
    std::string file;
    std::string message;
  } kCases[] = {
      {"missing", "cannot read '" + dir.path() + "/missing': " + std::strerror(ENOENT)},
      {"adir", "cannot read '" + dir.path() + "/adir': " + std::strerror(EISDIR)},
      {"empty", "key file '" + dir.path() + "/empty' is empty"},
      {"newline", "key file '" + dir.path() + "/newline' is empty"},
      {"huge", "file is too large"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.file);
    auto r = load(kUpstream + "    access_key_file: " + c.file + "\n", env_of({}), dir.path());
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().line, 5);
    EXPECT_EQ(r.error().column, 22);
    EXPECT_NE(r.error().message.find(c.message), std::string::npos) << r.error().str();
    EXPECT_EQ(r.error().message.find("kkkk"), std::string::npos);
  }
}

// Whatever fails, no message may carry a key read from a file or the environment.
TEST(KeyFileTest, SecretsNeverAppearInErrors) {
  const std::string kAccess = "ACCESS-SENTINEL";
  const std::string kSecret = "SECRET-SENTINEL";
  TempDir dir;
  dir.write("ak", kAccess + "\n");
  dir.write("sk", kSecret + "\n");
  dir.write("huge", std::string(70 * 1024, 'x') + kSecret);
  const auto env = env_of({{"TUSK_E_ACCESS_KEY", kAccess}, {"TUSK_E_SECRET_KEY", kSecret}});
  const std::string files = "upstreams:\n  u:\n    endpoint: http://h\n    access_key_file: ak\n";
  const std::string kCases[] = {
      // Keys read fine, something later fails.
      files + "    secret_key_file: sk\nroutes: [{path: /a, upstream: x, bucket: b, key: k}]\n",
      files + "    secret_key_file: sk\n    retries: many\n",
      "upstreams:\n  e:\n    endpoint: http://h\nroutes: [{prefix: a, upstream: e, bucket: b}]\n",
      // One key read, the other missing or unreadable.
      files,
      files + "    secret_key_file: nope\n",
      files + "    secret_key_file: huge\n",
      "upstreams:\n  e:\n    endpoint: http://h\n    secret_key_file: nope\n",
      // Secrets written where they do not belong.
      "upstreams:\n  u:\n    endpoint: http://h\n    secret_key: " + kSecret + "\n",
      "upstreams:\n  u:\n    endpoint: 'http://" + kAccess + ":" + kSecret + "@h/?x'\n",
      "upstreams:\n  u:\n    endpoint: 'ftp://" + kAccess + ":" + kSecret + "@h'\n",
      "upstreams:\n  u:\n    endpoint: 'http://" + kAccess + ":" + kSecret + "@'\n",
  };
  for (const auto& yaml : kCases) {
    SCOPED_TRACE(yaml);
    auto r = load(yaml, env, dir.path());
    ASSERT_FALSE(r);
    const std::string text = r.error().str();
    EXPECT_EQ(text.find(kAccess), std::string::npos) << text;
    EXPECT_EQ(text.find(kSecret), std::string::npos) << text;
  }
}

// A key file others may use loads, with a warning naming the file, its mode and the fix (as ssh
// words it), at the place the file is named; never the key.
TEST(KeyFileTest, KeyFileOpenToOthersWarns) {
  const std::string kAccess = "ACCESS-SENTINEL";
  const std::string kSecret = "SECRET-SENTINEL";
  TempDir dir;
  const std::string ak = dir.write("ak", kAccess + "\n");
  const std::string sk = dir.write("sk", kSecret + "\n");
  const std::string yaml =
      "upstreams:\n  u:\n    endpoint: http://h\n    access_key_file: ak\n"
      "    secret_key_file: sk\n";
  const struct {
    mode_t access_mode;
    mode_t secret_mode;
    std::vector<std::string> warnings;
  } kCases[] = {
      {0600, 0600, {}},
      {0400, 0400, {}},
      {0700, 0600, {}},
      {0644,
       0600,
       {"test.yaml:4:22: upstreams.u.access_key_file: key file '" + ak +
        "' is readable by others (mode 0644); chmod 600 it"}},
      {0600,
       0640,
       {"test.yaml:5:22: upstreams.u.secret_key_file: key file '" + sk +
        "' is readable by others (mode 0640); chmod 600 it"}},
      {0620,
       0604,
       {"test.yaml:4:22: upstreams.u.access_key_file: key file '" + ak +
            "' is writable by others (mode 0620); chmod 600 it",
        "test.yaml:5:22: upstreams.u.secret_key_file: key file '" + sk +
            "' is readable by others (mode 0604); chmod 600 it"}},
      {0601,
       0600,
       {"test.yaml:4:22: upstreams.u.access_key_file: key file '" + ak +
        "' is usable by others (mode 0601); chmod 600 it"}},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(std::to_string(c.access_mode) + " " + std::to_string(c.secret_mode));
    ASSERT_EQ(chmod(ak.c_str(), c.access_mode), 0);
    ASSERT_EQ(chmod(sk.c_str(), c.secret_mode), 0);
    auto r = load(yaml, env_of({}), dir.path());
    ASSERT_TRUE(r) << r.error().str();  // accepted: a warning, not an error
    EXPECT_EQ(r->upstreams.at("u").access_key, kAccess);
    EXPECT_EQ(r->warnings, c.warnings);
    for (const std::string& w : r->warnings) {
      EXPECT_EQ(w.find(kAccess), std::string::npos) << w;
      EXPECT_EQ(w.find(kSecret), std::string::npos) << w;
    }
  }
}

TEST(KeyFileTest, KeysFromTheEnvironmentNeverWarn) {
  auto r = load("upstreams:\n  u:\n    endpoint: http://h\n",
                env_of({{"TUSK_U_ACCESS_KEY", "A"}, {"TUSK_U_SECRET_KEY", "S"}}));
  ASSERT_TRUE(r) << r.error().str();
  EXPECT_TRUE(r->warnings.empty());
}

// ---- load_file ----

TEST(LoadFileTest, UnreadableFileNamesPathAndErrno) {
  TempDir dir;
  const struct {
    std::string path;
    int err;
  } kCases[] = {
      {dir.path() + "/missing.yaml", ENOENT},
      {dir.path(), EISDIR},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.path);
    auto r = load_file(c.path, env_of({}));
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().file, c.path);
    EXPECT_EQ(r.error().line, 0);
    EXPECT_EQ(r.error().str(), c.path + ": cannot read configuration: " + std::strerror(c.err));
  }
}

TEST(LoadFileTest, ErrorsNameTheFile) {
  TempDir dir;
  const std::string path = dir.write("tusk.yaml", "fill:\n  parallel: 100\n");
  auto r = load_file(path, env_of({}));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().str(), path + ":2:13: fill.parallel: must be between 1 and 64, got '100'");
}

TEST(LoadFileTest, WarningsNameTheFile) {
  TempDir dir;
  const std::string ak = dir.write("ak", "A\n");
  const std::string sk = dir.write("sk", "S\n");
  ASSERT_EQ(chmod(ak.c_str(), 0600), 0);
  ASSERT_EQ(chmod(sk.c_str(), 0644), 0);
  const std::string path = dir.write(
      "tusk.yaml",
      "upstreams:\n  u: { endpoint: \"http://h\", access_key_file: ak, secret_key_file: sk }\n");
  auto r = load_file(path, env_of({}));
  ASSERT_TRUE(r) << r.error().str();
  ASSERT_EQ(r->warnings.size(), 1u);
  EXPECT_EQ(r->warnings[0], path + ":2:68: upstreams.u.secret_key_file: key file '" + sk +
                                "' is readable by others (mode 0644); chmod 600 it");
}

TEST(LoadFileTest, RelativePathsResolveNextToTheFile) {
  TempDir dir;
  std::filesystem::create_directory(dir.path() + "/etc");
  dir.write("etc/ak", "A\n");
  dir.write("etc/sk", "S\n");
  const std::string path = dir.write("etc/tusk.yaml", R"(
admin: { token_file: admin.token }
cache: { dir: ../cache }
log: { access_log: /var/log/tusk/access.log }
upstreams:
  u: { endpoint: "http://h", access_key_file: ak, secret_key_file: sk, ca_file: /etc/ssl/ca.pem }
)");
  auto r = load_file(path, env_of({}));
  ASSERT_TRUE(r) << r.error().str();
  const std::string etc = dir.path() + "/etc";
  EXPECT_EQ(r->admin.token_file, etc + "/admin.token");
  EXPECT_EQ(r->cache.dir, etc + "/../cache");
  EXPECT_EQ(r->log.access_log, "/var/log/tusk/access.log");
  EXPECT_EQ(r->upstreams.at("u").access_key, "A");
  EXPECT_EQ(r->upstreams.at("u").secret_key, "S");
  EXPECT_EQ(r->upstreams.at("u").ca_file, "/etc/ssl/ca.pem");
}

}  // namespace
}  // namespace conf
