// Table-driven tests of shared-cache storability and freshness (RFC 9111).
#include "proxy/freshness.h"

#include <gtest/gtest.h>

namespace proxy {
namespace {

constexpr std::int64_t kNow = 1700000000;  // Tue, 14 Nov 2023 22:13:20 GMT

struct Case {
  const char* name;
  Headers headers;
  bool ttl_override;
  bool storable;
  bool revalidate;
  std::int64_t lifetime;  // expires_at - now
};

class DecideTest : public testing::TestWithParam<Case> {};

TEST_P(DecideTest, Decides) {
  const Case& c = GetParam();
  conf::Route route;
  route.ttl = conf::Seconds(600);
  route.ttl_override = c.ttl_override;
  Freshness f = decide(c.headers, route, kNow);
  EXPECT_EQ(f.storable, c.storable) << c.name;
  if (c.storable) {
    EXPECT_EQ(f.revalidate_each_use, c.revalidate) << c.name;
    EXPECT_EQ(f.expires_at - kNow, c.lifetime) << c.name;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, DecideTest,
    testing::Values(
        Case{"nothing: route ttl", {}, false, true, false, 600},
        Case{"max-age", {{"Cache-Control", "max-age=30"}}, false, true, false, 30},
        Case{"s-maxage beats max-age",
             {{"Cache-Control", "max-age=30, s-maxage=90"}},
             false,
             true,
             false,
             90},
        Case{"two headers merged",
             {{"Cache-Control", "public"}, {"cache-control", "max-age=7"}},
             false,
             true,
             false,
             7},
        Case{"no-store", {{"Cache-Control", "no-store"}}, false, false, false, 0},
        Case{"private", {{"Cache-Control", "private, max-age=60"}}, false, false, false, 0},
        Case{"no-store beats override", {{"Cache-Control", "no-store"}}, true, false, false, 0},
        Case{"vary is not stored", {{"Vary", "Accept-Encoding"}}, false, false, false, 0},
        Case{"vary star", {{"vary", "*"}, {"Cache-Control", "max-age=60"}}, true, false, false, 0},
        Case{"empty vary is nothing", {{"Vary", " "}}, false, true, false, 600},
        Case{"no-cache", {{"Cache-Control", "no-cache"}}, false, true, true, 600},
        Case{"expires",
             {{"Date", "Tue, 14 Nov 2023 22:13:20 GMT"},
              {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"}},
             false,
             true,
             false,
             3600},
        Case{"expires in the past",
             {{"Expires", "Mon, 13 Nov 2023 00:00:00 GMT"}},
             false,
             true,
             false,
             0},
        Case{"invalid expires is expired", {{"Expires", "0"}}, false, true, false, 0},
        Case{"max-age beats expires",
             {{"Cache-Control", "max-age=5"}, {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"}},
             false,
             true,
             false,
             5},
        Case{"age reduces lifetime",
             {{"Cache-Control", "max-age=100"}, {"Age", "40"}},
             false,
             true,
             false,
             60},
        Case{"override ignores max-age", {{"Cache-Control", "max-age=5"}}, true, true, false, 600},
        Case{"override ignores no-cache", {{"Cache-Control", "no-cache"}}, true, true, false, 600},
        Case{"malformed max-age is stale",
             {{"Cache-Control", "max-age=abc"}},
             false,
             true,
             false,
             0},
        Case{"quoted comma",
             {{"Cache-Control", "foo=\"a,b\", max-age=12"}},
             false,
             true,
             false,
             12}));

TEST(Replayable, KeepsEndToEndDropsHopByHop) {
  Headers origin = {{"Cache-Control", "max-age=1"},
                    {"Expires", "x"},
                    {"Content-Disposition", "attachment"},
                    {"Content-Language", "en"},
                    {"x-amz-meta-owner", "eucalyptus"},
                    {"Connection", "keep-alive"},
                    {"x-amz-request-id", "r"},
                    {"x-amz-id-2", "i"},
                    {"Server", "Ceph"},
                    {"Content-Length", "5"},
                    {"ETag", "\"e\""},
                    {"Content-Encoding", "gzip"},
                    {"Set-Cookie", "a=b"}};
  Headers got = replayable_headers(origin);
  Headers want = {{"Cache-Control", "max-age=1"},
                  {"Expires", "x"},
                  {"Content-Disposition", "attachment"},
                  {"Content-Language", "en"},
                  {"x-amz-meta-owner", "eucalyptus"}};
  EXPECT_EQ(got, want);
}

TEST(Tarball, Suffixes) {
  EXPECT_TRUE(is_tarball_key("a/b.tgz"));
  EXPECT_TRUE(is_tarball_key("a/b.TAR.GZ"));
  EXPECT_FALSE(is_tarball_key("catalog.json"));
  EXPECT_FALSE(is_tarball_key("tgz"));
}

}  // namespace
}  // namespace proxy
