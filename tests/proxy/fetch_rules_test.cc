// The fetch side's rules as tables: upstream answers in, verdicts out.
#include "proxy/fetch_rules.h"

#include <gtest/gtest.h>

#include <algorithm>

#include <string>
#include <vector>

namespace proxy {
namespace {

Answer answer(int status, std::optional<std::uint64_t> length, std::string content_range = "",
              std::string etag = "") {
  Answer a;
  a.status = status;
  a.length = length;
  a.content_range = content_range;
  a.range = parse_content_range(content_range);
  a.etag = std::move(etag);
  return a;
}

struct JudgeRow {
  const char* name;
  Ask ask;
  Answer a;
  std::uint64_t first, end, size;
  Verdict verdict;
  std::uint64_t learnt_size;
};

TEST(FetchRules, JudgeTable) {
  constexpr std::uint64_t M = 1 << 20;
  const std::vector<JudgeRow> rows = {
      // Probe of chunk [0, 1 MiB) of a cold object.
      {"probe 206 exact", Ask::kProbeRange, answer(206, M, "bytes 0-1048575/5000000"), 0, M, 0,
       Verdict::kAccept, 5000000},
      {"probe 206 cut at the end", Ask::kProbeRange, answer(206, 100, "bytes 0-99/100"), 0, M, 0,
       Verdict::kAccept, 100},
      {"probe 206 of the 2nd chunk", Ask::kProbeRange,
       answer(206, M, "bytes 1048576-2097151/3000000"), M, 2 * M, 0, Verdict::kAccept, 3000000},
      {"probe 206 without total", Ask::kProbeRange, answer(206, M, "bytes 0-1048575/*"), 0, M, 0,
       Verdict::kReject, 0},
      {"probe 206 wrong start", Ask::kProbeRange, answer(206, M, "bytes 1-1048576/5000000"), 0, M,
       0, Verdict::kReject, 0},
      {"probe 206 short", Ask::kProbeRange, answer(206, 10, "bytes 0-9/5000000"), 0, M, 0,
       Verdict::kReject, 0},
      {"probe 206 length lies", Ask::kProbeRange, answer(206, 5, "bytes 0-99/100"), 0, M, 0,
       Verdict::kReject, 0},
      {"probe 206 without unit", Ask::kProbeRange, answer(206, 100, "0-99/100"), 0, M, 0,
       Verdict::kReject, 0},
      {"probe walrus 200 + unit-less", Ask::kProbeRange, answer(200, M, "0-1048575/5000000"), 0,
       M, 0, Verdict::kWalrusRanges, 0},
      {"probe ignored: 200 whole", Ask::kProbeRange, answer(200, 5000000), 0, M, 0,
       Verdict::kRangesIgnored, 5000000},
      {"probe 200 without length", Ask::kProbeRange, answer(200, std::nullopt), 0, M, 0,
       Verdict::kReject, 0},
      {"probe 204", Ask::kProbeRange, answer(204, 0), 0, M, 0, Verdict::kReject, 0},
      // HEAD and a first whole GET.
      {"head 200", Ask::kProbeHead, answer(200, 77), 0, 0, 0, Verdict::kAccept, 77},
      {"head 200 no length", Ask::kProbeHead, answer(200, std::nullopt), 0, 0, 0,
       Verdict::kReject, 0},
      {"head 206", Ask::kProbeHead, answer(206, 77), 0, 0, 0, Verdict::kReject, 0},
      {"whole 200", Ask::kFirstWhole, answer(200, 0), 0, 0, 0, Verdict::kAccept, 0},
      {"whole 206", Ask::kFirstWhole, answer(206, 10, "bytes 0-9/10"), 0, 0, 0, Verdict::kReject,
       0},
      // Ranged GET of a known 3000000-byte object.
      {"range 206 exact", Ask::kRange, answer(206, M, "bytes 1048576-2097151/3000000"), M, 2 * M,
       3000000, Verdict::kAccept, 3000000},
      {"range walrus 200 exact", Ask::kRange, answer(200, M, "1048576-2097151/99"), M, 2 * M,
       3000000, Verdict::kAccept, 3000000},
      {"range 206 other total", Ask::kRange, answer(206, M, "bytes 1048576-2097151/3000001"), M,
       2 * M, 3000000, Verdict::kReject, 0},
      {"range 206 other span", Ask::kRange, answer(206, M, "bytes 0-1048575/3000000"), M, 2 * M,
       3000000, Verdict::kReject, 0},
      {"range ignored", Ask::kRange, answer(200, 3000000), M, 2 * M, 3000000,
       Verdict::kRangesIgnored, 3000000},
      {"range 200 other size", Ask::kRange, answer(200, 2999999), M, 2 * M, 3000000,
       Verdict::kReject, 0},
      // Resuming a whole-object GET at byte 500 of 1000.
      {"resume 206", Ask::kResume, answer(206, 500, "bytes 500-999/1000"), 500, 1000, 1000,
       Verdict::kAccept, 1000},
      {"resume walrus", Ask::kResume, answer(200, 500, "500-999/1000"), 500, 1000, 1000,
       Verdict::kAccept, 1000},
      {"resume restarts", Ask::kResume, answer(200, 1000), 500, 1000, 1000, Verdict::kRestart,
       1000},
      {"resume wrong start", Ask::kResume, answer(206, 501, "bytes 499-999/1000"), 500, 1000, 1000,
       Verdict::kReject, 0},
  };
  for (const auto& r : rows) {
    Judgement j = judge(r.ask, r.a, r.first, r.end, r.size);
    EXPECT_EQ(j.verdict, r.verdict) << r.name;
    if (r.verdict == Verdict::kReject) {
      EXPECT_FALSE(j.why.empty()) << r.name;
    } else if (r.verdict != Verdict::kWalrusRanges) {
      EXPECT_EQ(j.size, r.learnt_size) << r.name;
    }
  }
}

TEST(FetchRules, RangeModeIsLearntFromProbesOnly) {
  EXPECT_EQ(range_mode_shown(Ask::kProbeRange, Verdict::kAccept), RangeMode::kRanges);
  EXPECT_EQ(range_mode_shown(Ask::kProbeRange, Verdict::kWalrusRanges), RangeMode::kWalrus);
  EXPECT_EQ(range_mode_shown(Ask::kProbeRange, Verdict::kRangesIgnored), RangeMode::kNoRanges);
  EXPECT_EQ(range_mode_shown(Ask::kProbeRange, Verdict::kReject), std::nullopt);
  EXPECT_EQ(range_mode_shown(Ask::kRange, Verdict::kRangesIgnored), RangeMode::kNoRanges);
  // A Walrus range answer is accepted: it must not undo the Walrus mode.
  EXPECT_EQ(range_mode_shown(Ask::kRange, Verdict::kAccept), std::nullopt);
  EXPECT_EQ(range_mode_shown(Ask::kProbeHead, Verdict::kAccept), std::nullopt);
  EXPECT_EQ(range_mode_shown(Ask::kResume, Verdict::kRestart), std::nullopt);
}

TEST(FetchRules, EtagPinning) {
  EXPECT_FALSE(etag_changed("\"a\"", "\"a\""));
  EXPECT_TRUE(etag_changed("\"a\"", "\"b\""));
  EXPECT_FALSE(etag_changed("\"a\"", ""));  // an answer without one is not a change
  EXPECT_FALSE(etag_changed("", "\"b\""));  // nothing pinned
}

TEST(FetchRules, AfterErrorTable) {
  struct Row {
    const char* name;
    Ask ask;
    bool head_known;
    s3::Errc code;
    int attempts;
    bool etag_known;
    AfterError want;
  };
  const std::vector<Row> rows = {
      {"probe past the end", Ask::kProbeRange, false, s3::Errc::kRangeNotSatisfiable, 0, false,
       AfterError::kProbeHead},
      {"416 of a known object", Ask::kRange, true, s3::Errc::kRangeNotSatisfiable, 0, true,
       AfterError::kFail},
      {"timeout retried", Ask::kRange, true, s3::Errc::kTimeout, 0, true, AfterError::kRetry},
      {"5xx retried", Ask::kProbeHead, false, s3::Errc::kServer, 1, false, AfterError::kRetry},
      {"refused retried", Ask::kFirstWhole, false, s3::Errc::kRefused, 2, false,
       AfterError::kRetry},
      {"short body retried", Ask::kResume, true, s3::Errc::kProtocol, 0, false,
       AfterError::kRetry},
      {"attempts used up", Ask::kRange, true, s3::Errc::kTimeout, 3, true, AfterError::kFail},
      {"404 final", Ask::kProbeRange, false, s3::Errc::kNotFound, 0, false, AfterError::kFail},
      {"403 final", Ask::kProbeHead, false, s3::Errc::kForbidden, 0, false, AfterError::kFail},
      {"auth final", Ask::kRange, true, s3::Errc::kAuth, 0, true, AfterError::kFail},
      {"tls final", Ask::kRange, true, s3::Errc::kTls, 0, true, AfterError::kFail},
      {"412: object changed", Ask::kRange, true, s3::Errc::kPreconditionFailed, 0, true,
       AfterError::kFail},
      {"range without ETag not resumed", Ask::kRange, true, s3::Errc::kTimeout, 0, false,
       AfterError::kFail},
      {"probe without ETag before the head is retried", Ask::kProbeRange, false,
       s3::Errc::kTimeout, 0, false, AfterError::kRetry},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(after_error(r.ask, r.head_known, r.code, r.attempts, 3, r.etag_known), r.want)
        << r.name;
  }
}

TEST(FetchRules, BackoffDoublesToFiveSeconds) {
  EXPECT_EQ(backoff_ms(1), 100);
  EXPECT_EQ(backoff_ms(2), 200);
  EXPECT_EQ(backoff_ms(3), 400);
  EXPECT_EQ(backoff_ms(7), 5000);
  EXPECT_EQ(backoff_ms(1000), 5000);
  EXPECT_EQ(backoff_ms(0), 100);
}

TEST(FetchRules, NotModifiedMergesEndToEndHeaders) {
  const Headers stored = {{"Cache-Control", "max-age=60"},
                          {"x-amz-meta-a", "1"},
                          {"Test-Header", "A"},
                          {"Test-Header", "A2"},
                          {"Date", "Thu, 03 Dec 2026 09:00:00 GMT"}};
  const Headers answer = {{"Cache-Control", "max-age=600"},
                          {"Date", "Thu, 03 Dec 2026 10:00:00 GMT"},
                          {"Age", "5"},
                          {"x-amz-request-id", "R1"},
                          {"Test-Header", "B"},
                          {"Content-Length", "10"},
                          {"Content-Encoding", "br"},
                          {"Transfer-Encoding", "chunked"},
                          {"Connection", "X-Hop"},
                          {"X-Hop", "1"},
                          {"x-amz-meta-b", "2"}};
  Merged m = merge_not_modified(stored, answer);
  EXPECT_EQ(find_header(m.stored, "cache-control"), "max-age=600");  // replaced
  EXPECT_EQ(find_header(m.stored, "x-amz-meta-a"), "1");             // kept
  EXPECT_EQ(find_header(m.stored, "x-amz-meta-b"), "2");             // added
  EXPECT_EQ(find_header(m.stored, "x-amz-request-id"), "");          // per-response: not stored
  // Every stored line of a name the 304 carries is replaced (304-etag-update-response-*).
  EXPECT_EQ(std::count_if(m.stored.begin(), m.stored.end(),
                          [](const auto& h) { return h.first == "Test-Header"; }),
            1);
  EXPECT_EQ(find_header(m.stored, "test-header"), "B");
  // The framing is never taken from a 304 (304-etag-update-response-Content-Length), nor a
  // hop-by-hop field or one Connection names.
  for (const char* name : {"content-length", "content-encoding", "transfer-encoding", "x-hop",
                           "connection", "age"}) {
    EXPECT_EQ(find_header(m.stored, name), "") << name;
  }
  EXPECT_EQ(find_header(m.stored, "date"), "Thu, 03 Dec 2026 10:00:00 GMT");  // the newer Date
  EXPECT_EQ(m.content_type, std::nullopt);  // the 304 carried none
  EXPECT_EQ(find_header(m.decide_on, "date"), "Thu, 03 Dec 2026 10:00:00 GMT");
  EXPECT_EQ(find_header(m.decide_on, "age"), "5");
  EXPECT_EQ(find_header(m.decide_on, "cache-control"), "max-age=600");
}

TEST(FetchRules, NotModifiedUpdatesContentTypeNeverContentMd5) {
  Merged m = merge_not_modified({{"Content-MD5", "stored"}},
                                {{"Content-Type", "text/b"}, {"Content-MD5", "other"}});
  EXPECT_EQ(m.content_type, "text/b");
  EXPECT_EQ(find_header(m.stored, "content-md5"), "stored");
}

TEST(FetchRules, NotModifiedWithoutDateDoesNotAgeTheEntry) {
  const Headers stored = {{"Cache-Control", "max-age=60"},
                          {"Date", "Thu, 03 Dec 2026 09:00:00 GMT"}};
  Merged m = merge_not_modified(stored, {{"ETag", "\"e\""}});
  EXPECT_EQ(find_header(m.stored, "date"), "Thu, 03 Dec 2026 09:00:00 GMT");  // kept, replayed
  EXPECT_EQ(find_header(m.decide_on, "date"), "");  // but freshness counts from this 304
}

}  // namespace
}  // namespace proxy
