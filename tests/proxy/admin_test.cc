// Pure parts of the admin API (proxy/admin.cc, proxy/jobs.cc, proxy/reload.cc): the token rule,
// reverse routing for listings, catalog URL resolution, the eustore checksum, and which
// settings need a restart. Table tests.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "conf/config.h"
#include "proxy/admin.h"
#include "proxy/fill.h"
#include "proxy/jobs.h"
#include "proxy/reload.h"

namespace proxy {
namespace {

TEST(AdminTest, Authorize) {
  struct Case {
    const char* header;
    const char* token;
    bool mutating;
    AuthVerdict want;
  };
  const Case cases[] = {
      {"", "", false, AuthVerdict::kOk},  // no token file: reads are open
      {"Bearer x", "", false, AuthVerdict::kOk},
      {"", "", true, AuthVerdict::kNotConfigured},
      {"Bearer anything", "", true, AuthVerdict::kNotConfigured},
      {"", "t0k", false, AuthVerdict::kMissing},
      {"Basic dXNlcjpwYXNz", "t0k", false, AuthVerdict::kMissing},
      {"Bearer", "t0k", false, AuthVerdict::kMissing},
      {"Bearer ", "t0k", false, AuthVerdict::kMissing},
      {"Bearer t0k", "t0k", false, AuthVerdict::kOk},
      {"bearer t0k", "t0k", true, AuthVerdict::kOk},  // the scheme is case-insensitive
      {"BEARER   t0k", "t0k", true, AuthVerdict::kOk},
      {"Bearer t0K", "t0k", false, AuthVerdict::kWrong},  // the token is not
      {"Bearer t0", "t0k", false, AuthVerdict::kWrong},
      {"Bearer t0kk", "t0k", true, AuthVerdict::kWrong},
      {"Bearer t0k ", "t0k", true, AuthVerdict::kWrong},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(authorize(c.header, c.token, c.mutating), c.want)
        << "'" << c.header << "' token '" << c.token << "' mutating " << c.mutating;
  }
  EXPECT_TRUE(constant_time_equal("", ""));
  EXPECT_TRUE(constant_time_equal("abc", "abc"));
  EXPECT_FALSE(constant_time_equal("abc", "abd"));
  EXPECT_FALSE(constant_time_equal("abc", "ab"));
}

conf::Config routed_config() {
  conf::Config c;
  conf::Upstream w;
  w.name = "walrus";
  w.endpoint = "http://walrus:8773/services/Walrus";
  c.upstreams["walrus"] = w;
  conf::Upstream s3 = w;
  s3.name = "s3";
  s3.endpoint = "https://s3.example";
  c.upstreams["s3"] = s3;
  auto route = [](const char* path, const char* prefix, const char* up, const char* bucket,
                  const char* key, const char* key_prefix) {
    conf::Route r;
    r.path = path;
    r.prefix = prefix;
    r.upstream = up;
    r.bucket = bucket;
    r.key = key;
    r.key_prefix = key_prefix;
    return r;
  };
  c.routes = {
      route("/catalog.json", "", "walrus", "starter-emis", "catalog.json", ""),
      route("", "/starter-emis/", "walrus", "starter-emis", "", ""),
      route("", "/kernels/", "walrus", "starter-emis", "", "kernels/"),
      route("", "/mirror/", "s3", "starter-emis", "", ""),
  };
  return c;
}

TEST(AdminTest, PublicPathIsTheMostSpecificRoute) {
  const conf::Config c = routed_config();
  const std::string w = "http://walrus:8773/services/Walrus\nstarter-emis\n";
  struct Case {
    std::string key;
    std::optional<std::string> path;
  };
  const Case cases[] = {
      {w + "catalog.json", "/catalog.json"},  // the exact route wins
      {w + "x.tgz", "/starter-emis/x.tgz"},
      {w + "kernels/vmlinuz", "/kernels/vmlinuz"},  // the longer key_prefix wins
      {w + "a b%c.tgz", "/starter-emis/a%20b%25c.tgz"},
      {w + "dir/sub/x", "/starter-emis/dir/sub/x"},
      {"https://s3.example\nstarter-emis\nx.tgz", "/mirror/x.tgz"},
      {"https://s3.example\nother-bucket\nx.tgz", std::nullopt},
      {"http://gone\nstarter-emis\nx.tgz", std::nullopt},
      {"no newlines", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c2 : cases) {
    EXPECT_EQ(public_path(c, c2.key), c2.path) << c2.key;
  }
}

TEST(AdminTest, CatalogPathResolvesAsEustoreDoes) {
  struct Case {
    const char* url;
    const char* base;
    const char* want;  // nullptr: an error
  };
  const Case cases[] = {
      {"starter-emis/x.tgz", "", "/starter-emis/x.tgz"},
      {"/starter-emis/x.tgz", "", "/starter-emis/x.tgz"},
      {"x.tgz", "http://edge.example/images/", "/images/x.tgz"},
      {"x.tgz", "http://edge.example/images", "/images/x.tgz"},
      {"/abs/x.tgz", "http://edge.example/images/", "/abs/x.tgz"},
      {"http://edge.example/images/x.tgz", "http://edge.example/images/", "/images/x.tgz"},
      {"http://edge.example/x.tgz", "http://edge.example", "/x.tgz"},
      {"http://elsewhere/x.tgz", "http://edge.example/", nullptr},
      {"http://edge.example/x.tgz", "", nullptr},
      {"", "", nullptr},
  };
  for (const auto& c : cases) {
    auto got = catalog_path(c.url, c.base);
    if (c.want == nullptr) {
      EXPECT_FALSE(got.has_value()) << c.url;
    } else {
      ASSERT_TRUE(got.has_value()) << c.url << ": " << got.error();
      EXPECT_EQ(*got, c.want) << c.url;
    }
  }
}

TEST(AdminTest, EustoreNameVectors) {
  // EUSTORE.md §1.7.
  EXPECT_EQ(eustore_name("d41d8cd98f00b204e9800998ecf8427e"), "1136548044");
  EXPECT_EQ(eustore_name("b1946ac92492d2347c6235b4d2611184"), "0222977072");
  EXPECT_EQ(eustore_name("06858ee31c6d12f02dff90a03dc9815e"), "0127128318");
}

TEST(AdminTest, RestartNeededNamesOnlyStartTimeSettings) {
  conf::Config a = routed_config();
  conf::Config b = a;
  EXPECT_TRUE(restart_needed(a, b).empty());
  // Live settings: routes, upstream keys, TTLs, fill.parallel, log level, the token file.
  b.routes.pop_back();
  b.upstreams["walrus"].secret_key = "rotated";
  b.fill.parallel = 9;
  b.log.level = "debug";
  b.admin.token_file = "/etc/tusk/token";
  EXPECT_TRUE(restart_needed(a, b).empty());
  b.server.listen = {"0.0.0.0:9"};
  b.cache.chunk_size = 1 << 20;
  b.cache.dir = "/elsewhere";
  b.admin.listen = "127.0.0.1:1";
  b.server.idle_timeout = std::chrono::seconds(1);
  EXPECT_EQ(restart_needed(a, b),
            (std::vector<std::string>{"server.listen", "server.idle_timeout", "admin.listen",
                                      "cache.dir", "cache.chunk_size"}));
}

TEST(AdminTest, TokenFile) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("tusk-token-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto write = [&](const char* name, const std::string& text) {
    std::ofstream(dir / name, std::ios::binary) << text;
    return (dir / name).string();
  };
  EXPECT_EQ(read_token_file("").value(), "");
  EXPECT_EQ(read_token_file(write("a", "tok\n")).value(), "tok");
  EXPECT_EQ(read_token_file(write("b", "tok\r\n")).value(), "tok");
  EXPECT_EQ(read_token_file(write("c", "tok")).value(), "tok");
  EXPECT_FALSE(read_token_file(write("d", "\n")).has_value());
  EXPECT_FALSE(read_token_file(write("e", std::string(5000, 'x'))).has_value());
  auto missing = read_token_file((dir / "missing").string());
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().find("cannot read"), std::string::npos);
  auto secret = read_token_file(write("f", std::string(5000, 'S')));
  EXPECT_EQ(secret.error().find("SSSS"), std::string::npos) << "never the token in an error";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace proxy
