// Table-driven tests of the request and fill-table decisions (proxy/decide.h): entry states,
// grace, the first byte of a fill, fill outcomes, upstream error replies and body plans.
#include "proxy/decide.h"

#include <gtest/gtest.h>

#include <limits>
#include <ostream>

namespace proxy {
namespace {

constexpr std::int64_t kNow = 1700000000;  // Tue, 14 Nov 2023 22:13:20 GMT
constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
const char* kLmText = "Tue, 14 Nov 2023 22:13:20 GMT";

// A two-chunk object of 100 bytes: `chunks` is the bitmap (0b11 complete, 0b01 half there).
cache::Meta meta(std::int64_t expires_at, std::uint8_t chunks = 0b11, std::uint32_t flags = 0) {
  cache::Meta m;
  m.generation = 7;
  m.size = 100;
  m.chunk_size = 64;
  m.bitmap = {chunks};
  m.expires_at = expires_at;
  m.flags = flags;
  return m;
}
constexpr std::uint32_t kNoCache = cache::Meta::kFlagNoCache;

// ---------------------------------------------------------------- classify, is_fresh

struct ClassifyCase {
  const char* name;
  std::optional<cache::Meta> m;
  bool just_revalidated;
  EntryState want;
};

void PrintTo(const ClassifyCase& c, std::ostream* os) { *os << c.name; }

class ClassifyTest : public testing::TestWithParam<ClassifyCase> {};

TEST_P(ClassifyTest, Classifies) {
  const ClassifyCase& c = GetParam();
  EXPECT_EQ(classify(c.m, kNow, c.just_revalidated), c.want) << c.name;
}

cache::Meta empty_object(std::int64_t expires_at) {
  cache::Meta m;
  m.expires_at = expires_at;  // size 0: complete with no chunk at all
  return m;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ClassifyTest,
    testing::Values(
        ClassifyCase{"no record", std::nullopt, false, EntryState::kAbsent},
        ClassifyCase{"no record, revalidated", std::nullopt, true, EntryState::kAbsent},
        ClassifyCase{"complete, fresh", meta(kNow + 1), false, EntryState::kFresh},
        ClassifyCase{"complete, now == expires_at", meta(kNow), false, EntryState::kStale},
        ClassifyCase{"complete, expired", meta(kNow - 1), false, EntryState::kStale},
        ClassifyCase{"complete, no-cache", meta(kNow + 60, 0b11, kNoCache), false,
                     EntryState::kStale},
        ClassifyCase{"complete, expired, just revalidated", meta(kNow), true, EntryState::kFresh},
        ClassifyCase{"complete, no-cache, just revalidated", meta(kNow + 60, 0b11, kNoCache), true,
                     EntryState::kFresh},
        ClassifyCase{"empty object, fresh", empty_object(kNow + 1), false, EntryState::kFresh},
        ClassifyCase{"empty object, expired", empty_object(kNow), false, EntryState::kStale},
        ClassifyCase{"incomplete, fresh", meta(kNow + 1, 0b01), false, EntryState::kPartial},
        ClassifyCase{"incomplete, no chunk yet, fresh", meta(kNow + 1, 0b00), false,
                     EntryState::kPartial},
        ClassifyCase{"incomplete, second chunk only, fresh", meta(kNow + 1, 0b10), false,
                     EntryState::kPartial},
        ClassifyCase{"incomplete, now == expires_at", meta(kNow, 0b01), false, EntryState::kAbsent},
        ClassifyCase{"incomplete, expired", meta(kNow - 1, 0b01), false, EntryState::kAbsent},
        ClassifyCase{"incomplete, no-cache", meta(kNow + 60, 0b01, kNoCache), false,
                     EntryState::kAbsent},
        ClassifyCase{"incomplete, fresh, just revalidated", meta(kNow + 1, 0b01), true,
                     EntryState::kPartial},
        ClassifyCase{"incomplete, expired, just revalidated", meta(kNow, 0b01), true,
                     EntryState::kAbsent}));

TEST(IsFreshTest, MetaIgnoresCompleteness) {
  // A hot-cache copy of a record has its bitmap dropped; freshness must not depend on it.
  cache::Meta m = meta(kNow + 1);
  m.bitmap.clear();
  EXPECT_TRUE(is_fresh(m, kNow));
  EXPECT_FALSE(is_fresh(m, kNow + 1));
  m.flags = kNoCache;
  EXPECT_FALSE(is_fresh(m, kNow));
}

struct FreshnessCase {
  const char* name;
  bool revalidate_each_use;
  std::int64_t expires_at;
  bool want;
};

void PrintTo(const FreshnessCase& c, std::ostream* os) { *os << c.name; }

class IsFreshTest : public testing::TestWithParam<FreshnessCase> {};

TEST_P(IsFreshTest, SameRuleForMetaAndHead) {
  const FreshnessCase& c = GetParam();
  Freshness f;
  f.storable = true;
  f.revalidate_each_use = c.revalidate_each_use;
  f.expires_at = c.expires_at;
  EXPECT_EQ(is_fresh(f, kNow), c.want) << c.name;
  cache::Meta m = meta(c.expires_at, 0b11, c.revalidate_each_use ? kNoCache : 0);
  EXPECT_EQ(is_fresh(m, kNow), c.want) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Table, IsFreshTest,
                         testing::Values(FreshnessCase{"before expiry", false, kNow + 1, true},
                                         FreshnessCase{"at expiry", false, kNow, false},
                                         FreshnessCase{"after expiry", false, kNow - 1, false},
                                         FreshnessCase{"no-cache", true, kNow + 60, false},
                                         FreshnessCase{"zero lifetime", false, kNow, false}));

// ---------------------------------------------------------------- grace

struct GraceCase {
  const char* name;
  std::int64_t expires_at;
  std::int64_t now;
  std::int64_t grace;
  bool want;
  const char* cache_control = nullptr;  // the stored response's Cache-Control, if any
  bool ttl_override = false;
};

void PrintTo(const GraceCase& c, std::ostream* os) { *os << c.name; }

cache::Meta stored(const GraceCase& c) {
  cache::Meta m = meta(c.expires_at);
  if (c.cache_control != nullptr) {
    m.headers = {{"Cache-Control", c.cache_control}};
  }
  return m;
}

conf::Route route_of(const GraceCase& c) {
  conf::Route route;
  route.grace = std::chrono::seconds(c.grace);
  route.ttl_override = c.ttl_override;
  return route;
}

class GraceTest : public testing::TestWithParam<GraceCase> {};

TEST_P(GraceTest, Allows) {
  const GraceCase& c = GetParam();
  EXPECT_EQ(grace_allows(stored(c), c.now, route_of(c)), c.want) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Table, GraceTest,
    testing::Values(
        GraceCase{"no grace, expired", kNow - 1, kNow, 0, false},
        GraceCase{"no grace, at expiry", kNow, kNow, 0, false},
        GraceCase{"no grace, not yet expired", kNow + 1, kNow, 0, true},
        GraceCase{"within grace", kNow - 10, kNow, 60, true},
        GraceCase{"last second of grace", kNow - 59, kNow, 60, true},
        GraceCase{"grace just over", kNow - 60, kNow, 60, false},
        GraceCase{"long past grace", kNow - 86400, kNow, 60, false},
        GraceCase{"huge grace does not wrap", kMax - 5, kNow, kMax, true},
        GraceCase{"huge expiry does not wrap", kMax, kMax - 1, 10, true},
        GraceCase{"very old expiry", kMin, kNow, 86400, false},
        // RFC 9111 §4.2.4 / §5.2.2: these responses are never served stale, grace or not.
        GraceCase{"must-revalidate forbids grace", kNow - 10, kNow, 60, false,
                  "max-age=5, must-revalidate"},
        GraceCase{"proxy-revalidate forbids grace", kNow - 10, kNow, 60, false,
                  "proxy-revalidate"},
        GraceCase{"no-cache forbids grace", kNow - 10, kNow, 60, false, "no-cache"},
        GraceCase{"No-Cache in any case", kNow - 10, kNow, 60, false, "No-CaChE"},
        GraceCase{"s-maxage forbids grace", kNow - 10, kNow, 60, false, "s-maxage=5"},
        GraceCase{"qualified no-cache does not", kNow - 10, kNow, 60, true,
                  "no-cache=\"set-cookie\""},
        GraceCase{"public does not", kNow - 10, kNow, 60, true, "public, max-age=5"},
        // RFC 5861 §4: stale-if-error extends the window on an upstream failure.
        GraceCase{"stale-if-error beyond grace", kNow - 100, kNow, 60, true,
                  "max-age=5, stale-if-error=300"},
        GraceCase{"stale-if-error without grace", kNow - 100, kNow, 0, true,
                  "stale-if-error=300"},
        GraceCase{"stale-if-error over", kNow - 300, kNow, 0, false, "stale-if-error=300"},
        GraceCase{"grace longer than stale-if-error", kNow - 100, kNow, 600, true,
                  "stale-if-error=10"},
        GraceCase{"stale-if-error with must-revalidate", kNow - 100, kNow, 0, false,
                  "must-revalidate, stale-if-error=300"},
        GraceCase{"ttl_override: the route's grace only", kNow - 100, kNow, 0, false,
                  "stale-if-error=300", true},
        GraceCase{"ttl_override ignores must-revalidate", kNow - 10, kNow, 60, true,
                  "must-revalidate", true}));

class WhileRevalidatingTest : public testing::TestWithParam<GraceCase> {};

// GraceCase.grace is unused here: stale-while-revalidate is the response's alone.
TEST_P(WhileRevalidatingTest, Serves) {
  const GraceCase& c = GetParam();
  EXPECT_EQ(serve_while_revalidating(stored(c), c.now, route_of(c)), c.want) << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Table, WhileRevalidatingTest,
    testing::Values(
        GraceCase{"no directive", kNow - 1, kNow, 600, false},
        GraceCase{"within the window", kNow - 10, kNow, 0, true,
                  "max-age=1, stale-while-revalidate=60"},
        GraceCase{"last second", kNow - 59, kNow, 0, true, "stale-while-revalidate=60"},
        GraceCase{"window over", kNow - 60, kNow, 0, false, "stale-while-revalidate=60"},
        GraceCase{"zero window", kNow - 1, kNow, 0, false, "stale-while-revalidate=0"},
        GraceCase{"malformed window", kNow - 1, kNow, 0, false, "stale-while-revalidate=1h"},
        GraceCase{"must-revalidate forbids it", kNow - 10, kNow, 0, false,
                  "must-revalidate, stale-while-revalidate=60"},
        GraceCase{"s-maxage forbids it", kNow - 10, kNow, 0, false,
                  "s-maxage=1, stale-while-revalidate=60"},
        GraceCase{"no-cache forbids it", kNow - 10, kNow, 0, false,
                  "no-cache, stale-while-revalidate=60"},
        GraceCase{"ttl_override ignores it", kNow - 10, kNow, 0, false,
                  "stale-while-revalidate=60", true},
        GraceCase{"huge window does not wrap", kMax - 5, kNow, 0, true,
                  "stale-while-revalidate=99999999999999999999"}));

// ---------------------------------------------------------------- first_byte_of

struct FirstByteCase {
  const char* name;
  std::optional<std::vector<RangeSpec>> ranges;
  std::optional<std::uint64_t> known_size;
  std::uint64_t want;
};

void PrintTo(const FirstByteCase& c, std::ostream* os) { *os << c.name; }

class FirstByteTest : public testing::TestWithParam<FirstByteCase> {};

TEST_P(FirstByteTest, Computes) {
  const FirstByteCase& c = GetParam();
  EXPECT_EQ(first_byte_of(c.ranges, c.known_size), c.want) << c.name;
}

using Specs = std::vector<RangeSpec>;

INSTANTIATE_TEST_SUITE_P(
    Table, FirstByteTest,
    testing::Values(
        FirstByteCase{"no range", std::nullopt, std::nullopt, 0},
        FirstByteCase{"no range, known size", std::nullopt, 1000, 0},
        FirstByteCase{"empty list", Specs{}, 1000, 0},
        FirstByteCase{"plain", Specs{{false, 500, 599}}, std::nullopt, 500},
        FirstByteCase{"open-ended", Specs{{false, 300, std::nullopt}}, std::nullopt, 300},
        FirstByteCase{"past the end is passed on", Specs{{false, 5000, 5009}}, 1000, 5000},
        FirstByteCase{"first spec as written, not lowest", Specs{{false, 500, 599}, {false, 0, 9}},
                      std::nullopt, 500},
        FirstByteCase{"suffix, unknown size", Specs{{true, 100, std::nullopt}}, std::nullopt,
                      kUnknownByte},
        FirstByteCase{"suffix, known size", Specs{{true, 100, std::nullopt}}, 1000, 900},
        FirstByteCase{"suffix equal to size", Specs{{true, 1000, std::nullopt}}, 1000, 0},
        FirstByteCase{"suffix larger than size", Specs{{true, 5000, std::nullopt}}, 1000, 0},
        FirstByteCase{"suffix of an empty object", Specs{{true, 10, std::nullopt}}, 0, 0},
        FirstByteCase{"-0 points at the end", Specs{{true, 0, std::nullopt}}, 1000, 1000},
        FirstByteCase{"suffix first, then plain", Specs{{true, 10, std::nullopt}, {false, 0, 0}},
                      std::nullopt, kUnknownByte}));

// ---------------------------------------------------------------- outcome_of_fill

struct OutcomeCase {
  bool stored;
  bool joined;
  bool joined_done;
  Outcome want;
};

void PrintTo(const OutcomeCase& c, std::ostream* os) {
  *os << "stored=" << c.stored << " joined=" << c.joined << " joined_done=" << c.joined_done;
}

class OutcomeTest : public testing::TestWithParam<OutcomeCase> {};

TEST_P(OutcomeTest, Chooses) {
  const OutcomeCase& c = GetParam();
  EXPECT_EQ(outcome_of_fill(c.stored, c.joined, c.joined_done), c.want)
      << c.stored << c.joined << c.joined_done;
}

INSTANTIATE_TEST_SUITE_P(Table, OutcomeTest,
                         testing::Values(OutcomeCase{false, false, false, Outcome::kPass},
                                         OutcomeCase{false, true, false, Outcome::kPass},
                                         OutcomeCase{false, true, true, Outcome::kPass},
                                         OutcomeCase{true, false, false, Outcome::kMiss},
                                         OutcomeCase{true, true, false, Outcome::kCoalesced},
                                         OutcomeCase{true, true, true, Outcome::kHit}));

// ---------------------------------------------------------------- error_reply

struct ErrorCase {
  s3::Errc code;
  conf::Signature sig;
  int status;
  const char* reason;
  const char* body;
  ErrorNote note;
};

void PrintTo(const ErrorCase& c, std::ostream* os) {
  *os << s3::errc_name(c.code) << " sig=" << static_cast<int>(c.sig);
}

class ErrorReplyTest : public testing::TestWithParam<ErrorCase> {};

TEST_P(ErrorReplyTest, Maps) {
  const ErrorCase& c = GetParam();
  s3::Error e{c.code, 0, "SignatureDoesNotMatch", "boom"};
  ErrorReply r = error_reply(e, "starter-emis", c.sig);
  EXPECT_EQ(r.status, c.status) << s3::errc_name(c.code);
  EXPECT_EQ(r.reason, c.reason) << s3::errc_name(c.code);
  EXPECT_EQ(r.body, c.body) << s3::errc_name(c.code);
  EXPECT_EQ(r.note, c.note) << s3::errc_name(c.code);
}

using conf::Signature;
using s3::Errc;

INSTANTIATE_TEST_SUITE_P(
    Table, ErrorReplyTest,
    testing::Values(ErrorCase{Errc::kNotFound, Signature::kV4, 404, "Not Found",
                              "not found in bucket starter-emis\n", ErrorNote::kNone},
                    ErrorCase{Errc::kNotFound, Signature::kNone, 404, "Not Found",
                              "not found in bucket starter-emis\n", ErrorNote::kNone},
                    ErrorCase{Errc::kForbidden, Signature::kNone, 404, "Not Found",
                              "not found (or not public) in bucket starter-emis\n",
                              ErrorNote::kAnonymousDenied},
                    ErrorCase{Errc::kForbidden, Signature::kV2, 502, "Bad Gateway",
                              "upstream denied access to the object\n", ErrorNote::kNone},
                    ErrorCase{Errc::kForbidden, Signature::kV4, 502, "Bad Gateway",
                              "upstream denied access to the object\n", ErrorNote::kNone},
                    ErrorCase{Errc::kAuth, Signature::kV4, 502, "Bad Gateway",
                              "upstream rejected tusk's credentials (SignatureDoesNotMatch)\n",
                              ErrorNote::kCredentialsRejected},
                    ErrorCase{Errc::kTls, Signature::kV4, 502, "Bad Gateway",
                              "upstream TLS verification failed\n", ErrorNote::kTlsFailed},
                    ErrorCase{Errc::kTimeout, Signature::kV4, 504, "Gateway Timeout",
                              "upstream timed out\n", ErrorNote::kNone},
                    ErrorCase{Errc::kRefused, Signature::kV4, 502, "Bad Gateway",
                              "upstream unreachable\n", ErrorNote::kNone},
                    ErrorCase{Errc::kPreconditionFailed, Signature::kV4, 502, "Bad Gateway",
                              "upstream error: boom\n", ErrorNote::kNone},
                    ErrorCase{Errc::kRangeNotSatisfiable, Signature::kV4, 502, "Bad Gateway",
                              "upstream error: boom\n", ErrorNote::kNone},
                    ErrorCase{Errc::kProtocol, Signature::kV4, 502, "Bad Gateway",
                              "upstream error: boom\n", ErrorNote::kNone},
                    ErrorCase{Errc::kServer, Signature::kV4, 502, "Bad Gateway",
                              "upstream error: boom\n", ErrorNote::kNone},
                    ErrorCase{Errc::kHttp, Signature::kV4, 502, "Bad Gateway",
                              "upstream error: boom\n", ErrorNote::kNone},
                    ErrorCase{Errc::kCancelled, Signature::kV4, 502, "Bad Gateway",
                              "upstream error: boom\n", ErrorNote::kNone}));

// A `signature: none` upstream's own answers pass through as they are; what answers tusk's own
// requests (412 to If-Match, 416 to a probe range) and what did not arrive whole do not.
struct PassCase {
  const char* name;
  int status;
  s3::Errc code;
  bool whole;  // the whole answer arrived (Error::answer set)
  int want_status;
  bool passed;
};

void PrintTo(const PassCase& c, std::ostream* os) { *os << c.name; }

class PassThroughTest : public testing::TestWithParam<PassCase> {};

TEST_P(PassThroughTest, Passes) {
  const PassCase& c = GetParam();
  s3::Error e{c.code, c.status, "", "upstream " + std::to_string(c.status)};
  if (c.whole) {
    s3::ResponseHead head;
    head.status = c.status;
    head.headers = {{"Content-Type", "text/html"},
                    {"Content-Length", "9"},
                    {"Connection", "close"},
                    {"Retry-After", "7"},
                    {"Location", "/elsewhere"},
                    {"ETag", "\"e\""},
                    {"Last-Modified", "Tue, 27 Mar 2007 19:36:42 GMT"},
                    {"Content-Encoding", "gzip"}};
    e.answer = std::make_shared<s3::Answer>(s3::Answer{head, "Odd\r\nX: 1", "<p>hi</p>"});
  }
  ErrorReply r = error_reply(e, "b", Signature::kNone);
  EXPECT_EQ(r.status, c.want_status);
  EXPECT_EQ(r.passed, c.passed);
  if (c.passed) {
    EXPECT_EQ(r.body, "<p>hi</p>");
    EXPECT_EQ(r.reason, "");  // a reason with CR LF is not sent on
    EXPECT_EQ(find_header(r.headers, "content-type"), "text/html");
    EXPECT_EQ(find_header(r.headers, "retry-after"), "7");
    EXPECT_EQ(find_header(r.headers, "location"), "/elsewhere");
    EXPECT_EQ(find_header(r.headers, "etag"), "\"e\"");  // relayed as they are
    EXPECT_EQ(find_header(r.headers, "last-modified"), "Tue, 27 Mar 2007 19:36:42 GMT");
    EXPECT_EQ(find_header(r.headers, "content-encoding"), "gzip");
    EXPECT_EQ(find_header(r.headers, "content-length"), "");  // framing is tusk's
    EXPECT_EQ(find_header(r.headers, "connection"), "");
  }
  // A signed upstream keeps S3's mapping whatever the answer.
  EXPECT_FALSE(error_reply(e, "b", Signature::kV4).passed);
}

INSTANTIATE_TEST_SUITE_P(
    Table, PassThroughTest,
    testing::Values(PassCase{"203", 203, Errc::kHttp, true, 203, true},
                    PassCase{"204", 204, Errc::kHttp, true, 204, true},
                    PassCase{"299 (unknown 2xx)", 299, Errc::kHttp, true, 299, true},
                    PassCase{"301 with Location", 301, Errc::kHttp, true, 301, true},
                    PassCase{"403", 403, Errc::kForbidden, true, 403, true},
                    PassCase{"404", 404, Errc::kNotFound, true, 404, true},
                    PassCase{"410", 410, Errc::kHttp, true, 410, true},
                    PassCase{"499 (unknown 4xx)", 499, Errc::kHttp, true, 499, true},
                    PassCase{"500", 500, Errc::kServer, true, 500, true},
                    PassCase{"503", 503, Errc::kServer, true, 503, true},
                    PassCase{"599 (unknown 5xx)", 599, Errc::kServer, true, 599, true},
                    PassCase{"412 answers tusk's If-Match", 412, Errc::kPreconditionFailed, true,
                             502, false},
                    PassCase{"416 answers tusk's probe", 416, Errc::kRangeNotSatisfiable, true,
                             502, false},
                    PassCase{"a body over 64 KiB", 500, Errc::kServer, false, 502, false},
                    PassCase{"no answer at all", 0, Errc::kRefused, false, 502, false},
                    PassCase{"a timeout", 0, Errc::kTimeout, false, 504, false}));

// ---------------------------------------------------------------- plan_body

struct PlanCase {
  const char* name;
  std::string Conditions::*condition;  // the one condition header sent; nullptr: none
  const char* value;
  const char* range;  // a Range header, parsed with parse_range; nullptr: none
  std::uint64_t size;
  BodyPlan::Kind kind;
  std::vector<ByteSpan> spans = {};
};

void PrintTo(const PlanCase& c, std::ostream* os) { *os << c.name; }

using Kind = BodyPlan::Kind;

struct Status {
  int code;
  const char* reason;
};
Status status_of(Kind k) {
  switch (k) {
    case Kind::kNotModified:
      return {304, "Not Modified"};
    case Kind::kPreconditionFailed:
      return {412, "Precondition Failed"};
    case Kind::kUnsatisfiable:
      return {416, "Range Not Satisfiable"};
    case Kind::kFull:
      return {200, "OK"};
    case Kind::kSingle:
    case Kind::kMultipart:
      return {206, "Partial Content"};
  }
  return {0, ""};
}

class PlanBodyTest : public testing::TestWithParam<PlanCase> {};

TEST_P(PlanBodyTest, Plans) {
  const PlanCase& c = GetParam();
  Validators v{"\"abc\"", kNow};
  std::optional<std::vector<RangeSpec>> ranges;
  if (c.range != nullptr) {
    ranges = parse_range(c.range);
  }
  Conditions conditions;
  if (c.condition != nullptr) {
    conditions.*c.condition = c.value;
  }
  BodyPlan p = plan_body(conditions, v, ranges, c.size);
  EXPECT_EQ(p.kind, c.kind) << c.name;
  EXPECT_EQ(p.status, status_of(c.kind).code) << c.name;
  EXPECT_STREQ(p.reason, status_of(c.kind).reason) << c.name;
  EXPECT_EQ(p.spans, c.spans) << c.name;
}

using C = Conditions;
using Spans = std::vector<ByteSpan>;
const char* kEarlier = "Mon, 13 Nov 2023 00:00:00 GMT";

INSTANTIATE_TEST_SUITE_P(
    Table, PlanBodyTest,
    testing::Values(
        PlanCase{"no conditions, no range", nullptr, nullptr, nullptr, 1000, Kind::kFull},
        PlanCase{"empty object", nullptr, nullptr, nullptr, 0, Kind::kFull},
        PlanCase{"malformed range is ignored", nullptr, nullptr, "bytes=9-1", 1000, Kind::kFull},
        PlanCase{"If-None-Match", &C::if_none_match, "\"abc\"", nullptr, 1000, Kind::kNotModified},
        PlanCase{"If-None-Match weak", &C::if_none_match, "W/\"abc\"", nullptr, 1000,
                 Kind::kNotModified},
        PlanCase{"304 beats a range", &C::if_none_match, "*", "bytes=0-9", 1000,
                 Kind::kNotModified},
        PlanCase{"If-None-Match other", &C::if_none_match, "\"zzz\"", nullptr, 1000, Kind::kFull},
        PlanCase{"If-Modified-Since", &C::if_modified_since, kLmText, nullptr, 1000,
                 Kind::kNotModified},
        PlanCase{"If-Match mismatch", &C::if_match, "\"zzz\"", nullptr, 1000,
                 Kind::kPreconditionFailed},
        PlanCase{"412 beats a range", &C::if_match, "\"zzz\"", "bytes=0-9", 1000,
                 Kind::kPreconditionFailed},
        PlanCase{"If-Match matches", &C::if_match, "\"abc\"", nullptr, 1000, Kind::kFull},
        PlanCase{"If-Unmodified-Since earlier", &C::if_unmodified_since, kEarlier, nullptr, 1000,
                 Kind::kPreconditionFailed},
        PlanCase{"single range", nullptr, nullptr, "bytes=0-99", 1000, Kind::kSingle,
                 Spans{{0, 99}}},
        PlanCase{"open-ended", nullptr, nullptr, "bytes=900-", 1000, Kind::kSingle,
                 Spans{{900, 999}}},
        PlanCase{"suffix", nullptr, nullptr, "bytes=-100", 1000, Kind::kSingle, Spans{{900, 999}}},
        PlanCase{"suffix larger than size", nullptr, nullptr, "bytes=-5000", 1000, Kind::kSingle,
                 Spans{{0, 999}}},
        PlanCase{"clamped to the end", nullptr, nullptr, "bytes=990-5000", 1000, Kind::kSingle,
                 Spans{{990, 999}}},
        PlanCase{"overlaps merge", nullptr, nullptr, "bytes=0-99,50-149", 1000, Kind::kSingle,
                 Spans{{0, 149}}},
        PlanCase{"multipart", nullptr, nullptr, "bytes=0-9,500-509", 1000, Kind::kMultipart,
                 Spans{{0, 9}, {500, 509}}},
        PlanCase{"multipart sorted", nullptr, nullptr, "bytes=500-509,0-9", 1000, Kind::kMultipart,
                 Spans{{0, 9}, {500, 509}}},
        PlanCase{"multipart larger than whole", nullptr, nullptr, "bytes=0-9,20-29", 100,
                 Kind::kFull},
        PlanCase{"too many ranges", nullptr, nullptr,
                 "bytes=0-0,2-2,4-4,6-6,8-8,10-10,12-12,14-14,16-16,18-18,20-20,22-22,24-24,"
                 "26-26,28-28,30-30,32-32",
                 100000, Kind::kFull},
        PlanCase{"unsatisfiable", nullptr, nullptr, "bytes=1000-1999", 1000, Kind::kUnsatisfiable},
        PlanCase{"-0", nullptr, nullptr, "bytes=-0", 1000, Kind::kUnsatisfiable},
        PlanCase{"any range of an empty object", nullptr, nullptr, "bytes=0-", 0,
                 Kind::kUnsatisfiable},
        PlanCase{"one satisfiable part", nullptr, nullptr, "bytes=5000-,0-9", 1000, Kind::kSingle,
                 Spans{{0, 9}}},
        PlanCase{"If-Range ETag", &C::if_range, "\"abc\"", "bytes=0-9", 1000, Kind::kSingle,
                 Spans{{0, 9}}},
        PlanCase{"If-Range other ETag", &C::if_range, "\"zzz\"", "bytes=0-9", 1000, Kind::kFull},
        PlanCase{"If-Range weak ETag", &C::if_range, "W/\"abc\"", "bytes=0-9", 1000, Kind::kFull},
        PlanCase{"If-Range mismatch hides a 416", &C::if_range, "\"zzz\"", "bytes=5000-", 1000,
                 Kind::kFull},
        PlanCase{"If-Range date", &C::if_range, kLmText, "bytes=0-9", 1000, Kind::kSingle,
                 Spans{{0, 9}}},
        PlanCase{"If-Range other date", &C::if_range, kEarlier, "bytes=0-9", 1000, Kind::kFull},
        PlanCase{"If-Range, no Range", &C::if_range, "\"zzz\"", nullptr, 1000, Kind::kFull}));

}  // namespace
}  // namespace proxy
