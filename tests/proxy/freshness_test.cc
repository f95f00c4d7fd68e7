// Table-driven tests of shared-cache storability, freshness and header storage (RFC 9111): one
// row per rule, named after it. Row names marked "(cache-tests: id)" are the case of the public
// cache-tests.fyi suite with that id.
#include "proxy/freshness.h"

#include <gtest/gtest.h>

namespace proxy {
namespace {

constexpr std::int64_t kNow = 1700000000;  // Tue, 14 Nov 2023 22:13:20 GMT
constexpr const char* kDateNow = "Tue, 14 Nov 2023 22:13:20 GMT";
constexpr std::int64_t kHeuristic = 600;  // the route's ttl in these tables

struct Case {
  const char* name;
  Headers headers;
  bool storable = true;
  bool revalidate = false;
  std::int64_t lifetime = 0;  // expires_at - now
  int status = 200;
  bool ttl_override = false;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class DecideTest : public testing::TestWithParam<Case> {};

TEST_P(DecideTest, Decides) {
  const Case& c = GetParam();
  conf::Route route;
  route.ttl = conf::Seconds(kHeuristic);
  route.ttl_override = c.ttl_override;
  Freshness f = decide(c.status, c.headers, route, kNow);
  EXPECT_EQ(f.storable, c.storable) << c.name;
  if (c.storable) {
    EXPECT_EQ(f.revalidate_each_use, c.revalidate) << c.name;
    EXPECT_EQ(f.expires_at - kNow, c.lifetime) << c.name;
  }
}

using H = Headers;

// Storage: no-store, private, Vary; the route's override.
INSTANTIATE_TEST_SUITE_P(
    Storage, DecideTest,
    testing::Values(Case{"no-store", H{{"Cache-Control", "no-store"}}, false},
                    Case{"no-store in any case (cc-resp-no-store-case-insensitive)",
                         H{{"Cache-Control", "No-StOrE"}}, false},
                    Case{"no-store beats max-age (cc-resp-no-store-fresh)",
                         H{{"Cache-Control", "max-age=10000, no-store"}}, false},
                    Case{"private (cc-resp-private-shared)",
                         H{{"Cache-Control", "private, max-age=60"}}, false},
                    Case{"qualified private is private",
                         H{{"Cache-Control", "private=\"a\", max-age=60"}}, false},
                    Case{"no-store beats override", H{{"Cache-Control", "no-store"}}, false, false,
                         0, 200, true},
                    Case{"Vary is the fill's to judge (proxy/vary.h)",
                         H{{"Vary", "Accept-Encoding"}}, true, false, kHeuristic}));

// Explicit freshness: s-maxage > max-age > Expires; parsing.
INSTANTIATE_TEST_SUITE_P(
    Explicit, DecideTest,
    testing::Values(
        Case{"max-age", H{{"Cache-Control", "max-age=30"}}, true, false, 30},
        Case{"max-age=0 (freshness-max-age-0)", H{{"Cache-Control", "max-age=0"}}, true, false, 0},
        Case{"negative max-age is malformed: stale (freshness-max-age-negative)",
             H{{"Cache-Control", "max-age=-3600"}}, true, false, 0},
        Case{"s-maxage beats max-age", H{{"Cache-Control", "max-age=30, s-maxage=90"}}, true, false,
             90},
        Case{"shorter s-maxage beats max-age (freshness-max-age-s-maxage-shared-longer)",
             H{{"Cache-Control", "max-age=3600, s-maxage=1"}}, true, false, 1},
        Case{"the same reversed (…-shared-longer-reversed)",
             H{{"Cache-Control", "s-maxage=1, max-age=3600"}}, true, false, 1},
        Case{"split over two lines (…-shared-longer-multiple)",
             H{{"Cache-Control", "max-age=3600"}, {"Cache-Control", "s-maxage=1"}}, true, false, 1},
        Case{"two headers merged", H{{"Cache-Control", "public"}, {"cache-control", "max-age=7"}},
             true, false, 7},
        Case{"directive names are case-insensitive", H{{"Cache-Control", "MAX-AGE=44"}}, true,
             false, 44},
        Case{"leading zeros (freshness-max-age-leading-zero)",
             H{{"Cache-Control", "max-age=003600"}}, true, false, 3600},
        Case{"quoted value accepted", H{{"Cache-Control", "max-age=\"3600\""}}, true, false, 3600},
        Case{"single quotes are malformed (freshness-max-age-single-quoted)",
             H{{"Cache-Control", "max-age='3600'"}}, true, false, 0},
        Case{"max-age inside a quoted argument is not one (freshness-max-age-ignore-quoted)",
             H{{"Cache-Control", "extension=\"max-age=3600\", max-age=1"}}, true, false, 1},
        Case{"… reversed (freshness-max-age-ignore-quoted-rev)",
             H{{"Cache-Control", "max-age=1, extension=\"max-age=3600\""}}, true, false, 1},
        Case{"escaped quote inside a quoted argument",
             H{{"Cache-Control", "x=\"a\\\", max-age=9000\", max-age=2"}}, true, false, 2},
        Case{"quoted comma", H{{"Cache-Control", "foo=\"a,b\", max-age=12"}}, true, false, 12},
        Case{"malformed max-age is stale, not heuristic", H{{"Cache-Control", "max-age=abc"}}, true,
             false, 0},
        Case{"fractional max-age is malformed", H{{"Cache-Control", "max-age=3600.5"}}, true, false,
             0},
        Case{"space around = is malformed", H{{"Cache-Control", "max-age = 3600"}}, true, false, 0},
        Case{"max-age without a value is malformed", H{{"Cache-Control", "max-age"}}, true, false,
             0},
        Case{"first of two max-age wins", H{{"Cache-Control", "max-age=10, max-age=3600"}}, true,
             false, 10},
        Case{"first of two max-age lines wins",
             H{{"Cache-Control", "max-age=3600"}, {"Cache-Control", "max-age=10"}}, true, false,
             3600},
        Case{"huge max-age saturates at 2^31 (freshness-max-age-max-plus)",
             H{{"Cache-Control", "max-age=99999999999999999999"}}, true, false, kMaxDeltaSeconds},
        Case{"no-cache: stored, validated on each use", H{{"Cache-Control", "no-cache"}}, true,
             true, kHeuristic},
        Case{"No-CaChE (cc-resp-no-cache-case-insensitive)",
             H{{"Cache-Control", "max-age=10000, No-CaChE"}}, true, true, 10000},
        Case{"qualified no-cache is not no-cache",
             H{{"Cache-Control", "no-cache=\"Set-Cookie\", max-age=60"}}, true, false, 60},
        Case{"unknown directives ignored", H{{"Cache-Control", "nothing-to-see-here, max-age=8"}},
             true, false, 8},
        Case{"override ignores max-age", H{{"Cache-Control", "max-age=5"}}, true, false, kHeuristic,
             200, true},
        Case{"override ignores no-cache", H{{"Cache-Control", "no-cache"}}, true, false, kHeuristic,
             200, true}));

// Expires (RFC 9111 §5.3): relative to Date; invalid means already stale, never heuristic.
INSTANTIATE_TEST_SUITE_P(
    Expires, DecideTest,
    testing::Values(
        Case{"expires", H{{"Date", kDateNow}, {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"}}, true,
             false, 3600},
        Case{"expires without Date counts from now",
             H{{"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"}}, true, false, 3600},
        Case{"expires in the past (freshness-expires-past)",
             H{{"Date", kDateNow}, {"Expires", "Mon, 13 Nov 2023 00:00:00 GMT"}}, true, false, 0},
        Case{"expires equal to date (freshness-expires-present)",
             H{{"Date", kDateNow}, {"Expires", kDateNow}}, true, false, 0},
        Case{"expires before date (freshness-expires-old-date)",
             H{{"Date", "Tue, 14 Nov 2023 22:20:00 GMT"},
               {"Expires", "Tue, 14 Nov 2023 22:18:20 GMT"}},
             true, false, 0},
        Case{"invalid expires is expired (freshness-expires-invalid)", H{{"Expires", "0"}}, true,
             false, 0},
        Case{"expires in UTC is invalid (freshness-expires-invalid-utc)",
             H{{"Date", kDateNow}, {"Expires", "Tue, 14 Nov 2023 23:13:20 UTC"}}, true, false, 0},
        Case{"two-digit year in IMF form is invalid",
             H{{"Date", kDateNow}, {"Expires", "Tue, 14 Nov 23 23:13:20 GMT"}}, true, false, 0},
        Case{"no comma is invalid",
             H{{"Date", kDateNow}, {"Expires", "Tue 14 Nov 2023 23:13:20 GMT"}}, true, false, 0},
        Case{"double spaces are invalid",
             H{{"Date", kDateNow}, {"Expires", "Tue, 14  Nov 2023 23:13:20 GMT"}}, true, false, 0},
        Case{"dashes in IMF form are invalid",
             H{{"Date", kDateNow}, {"Expires", "Tue, 14-Nov-2023 23:13:20 GMT"}}, true, false, 0},
        Case{"time with periods is invalid",
             H{{"Date", kDateNow}, {"Expires", "Tue, 14 Nov 2023 23.13.20 GMT"}}, true, false, 0},
        Case{"one-digit hour is invalid",
             H{{"Date", kDateNow}, {"Expires", "Tue, 14 Nov 2023 3:13:20 GMT"}}, true, false, 0},
        Case{"RFC 850 form is valid",
             H{{"Date", kDateNow}, {"Expires", "Tuesday, 14-Nov-23 23:13:20 GMT"}}, true, false,
             3600},
        Case{"asctime form is valid",
             H{{"Date", kDateNow}, {"Expires", "Tue Nov 14 23:13:20 2023"}}, true, false, 3600},
        Case{"two different Expires lines: stale (freshness-expires-invalid-multiple-lines)",
             H{{"Date", kDateNow},
               {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"},
               {"Expires", "Wed, 15 Nov 2023 23:13:20 GMT"}},
             true, false, 0},
        Case{"two equal Expires lines are one",
             H{{"Date", kDateNow},
               {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"},
               {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"}},
             true, false, 3600},
        Case{"max-age beats expires",
             H{{"Cache-Control", "max-age=5"}, {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"}}, true,
             false, 5},
        Case{"max-age=0 beats a future expires (freshness-max-age-0-expires)",
             H{{"Cache-Control", "max-age=0"}, {"Expires", "Tue, 14 Nov 2023 23:13:20 GMT"}}, true,
             false, 0},
        Case{"max-age beats an invalid expires",
             H{{"Cache-Control", "max-age=50"}, {"Expires", "0"}}, true, false, 50},
        Case{"Age counts against Expires (freshness-expires-age-slow-date)",
             H{{"Date", "Tue, 14 Nov 2023 22:13:10 GMT"},
               {"Expires", "Tue, 14 Nov 2023 22:13:30 GMT"},
               {"Age", "25"}},
             true, false, -5}));

// Age (RFC 9111 §4.2.3, §5.1): the larger of Age and Date's apparent age.
INSTANTIATE_TEST_SUITE_P(
    Age, DecideTest,
    testing::Values(
        Case{"age reduces lifetime", H{{"Cache-Control", "max-age=100"}, {"Age", "40"}}, true,
             false, 60},
        Case{"age beyond max-age is stale (freshness-max-age-age)",
             H{{"Date", kDateNow}, {"Cache-Control", "max-age=3600"}, {"Age", "7200"}}, true, false,
             -3600},
        Case{"an old Date ages the response",
             H{{"Date", "Tue, 14 Nov 2023 22:12:20 GMT"}, {"Cache-Control", "max-age=100"}}, true,
             false, 40},
        Case{"a Date in the future ages nothing",
             H{{"Date", "Tue, 14 Nov 2023 23:13:20 GMT"}, {"Cache-Control", "max-age=100"}}, true,
             false, 100},
        Case{"non-numeric Age ignored (age-parse-nonnumeric)",
             H{{"Cache-Control", "max-age=3600"}, {"Age", "abc"}}, true, false, 3600},
        Case{"negative Age ignored (age-parse-negative)",
             H{{"Cache-Control", "max-age=3600"}, {"Age", "-7200"}}, true, false, 3600},
        Case{"fractional Age ignored (age-parse-float)",
             H{{"Cache-Control", "max-age=3600"}, {"Age", "7200.0"}}, true, false, 3600},
        Case{"Age 2^31-1 is stale (age-parse-large-minus-one)",
             H{{"Cache-Control", "max-age=3600"}, {"Age", "2147483647"}}, true, false,
             3600 - 2147483647},
        Case{"huge Age saturates (age-parse-larger)",
             H{{"Cache-Control", "max-age=3600"}, {"Age", "99999999999999999999"}}, true, false,
             3600 - kMaxDeltaSeconds},
        Case{"first member of a list (age-parse-suffix)",
             H{{"Cache-Control", "max-age=3600"}, {"Age", "7200, 0"}}, true, false, -3600},
        Case{"first member of a list (age-parse-prefix)",
             H{{"Cache-Control", "max-age=3600"}, {"Age", "0, 7200"}}, true, false, 3600},
        Case{"first line (age-parse-suffix-twoline)",
             H{{"Cache-Control", "max-age=3600"}, {"Age", "7200"}, {"Age", "0"}}, true, false,
             -3600},
        Case{"first line (age-parse-prefix-twoline)",
             H{{"Cache-Control", "max-age=3600"}, {"Age", "0"}, {"Age", "7200"}}, true, false,
             3600},
        Case{"a parameter is tolerated (age-parse-parameter)",
             H{{"Cache-Control", "max-age=3600"}, {"Age", "7200;foo=bar"}}, true, false, -3600},
        Case{"override ignores Age", H{{"Age", "7200"}}, true, false, kHeuristic, 200, true}));

// Heuristic freshness (RFC 9111 §4.2.2): the route's ttl, only for heuristically cacheable
// statuses and only without explicit freshness.
INSTANTIATE_TEST_SUITE_P(
    Heuristic, DecideTest,
    testing::Values(
        Case{"nothing: route ttl", H{}, true, false, kHeuristic},
        Case{"Last-Modified alone: route ttl",
             H{{"Last-Modified", "Mon, 13 Nov 2023 00:00:00 GMT"}}, true, false, kHeuristic},
        Case{"404 is heuristically cacheable", H{}, true, false, kHeuristic, 404},
        Case{"410 is", H{}, true, false, kHeuristic, 410},
        Case{"301 is", H{}, true, false, kHeuristic, 301},
        Case{"206 is", H{}, true, false, kHeuristic, 206},
        Case{"403 is not", H{}, true, false, 0, 403}, Case{"302 is not", H{}, true, false, 0, 302},
        Case{"502 is not", H{}, true, false, 0, 502}, Case{"503 is not", H{}, true, false, 0, 503},
        Case{"504 is not", H{}, true, false, 0, 504},
        Case{"599 is not, public or not", H{{"Cache-Control", "public"}}, true, false, 0, 599},
        Case{"403 with max-age: explicit freshness", H{{"Cache-Control", "max-age=30"}}, true,
             false, 30, 403},
        Case{"a past Expires stops the heuristic (status-200-stale)",
             H{{"Date", kDateNow},
               {"Expires", "Tue, 14 Nov 2023 20:00:00 GMT"},
               {"Last-Modified", "Mon, 13 Nov 2023 00:00:00 GMT"}},
             true, false, 0}));

struct AgeCase {
  const char* name;
  Headers headers;
  std::optional<std::int64_t> want;
};

void PrintTo(const AgeCase& c, std::ostream* os) { *os << c.name; }

class AgeTest : public testing::TestWithParam<AgeCase> {};

TEST_P(AgeTest, Parses) { EXPECT_EQ(parse_age(GetParam().headers), GetParam().want); }

INSTANTIATE_TEST_SUITE_P(
    Table, AgeTest,
    testing::Values(AgeCase{"absent", H{}, std::nullopt}, AgeCase{"zero", H{{"Age", "0"}}, 0},
                    AgeCase{"digits", H{{"age", "120"}}, 120},
                    AgeCase{"OWS", H{{"Age", " 12 "}}, 12},
                    AgeCase{"empty", H{{"Age", ""}}, std::nullopt},
                    AgeCase{"quoted", H{{"Age", "\"12\""}}, std::nullopt},
                    AgeCase{"plus sign", H{{"Age", "+12"}}, std::nullopt},
                    AgeCase{"hex", H{{"Age", "0x10"}}, std::nullopt},
                    AgeCase{"trailing text", H{{"Age", "12a"}}, std::nullopt},
                    AgeCase{"2^31 exactly", H{{"Age", "2147483648"}}, kMaxDeltaSeconds},
                    AgeCase{"2^31 + 1 saturates", H{{"Age", "2147483649"}}, kMaxDeltaSeconds},
                    AgeCase{"list: first", H{{"Age", "5, 9"}}, 5},
                    AgeCase{"list with a bad first member", H{{"Age", "x, 9"}}, std::nullopt},
                    AgeCase{"parameter", H{{"Age", "7200;foo=111"}}, 7200}));

TEST(CacheControl, ParsesEveryDirective) {
  CacheControl cc = parse_cache_control(
      "Public, must-revalidate, PROXY-REVALIDATE, s-maxage=5, stale-while-revalidate=30, "
      "stale-if-error=\"600\", no-cache=\"Set-Cookie, X-A\", nothing");
  EXPECT_TRUE(cc.public_);
  EXPECT_TRUE(cc.must_revalidate);
  EXPECT_TRUE(cc.proxy_revalidate);
  EXPECT_FALSE(cc.no_cache);
  EXPECT_FALSE(cc.no_store);
  EXPECT_FALSE(cc.private_);
  EXPECT_EQ(cc.s_maxage, 5);
  EXPECT_EQ(cc.max_age, std::nullopt);
  EXPECT_EQ(cc.stale_while_revalidate, 30);
  EXPECT_EQ(cc.stale_if_error, 600);
  EXPECT_EQ(cc.no_cache_fields, (std::vector<std::string>{"set-cookie", "x-a"}));
}

TEST(CacheControl, EmptyAndJunkAreHarmless) {
  for (const char* v : {"", ",,,", " , ", "=", "=5", "\"", "max-age=\"", "a=\"unterminated, b"}) {
    CacheControl cc = parse_cache_control(v);
    EXPECT_FALSE(cc.no_store) << v;
    EXPECT_FALSE(cc.no_cache) << v;
  }
  // An unterminated quote swallows the rest: the max-age after it is not a directive.
  EXPECT_EQ(parse_cache_control("a=\"x, max-age=5").max_age, std::nullopt);
}

TEST(StaleWindows, FromTheStoredCacheControl) {
  conf::Route route;
  StaleWindows w = stale_windows(
      H{{"Cache-Control", "max-age=1, stale-while-revalidate=30, stale-if-error=60"}}, route);
  EXPECT_TRUE(w.allowed);
  EXPECT_EQ(w.while_revalidate, 30);
  EXPECT_EQ(w.if_error, 60);
  for (const char* cc : {"must-revalidate", "proxy-revalidate", "no-cache", "s-maxage=0"}) {
    EXPECT_FALSE(stale_windows(H{{"Cache-Control", cc}}, route).allowed) << cc;
  }
  route.ttl_override = true;
  w = stale_windows(H{{"Cache-Control", "must-revalidate, stale-if-error=60"}}, route);
  EXPECT_TRUE(w.allowed);
  EXPECT_EQ(w.if_error, 0);
}

TEST(Replayable, KeepsEndToEndDropsHopByHopAndOwn) {
  Headers origin = {{"Cache-Control", "max-age=1"},
                    {"Expires", "x"},
                    {"Date", kDateNow},
                    {"Content-Disposition", "attachment"},
                    {"Content-Language", "en"},
                    {"x-amz-meta-owner", "eucalyptus"},
                    {"Connection", "keep-alive, X-Private"},
                    {"X-Private", "hop"},
                    {"Keep-Alive", "timeout=5"},
                    {"Transfer-Encoding", "chunked"},
                    {"Proxy-Authenticate", "Basic"},
                    {"Upgrade", "h2c"},
                    {"TE", "trailers"},
                    {"x-amz-request-id", "r"},
                    {"x-amz-id-2", "i"},
                    {"Server", "Ceph"},
                    {"Content-Length", "5"},
                    {"Content-Range", "bytes 0-4/5"},
                    {"Age", "3"},
                    {"ETag", "\"e\""},
                    {"Content-Encoding", "gzip"},
                    {"Set-Cookie", "a=b"},
                    {"Test-Header", "1"},
                    {"Test-Header", "2"}};
  Headers want = {{"Cache-Control", "max-age=1"},
                  {"Expires", "x"},
                  {"Date", kDateNow},
                  {"Content-Disposition", "attachment"},
                  {"Content-Language", "en"},
                  {"x-amz-meta-owner", "eucalyptus"},
                  {"Set-Cookie", "a=b"},
                  {"Test-Header", "1"},
                  {"Test-Header", "2"}};
  EXPECT_EQ(replayable_headers(origin), want);
}

TEST(Replayable, DropsFieldsQualifiedNoCacheNames) {
  Headers origin = {{"Cache-Control", "no-cache=\"set-cookie, x-a\", max-age=60"},
                    {"Set-Cookie", "s=1"},
                    {"X-A", "1"},
                    {"X-B", "2"}};
  Headers want = {{"Cache-Control", "no-cache=\"set-cookie, x-a\", max-age=60"}, {"X-B", "2"}};
  EXPECT_EQ(replayable_headers(origin), want);
}

TEST(HopByHop, FixedAndNominated) {
  for (const char* h : {"Connection", "keep-alive", "Proxy-Authorization", "Proxy-Connection", "TE",
                        "Trailer", "Transfer-Encoding", "Upgrade", "Proxy-Authentication-Info"}) {
    EXPECT_TRUE(is_hop_by_hop(h)) << h;
  }
  EXPECT_FALSE(is_hop_by_hop("Set-Cookie"));
  EXPECT_EQ(connection_nominated(H{{"Connection", "A, b"}, {"connection", " close "}}),
            (std::vector<std::string>{"a", "b", "close"}));
}

TEST(Tarball, Suffixes) {
  EXPECT_TRUE(is_tarball_key("a/b.tgz"));
  EXPECT_TRUE(is_tarball_key("a/b.TAR.GZ"));
  EXPECT_FALSE(is_tarball_key("catalog.json"));
  EXPECT_FALSE(is_tarball_key("tgz"));
}

}  // namespace
}  // namespace proxy
