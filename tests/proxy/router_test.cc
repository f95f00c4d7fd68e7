// Routing and hostile-path tests: only configured routes resolve; traversal never does.
#include "proxy/router.h"

#include <gtest/gtest.h>

namespace proxy {
namespace {

std::vector<conf::Route> routes() {
  std::vector<conf::Route> r(4);
  r[0].path = "/catalog.json";
  r[0].upstream = "u";
  r[0].bucket = "emis";
  r[0].key = "catalog.json";
  r[1].path = "/catalog";
  r[1].upstream = "u";
  r[1].bucket = "emis";
  r[1].key = "catalog.json";
  r[2].prefix = "/starter-emis/";
  r[2].upstream = "u";
  r[2].bucket = "emis";
  r[3].prefix = "/starter-emis/special/";
  r[3].upstream = "u";
  r[3].bucket = "special";
  r[3].key_prefix = "v2/";
  r[3].host = "images.example.com";
  return r;
}

struct Case {
  const char* host;
  const char* target;
  bool ok;
  RouteErrc err;
  const char* bucket;
  const char* key;
};

class RouteTest : public testing::TestWithParam<Case> {};

TEST_P(RouteTest, Routes) {
  auto rs = routes();
  Router router(rs);
  const Case& c = GetParam();
  auto got = router.route(c.host, c.target);
  ASSERT_EQ(got.has_value(), c.ok) << c.target;
  if (c.ok) {
    EXPECT_EQ(got->bucket, c.bucket) << c.target;
    EXPECT_EQ(got->key, c.key) << c.target;
  } else {
    EXPECT_EQ(got.error().code, c.err) << c.target;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, RouteTest,
    testing::Values(
        Case{"x", "/catalog.json", true, {}, "emis", "catalog.json"},
        Case{"x", "/catalog", true, {}, "emis", "catalog.json"},
        Case{"x", "/catalog.json?x=1", true, {}, "emis", "catalog.json"},
        Case{"x", "/starter-emis/a.tgz", true, {}, "emis", "a.tgz"},
        Case{"x",
             "/starter-emis/dir/a%20b+c%40%C3%A9.tgz",
             true,
             {},
             "emis",
             "dir/a b+c@\xC3\xA9.tgz"},
        Case{"images.example.com:8080", "/starter-emis/special/x", true, {}, "special", "v2/x"},
        Case{"IMAGES.example.com", "/starter-emis/special/x", true, {}, "special", "v2/x"},
        Case{"other", "/starter-emis/special/x", true, {}, "emis", "special/x"},
        Case{"x", "/starter-emis/", false, RouteErrc::kNotFound, "", ""},  // no listing
        Case{"x", "/other/a", false, RouteErrc::kNotFound, "", ""},
        Case{"x", "/", false, RouteErrc::kNotFound, "", ""},
        Case{"x", "/catalog.jsonx", false, RouteErrc::kNotFound, "", ""},
        Case{"x", "/starter-emis/../etc/passwd", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "/starter-emis/%2e%2e/secret", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "/starter-emis/%2E%2E%2Fsecret", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "/starter-emis/a/..", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "/starter-emis/./a", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "/starter-emis/a%00b", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "/starter-emis/a%0ab", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "/starter-emis/a%5c..%5cb", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "/starter-emis/a%zz", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "/starter-emis/a%4", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "starter-emis/a", false, RouteErrc::kBadPath, "", ""},
        Case{"x", "http://evil.example.com/starter-emis/a", false, RouteErrc::kBadPath, "", ""}));

TEST(RouteQuery, KeyRoutesTakeTheDecodedQueryOthersIgnoreIt) {
  auto rs = routes();
  rs[2].query = conf::Query::kKey;
  Router router(rs);
  auto t = router.route("x", "/starter-emis/a.tgz?versionId=3%20x&&flag&b=%2B+#frag");
  ASSERT_TRUE(t);
  using Q = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(t->query, (Q{{"versionId", "3 x"}, {"flag", ""}, {"b", "++"}}));
  EXPECT_EQ(t->key, "a.tgz");
  t = router.route("x", "/starter-emis/a.tgz");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->query.empty());
  t = router.route("x", "/catalog.json?x=1");  // an ignore route
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->query.empty());
  t = router.route("x", "/starter-emis/a.tgz?bad=%zz");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, RouteErrc::kBadPath);
  std::string many = "/starter-emis/a.tgz?";
  for (std::size_t i = 0; i <= kMaxQueryParams; ++i) {
    many += "p" + std::to_string(i) + "=1&";
  }
  t = router.route("x", many);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, RouteErrc::kBadPath);
}

// path_for is route()'s inverse: the path it gives routes back to the same bucket and key.
TEST(PathFor, InvertsRoute) {
  const auto rs = routes();
  struct PathCase {
    int route;
    const char* key;
    const char* want;  // nullptr: the route cannot name the key
  };
  const PathCase cases[] = {
      {0, "catalog.json", "/catalog.json"},
      {0, "other.json", nullptr},
      {2, "a.tgz", "/starter-emis/a.tgz"},
      {2, "dir/a b%.tgz", "/starter-emis/dir/a%20b%25.tgz"},
      {2, "", nullptr},
      {3, "v2/x.tgz", "/starter-emis/special/x.tgz"},
      {3, "v1/x.tgz", nullptr},
      {3, "v2/", nullptr},
  };
  Router router(rs);
  for (const PathCase& c : cases) {
    auto got = path_for(rs[c.route], c.key);
    if (c.want == nullptr) {
      EXPECT_FALSE(got) << c.key;
      continue;
    }
    ASSERT_TRUE(got) << c.key;
    EXPECT_EQ(*got, c.want);
    auto back = router.route(rs[c.route].host, *got);
    ASSERT_TRUE(back) << *got;
    EXPECT_EQ(back->key, c.key);
    EXPECT_EQ(back->bucket, rs[c.route].bucket);
  }
}

}  // namespace
}  // namespace proxy
