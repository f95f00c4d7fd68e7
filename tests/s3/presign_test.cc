// Tests of s3/presign.cc: one row per verdict of verify_presigned (each row one bad input), AWS's
// published SigV4 presigned-URL example both ways, presign_v4 round trips and refusals, HEAD with
// a GET URL, strip_presign_params, and a cross-check against boto3's generate_presigned_url (an
// independent implementation) for SigV4 and SigV2. The cross-check runs /usr/bin/python3 and
// fails (never skips) when it cannot.
#include "s3/presign.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "tests/s3/run_command.h"

namespace s3 {
namespace {

const Credentials kAws{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"};
const Credentials kOdd{"AK", "se/cr+et"};
constexpr std::time_t kT = 1369353600;  // 2013-05-24T00:00:00Z, AWS's example time

// AWS S3 documentation, "Authenticating Requests: Using Query Parameters (AWS Signature V4)".
constexpr const char* kAwsExampleUrl =
    "https://examplebucket.s3.amazonaws.com/test.txt"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

const SecretLookup& secrets() {
  static const std::map<std::string, std::string, std::less<>> keys = {
      {kAws.access_key, kAws.secret_key}, {kOdd.access_key, kOdd.secret_key}};
  static const SecretLookup lookup = [](std::string_view ak) -> const std::string* {
    auto it = keys.find(ak);
    return it == keys.end() ? nullptr : &it->second;
  };
  return lookup;
}

struct Split {
  std::string host, path, query;
};

// A URL as the server sees it: Host as written in the URL, the path and the raw query.
Split split(std::string_view url) {
  Split s;
  std::size_t start = url.find("://") + 3;
  std::size_t slash = url.find('/', start);
  s.host = std::string(url.substr(start, slash - start));
  std::string_view rest = url.substr(slash);
  std::size_t q = rest.find('?');
  s.path = std::string(rest.substr(0, q));
  s.query = q == std::string_view::npos ? "" : std::string(rest.substr(q + 1));
  return s;
}

PresignCheck check(const std::string& host, const std::string& path, const std::string& query,
                   std::time_t now, std::string_view method = "GET",
                   std::string_view region = "us-east-1", std::string_view service = "s3",
                   const std::map<std::string, std::string>& extra = {}) {
  PresignedRequest r;
  r.method = method;
  r.path = path;
  r.query = query;
  r.header = [&host, &extra](std::string_view name) -> std::optional<std::string> {
    if (name == "host") {
      return host;
    }
    auto it = extra.find(std::string(name));
    return it == extra.end() ? std::nullopt : std::optional<std::string>(it->second);
  };
  return verify_presigned(r, secrets(), region, service, now);
}

PresignCheck check_url(std::string_view url, std::time_t now, std::string_view method = "GET",
                       std::string_view region = "us-east-1") {
  Split s = split(url);
  return check(s.host, s.path, s.query, now, method, region);
}

std::string replace(std::string s, std::string_view from, std::string_view to) {
  auto at = s.find(from);
  EXPECT_NE(at, std::string::npos) << "'" << from << "' not in " << s;
  if (at != std::string::npos) {
    s.replace(at, from.size(), to);
  }
  return s;
}

std::string presigned(std::string_view url, const Credentials& c = kOdd, std::time_t now = kT,
                      std::int64_t expires = 3600, std::string_view region = "us-east-1") {
  auto r = presign_v4(url, c, region, "s3", now, expires);
  EXPECT_TRUE(r.has_value()) << url << ": " << (r ? "" : r.error());
  return r ? *r : std::string();
}

// --- AWS's published example ---------------------------------------------------------------

TEST(PresignV4, AwsExampleIsMadeExactly) {
  EXPECT_EQ(presigned("https://examplebucket.s3.amazonaws.com/test.txt", kAws, kT, 86400),
            kAwsExampleUrl);
}

TEST(PresignV4, AwsExampleVerifies) {
  auto c = check_url(kAwsExampleUrl, kT + 3600);
  EXPECT_EQ(c.result, PresignResult::kOk) << c.reason;
  EXPECT_EQ(c.key_id, kAws.access_key);
  EXPECT_TRUE(c.reason.empty());
  EXPECT_EQ(check_url(kAwsExampleUrl, kT + 86400).result, PresignResult::kOk);  // last second
  EXPECT_EQ(check_url(kAwsExampleUrl, kT + 86401).result, PresignResult::kExpired);
}

// --- every verdict, one bad input per row -----------------------------------------------------

struct Row {
  const char* name;
  std::string query;  // raw query of GET http://127.0.0.1:8080/images/foo.tgz
  std::time_t now;
  PresignResult want;
  std::string method = "GET";
  std::string path = "/images/foo.tgz";
  std::string host = "127.0.0.1:8080";
  std::string region = "us-east-1";
};

TEST(VerifyPresigned, VerdictTable) {
  using R = PresignResult;
  const std::string url = presigned("http://127.0.0.1:8080/images/foo.tgz", kOdd, kT, 3600);
  const std::string ok = split(url).query;
  const std::string sig = ok.substr(ok.find("X-Amz-Signature=") + 16);
  ASSERT_EQ(sig.size(), 64u);
  const std::string cred = "X-Amz-Credential=AK%2F20130524%2Fus-east-1%2Fs3%2Faws4_request";
  auto without = [&ok](std::string_view param) {
    std::string q = ok;
    auto at = q.find(std::string(param) + "=");
    auto end = q.find('&', at);
    q.erase(at, end == std::string::npos ? std::string::npos : end - at + 1);
    if (!q.empty() && q.back() == '&') {
      q.pop_back();
    }
    return q;
  };
  std::string many;
  for (int i = 0; i < 65; ++i) {
    many += (i ? "&p" : "p") + std::to_string(i) + "=1";
  }
  const std::string v2 = "AWSAccessKeyId=AK&Expires=1369354200&Signature=x";

  const std::vector<Row> rows = {
      {"valid", ok, kT + 10, R::kOk},
      {"valid at the last second", ok, kT + 3600, R::kOk},
      {"no query", "", kT, R::kNone},
      {"no presign parameter", "a=1&b&response-content-type=x", kT, R::kNone},
      {"64 plain parameters are fine", many.substr(0, many.rfind('&')), kT, R::kNone},
      {"65 parameters", many, kT, R::kMalformed},
      {"query over 8 KiB", ok + "&pad=" + std::string(8192, 'x'), kT, R::kMalformed},
      {"bad escape", ok + "&a=%zz", kT, R::kMalformed},
      {"truncated escape", ok + "&a=%4", kT, R::kMalformed},
      {"bad escape in the path", ok, kT, R::kMalformed, "GET", "/images/%g0.tgz"},
      {"path over 8 KiB", ok, kT, R::kMalformed, "GET", "/" + std::string(8200, 'a')},
      {"missing X-Amz-Algorithm", without("X-Amz-Algorithm"), kT, R::kMalformed},
      {"missing X-Amz-Credential", without("X-Amz-Credential"), kT, R::kMalformed},
      {"missing X-Amz-Date", without("X-Amz-Date"), kT, R::kMalformed},
      {"missing X-Amz-Expires", without("X-Amz-Expires"), kT, R::kMalformed},
      {"missing X-Amz-SignedHeaders", without("X-Amz-SignedHeaders"), kT, R::kMalformed},
      {"missing X-Amz-Signature", without("X-Amz-Signature"), kT, R::kMalformed},
      {"duplicated X-Amz-Date", ok + "&X-Amz-Date=20130524T000000Z", kT, R::kMalformed},
      {"duplicated X-Amz-Signature", ok + "&X-Amz-Signature=" + sig, kT, R::kMalformed},
      {"wrong algorithm", replace(ok, "AWS4-HMAC-SHA256", "AWS4-HMAC-SHA1"), kT, R::kMalformed},
      {"security token", ok + "&X-Amz-Security-Token=abc", kT, R::kMalformed},
      {"both V4 and V2", ok + "&AWSAccessKeyId=AK", kT, R::kMalformed},
      {"credential of 4 parts",
       replace(ok, cred, "X-Amz-Credential=AK%2F20130524%2Fus-east-1%2Fs3"), kT, R::kMalformed},
      {"credential without key", replace(ok, "Credential=AK%2F", "Credential=%2F"), kT,
       R::kMalformed},
      {"credential key over 128",
       replace(ok, "Credential=AK", "Credential=" + std::string(129, 'K')), kT, R::kMalformed},
      {"credential date differs", replace(ok, "%2F20130524%2F", "%2F20130523%2F"), kT,
       R::kMalformed},
      {"credential region differs", ok, kT, R::kMalformed, "GET", "/images/foo.tgz",
       "127.0.0.1:8080", "eu-west-1"},
      {"credential service differs", replace(ok, "%2Fs3%2F", "%2Fec2%2F"), kT, R::kMalformed},
      {"credential terminator", replace(ok, "aws4_request", "aws4_reqest"), kT, R::kMalformed},
      {"date not ISO basic", replace(ok, "X-Amz-Date=20130524T000000Z", "X-Amz-Date=2013-05-24"),
       kT, R::kMalformed},
      {"date not a day", replace(ok, "X-Amz-Date=20130524T000000Z", "X-Amz-Date=20130524T240000Z"),
       kT, R::kMalformed},
      {"expires 0", replace(ok, "X-Amz-Expires=3600", "X-Amz-Expires=0"), kT, R::kMalformed},
      {"expires negative", replace(ok, "X-Amz-Expires=3600", "X-Amz-Expires=-5"), kT,
       R::kMalformed},
      {"expires junk", replace(ok, "X-Amz-Expires=3600", "X-Amz-Expires=1h"), kT, R::kMalformed},
      {"expires empty", replace(ok, "X-Amz-Expires=3600", "X-Amz-Expires="), kT, R::kMalformed},
      {"expires over 7 days", replace(ok, "X-Amz-Expires=3600", "X-Amz-Expires=604801"), kT,
       R::kTooLong},
      {"expires huge", replace(ok, "X-Amz-Expires=3600", "X-Amz-Expires=" + std::string(40, '9')),
       kT, R::kTooLong},
      {"signed headers without host",
       replace(ok, "X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x-a"), kT, R::kMalformed},
      {"signed headers uppercase",
       replace(ok, "X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=Host"), kT, R::kMalformed},
      {"signed headers unsorted",
       replace(ok, "X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x-a%3Bhost"), kT,
       R::kMalformed},
      {"signed header absent",
       replace(ok, "X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=host%3Bx-custom"), kT,
       R::kMalformed},
      {"no host header", ok, kT, R::kMalformed, "GET", "/images/foo.tgz", "<absent>"},
      {"16 minutes early", ok, kT - 16 * 60, R::kNotYetValid},
      {"14 minutes early (skew)", ok, kT - 14 * 60, R::kOk},
      {"expired", ok, kT + 3601, R::kExpired},
      {"unknown key", replace(ok, "Credential=AK%2F", "Credential=AX%2F"), kT, R::kUnknownKey},
      {"altered signature", replace(ok, sig, std::string(64, '0')), kT, R::kBadSignature},
      {"uppercase signature", replace(ok, sig, "F" + sig.substr(1)), kT, R::kBadSignature},
      {"short signature", replace(ok, sig, sig.substr(1)), kT, R::kBadSignature},
      {"altered path", ok, kT, R::kBadSignature, "GET", "/images/bar.tgz"},
      {"another host", ok, kT, R::kBadSignature, "GET", "/images/foo.tgz", "127.0.0.1:8081"},
      {"added parameter", ok + "&versionId=2", kT, R::kBadSignature},
      {"PUT with a GET URL", ok, kT, R::kBadSignature, "PUT"},
      {"HEAD with a GET URL", ok, kT, R::kOk, "HEAD"},
      {"encoded name decodes to X-Amz-Signature",
       replace(ok, "X-Amz-Signature", "X-Amz-%53ignature"), kT, R::kOk},
      {"path encoded differently, same key", ok, kT, R::kOk, "GET", "/images/fo%6F.tgz"},
      {"V2 missing Signature", "AWSAccessKeyId=AK&Expires=1369354200", kT, R::kMalformed},
      {"V2 duplicated key", v2 + "&AWSAccessKeyId=AK", kT, R::kMalformed},
      {"V2 junk Expires", replace(v2, "1369354200", "soon"), kT, R::kMalformed},
      {"V2 expired", v2, 1369354201, R::kExpired},
      {"V2 over 7 days", replace(v2, "1369354200", std::to_string(kT + 604801)), kT, R::kTooLong},
      {"V2 huge Expires", replace(v2, "1369354200", std::string(30, '9')), kT, R::kTooLong},
      {"V2 unknown key", replace(v2, "=AK&", "=AX&"), kT, R::kUnknownKey},
      {"V2 bad signature", v2, kT, R::kBadSignature},
  };
  for (const auto& row : rows) {
    const std::string host = row.host == "<absent>" ? std::string() : row.host;
    PresignedRequest r;
    r.method = row.method;
    r.path = row.path;
    r.query = row.query;
    const bool absent = row.host == "<absent>";
    r.header = [&host, absent](std::string_view name) -> std::optional<std::string> {
      if (name == "host" && !absent) {
        return host;
      }
      return std::nullopt;
    };
    auto c = verify_presigned(r, secrets(), row.region, "s3", row.now);
    EXPECT_EQ(c.result, row.want) << row.name << ": got " << presign_result_name(c.result) << " ("
                                  << c.reason << ")";
    EXPECT_EQ(c.reason.empty(), c.result == R::kOk) << row.name << ": " << c.reason;
    EXPECT_EQ(c.key_id.find(kOdd.secret_key), std::string::npos) << row.name;
  }
}

TEST(VerifyPresigned, ReasonsNameTheProblem) {
  const std::string q = split(presigned("http://h/o")).query;
  auto region = check("h", "/o", q, kT, "GET", "eu-west-1");
  EXPECT_NE(region.reason.find("region"), std::string::npos) << region.reason;
  EXPECT_NE(region.reason.find("eu-west-1"), std::string::npos) << region.reason;
  auto service = check("h", "/o", q, kT, "GET", "us-east-1", "ec2");
  EXPECT_NE(service.reason.find("service"), std::string::npos) << service.reason;
  EXPECT_EQ(check("h", "/o", q, kT + 7200).reason, "expired");
  auto bad = check("h", "/other", q, kT);
  EXPECT_EQ(bad.reason,
            "signature does not match: the URL was altered, or made for another host or key");
  EXPECT_EQ(bad.key_id, "AK");
  auto missing = check("h", "/o", replace(q, "X-Amz-Date=", "X-Amz-Dat="), kT);
  EXPECT_EQ(missing.reason, "missing X-Amz-Date");
}

TEST(VerifyPresigned, OtherSignedHeadersAreChecked) {
  // A URL signed over host and x-amz-meta-a (hand-built with v4_sign, as another signer would).
  V4Input in;
  in.method = "GET";
  in.canonical_uri = "/b/k";
  in.headers = {{"host", "h:1"}, {"x-amz-meta-a", "v  w"}};
  in.payload_hash = "UNSIGNED-PAYLOAD";
  in.region = "us-east-1";
  in.amz_date = "20130524T000000Z";
  in.query = {{"X-Amz-Algorithm", "AWS4-HMAC-SHA256"},
              {"X-Amz-Credential", "AK/20130524/us-east-1/s3/aws4_request"},
              {"X-Amz-Date", in.amz_date},
              {"X-Amz-Expires", "60"},
              {"X-Amz-SignedHeaders", "host;x-amz-meta-a"}};
  std::string q = canonical_query(in.query) + "&X-Amz-Signature=" + v4_sign(kOdd, in).signature;
  EXPECT_EQ(
      check("h:1", "/b/k", q, kT, "GET", "us-east-1", "s3", {{"x-amz-meta-a", " v w "}}).result,
      PresignResult::kOk);
  EXPECT_EQ(check("h:1", "/b/k", q, kT, "GET", "us-east-1", "s3", {{"x-amz-meta-a", "v x"}}).result,
            PresignResult::kBadSignature);
  EXPECT_EQ(check("h:1", "/b/k", q, kT).result, PresignResult::kMalformed);
}

TEST(VerifyPresigned, NullCallbacksAreHandled) {
  const std::string q = split(presigned("http://h/o")).query;
  PresignedRequest r;
  r.method = "GET";
  r.path = "/o";
  r.query = q;
  EXPECT_EQ(verify_presigned(r, secrets(), "us-east-1", "s3", kT).result,
            PresignResult::kMalformed);  // no header lookup: host missing
  r.header = [](std::string_view) { return std::optional<std::string>("h"); };
  EXPECT_EQ(verify_presigned(r, SecretLookup(), "us-east-1", "s3", kT).result,
            PresignResult::kUnknownKey);
}

TEST(VerifyPresigned, ResultNames) {
  EXPECT_STREQ(presign_result_name(PresignResult::kNone), "none");
  EXPECT_STREQ(presign_result_name(PresignResult::kOk), "ok");
  EXPECT_STREQ(presign_result_name(PresignResult::kNotYetValid), "not_yet_valid");
  EXPECT_STREQ(presign_result_name(PresignResult::kBadSignature), "bad_signature");
}

// --- presign_v4
// -----------------------------------------------------------------------------------

TEST(PresignV4, RoundTrips) {
  struct Case {
    const char* url;
    const char* host;  // what a client sends for it
  };
  const Case cases[] = {
      {"http://127.0.0.1:8080/images/foo.tgz", "127.0.0.1:8080"},
      {"http://edge:8080/images/a%20b%2Bc/%C3%BC~.tgz", "edge:8080"},
      {"http://edge/images/x?response-content-type=text%2Fplain&versionId=3", "edge"},
      {"https://Edge.Example:443/images/%2E%2E/x", "edge.example"},
      {"http://user@edge:80/a?acl", "edge"},
      {"http://[::1]:8080/k", "[::1]:8080"},
      {"http://edge:8080", "edge:8080"},
      {"http://Edge:8080?a=1/b:2", "edge:8080"},
  };
  for (const auto& c : cases) {
    const std::string url = presigned(c.url, kOdd, kT, 600);
    Split s = split(url);
    auto v = check(c.host, s.path, s.query, kT + 600);
    EXPECT_EQ(v.result, PresignResult::kOk) << url << ": " << v.reason;
    EXPECT_EQ(v.key_id, "AK");
    EXPECT_EQ(check(c.host, s.path, s.query, kT + 601).result, PresignResult::kExpired) << url;
    EXPECT_EQ(check(c.host, s.path, s.query, kT, "HEAD").result, PresignResult::kOk) << url;
    const std::string_view given(c.url);
    const std::string_view given_query =
        given.find('?') == std::string_view::npos ? "" : given.substr(given.find('?') + 1);
    EXPECT_EQ(strip_presign_params(s.query), strip_presign_params(given_query)) << url;
  }
  // The existing query is kept byte for byte, before the presign parameters.
  EXPECT_EQ(presigned("http://e/o?b=2&a=%7e").rfind("http://e/o?b=2&a=%7e&X-Amz-Algorithm=", 0),
            0u);
  // Another region is signed into the scope, and checked.
  const std::string eu = presigned("http://e/o", kOdd, kT, 60, "eu-west-1");
  EXPECT_NE(eu.find("%2Feu-west-1%2Fs3%2F"), std::string::npos);
  EXPECT_EQ(check_url(eu, kT, "GET", "eu-west-1").result, PresignResult::kOk);
  EXPECT_EQ(check_url(eu, kT, "GET", "us-east-1").result, PresignResult::kMalformed);
}

TEST(PresignV4, RefusesWhatCannotBeSigned) {
  struct Case {
    const char* name;
    std::string url;
    Credentials creds = kOdd;
    std::int64_t expires = 60;
  };
  const std::vector<Case> cases = {
      {"ftp", "ftp://h/x"},
      {"no scheme", "h/x"},
      {"no host", "http:///x"},
      {"only a port", "http://:80/x"},
      {"bad port", "http://h:8o/x"},
      {"empty port", "http://h:/x"},
      {"port 0", "http://h:0/x"},
      {"port too big", "http://h:65536/x"},
      {"fragment", "http://h/x#top"},
      {"raw space", "http://h/a b"},
      {"raw UTF-8", "http://h/\xC3\xBC"},
      {"bad escape in path", "http://h/%zz"},
      {"bad escape in query", "http://h/x?a=%4"},
      {"already presigned", "http://h/x?X-Amz-Signature=1"},
      {"already presigned (V2)", "http://h/x?Signature=1"},
      {"already presigned (encoded)", "http://h/x?X-Amz-%44ate=1"},
      {"query too long", "http://h/x?a=" + std::string(8100, 'a')},
      {"expires 0", "http://h/x", kOdd, 0},
      {"expires over 7 days", "http://h/x", kOdd, 604801},
      {"empty access key", "http://h/x", Credentials{"", "SeCrEt"}},
      {"access key with /", "http://h/x", Credentials{"A/K", "SeCrEt"}},
  };
  for (const auto& c : cases) {
    auto r = presign_v4(c.url, c.creds, "us-east-1", "s3", kT, c.expires);
    EXPECT_FALSE(r.has_value()) << c.name << ": " << (r ? *r : "");
    if (!r) {
      EXPECT_FALSE(r.error().empty()) << c.name;
      EXPECT_EQ(r.error().find(c.creds.secret_key), std::string::npos) << c.name;
    }
  }
  EXPECT_TRUE(presign_v4("http://h/x", kOdd, "us-east-1", "s3", kT, 604800).has_value());
  EXPECT_FALSE(presign_v4("http://h/x", kOdd, "", "s3", kT, 60).has_value());
  EXPECT_FALSE(presign_v4("http://h/x", kOdd, "us-east-1", "s/3", kT, 60).has_value());
}

// --- strip_presign_params
// -------------------------------------------------------------------------

TEST(StripPresignParams, Table) {
  struct Row {
    const char* in;
    const char* want;
  };
  const Row rows[] = {
      {"", ""},
      {"a=1&b", "a=1&b"},
      {"a=1&X-Amz-Signature=x&b", "a=1&b"},
      {"X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=a&X-Amz-Date=d&X-Amz-Expires=1&"
       "X-Amz-SignedHeaders=host&X-Amz-Signature=s&X-Amz-Security-Token=t",
       ""},
      {"response-content-type=text%2Fplain&X-Amz-Date=d", "response-content-type=text%2Fplain"},
      {"AWSAccessKeyId=a&Expires=1&Signature=s%3D&versionId=3", "versionId=3"},
      {"X-Amz-%53ignature=x&c=%zz", "c=%zz"},
      {"a&&b&", "a&b"},
      {"x-amz-signature=1&X-Amz-Expiresx=2&expires=3",
       "x-amz-signature=1&X-Amz-Expiresx=2&expires=3"},
      {"Signature", ""},
      {"b=2&a=1&Expires=", "b=2&a=1"},
  };
  for (const auto& r : rows) {
    EXPECT_EQ(strip_presign_params(r.in), r.want) << r.in;
  }
}

// --- boto3 cross-check
// ----------------------------------------------------------------------------

std::string hexed(std::string_view s) { return hex(s); }

struct BotoCase {
  std::string kind;  // v4 or v2
  std::string endpoint, bucket, key;
  Credentials creds;
  std::string region = "us-east-1";
  std::time_t now = kT;
  std::int64_t expires = 3600;
  std::string response_type = {};  // ResponseContentType: a query parameter boto3 puts first
};

TEST(Botocore, PresignedUrlsAgree) {
  std::vector<BotoCase> cases;
  const char* keys[] = {"foo.tgz", "a b+c/\xC3\xBC~.tgz", "dir/with=eq&amp;@!$'()*,;:", "..",
                        "x%2Fy"};
  for (const char* k : keys) {
    for (const char* kind : {"v4", "v2"}) {
      cases.push_back({kind, "http://127.0.0.1:8080", "images", k, kAws});
      cases.push_back({kind, "http://Edge.Example:80", "starter-emis", k, kOdd, "eu-west-1",
                       kT + 12345, 604800});
      cases.push_back(
          {kind, "http://127.0.0.1:8080", "images", k, kOdd, "us-east-1", kT, 60, "text/plain"});
    }
  }
  char path[] = "/tmp/tusk-botocore-presign-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream f(path);
    for (const auto& c : cases) {
      f << hexed(c.kind) << '\t' << hexed(c.endpoint) << '\t' << hexed(c.bucket) << '\t'
        << hexed(c.key) << '\t' << hexed(c.creds.access_key) << '\t' << hexed(c.creds.secret_key)
        << '\t' << hexed(c.region) << '\t' << hexed(std::to_string(c.now)) << '\t'
        << hexed(std::to_string(c.expires)) << '\t' << hexed(c.response_type) << '\n';
    }
  }
  std::string out;
  const std::vector<std::string> lines = run_command_lines(
      std::string(TUSK_PYTHON3) + " " + TUSK_BOTOCORE_PRESIGN + " " + path + " 2>&1", &out);
  std::remove(path);
  ASSERT_EQ(lines.size(), cases.size()) << "botocore helper failed:\n" << out;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string& boto = lines[i];
    Split s = split(boto);
    // What curl sends for that URL: the host as written, without a default port.
    std::string host = c.endpoint == "http://Edge.Example:80" ? "Edge.Example" : "127.0.0.1:8080";
    auto v = check(host, s.path, s.query, c.now + 1, "GET", c.region);
    EXPECT_EQ(v.result, PresignResult::kOk) << c.kind << " " << boto << ": " << v.reason;
    EXPECT_EQ(check(host, s.path, s.query, c.now + 1, "HEAD", c.region).result, PresignResult::kOk)
        << boto;
    EXPECT_EQ(check(host, s.path + "x", s.query, c.now + 1, "GET", c.region).result,
              PresignResult::kBadSignature)
        << boto;
    if (c.kind == "v4") {
      // presign_v4 of botocore's URL without its presign parameters (its encoding of the key,
      // its operation parameters) must be botocore's URL, byte for byte.
      const std::string unsigned_url = boto.substr(0, boto.find("X-Amz-Algorithm=") - 1);
      EXPECT_EQ(presigned(unsigned_url, c.creds, c.now, c.expires, c.region), boto) << c.key;
    }
  }
}

TEST(Botocore, KnownSigV2Url) {
  // Made by boto3 (signature_version="s3", path style) for key "a b+c/ü~.tgz" at kT, 600 s.
  const std::string url =
      "http://127.0.0.1:8080/images/a%20b%2Bc/%C3%BC~.tgz"
      "?AWSAccessKeyId=AK&Signature=XamCX5lzULcSpuYoQdMgDE6wfTQ%3D&Expires=1369354200";
  EXPECT_EQ(check_url(url, kT).result, PresignResult::kOk);
  EXPECT_EQ(check_url(url, kT, "HEAD").result, PresignResult::kOk);
  EXPECT_EQ(check_url(url, 1369354201).result, PresignResult::kExpired);
  EXPECT_EQ(check_url(replace(url, "%C3%BC", "u"), kT).result, PresignResult::kBadSignature);
  // A parameter SigV2 does not sign cannot ride along; a signed sub-resource changes the
  // signature.
  const PresignCheck extra = check_url(url + "&cachebust=1", kT);
  EXPECT_EQ(extra.result, PresignResult::kMalformed);
  EXPECT_EQ(extra.reason, "a SigV2 presigned URL carries no unsigned parameter");
  EXPECT_EQ(check_url(url + "&versionId=7", kT).result, PresignResult::kBadSignature);
}

TEST(Botocore, QueryOfTheOperationIsSigned) {
  // boto3 puts the operation's own parameters first; presign_v4 keeps a given query first too
  // (the cross-check above compares whole URLs with response-content-type).
  const std::string url = presigned(
      "http://127.0.0.1:8080/images/foo.tgz?response-content-type=text%2Fplain", kAws, kT, 3600);
  EXPECT_EQ(url.rfind("http://127.0.0.1:8080/images/foo.tgz?response-content-type=text%2Fplain&"
                      "X-Amz-Algorithm=AWS4-HMAC-SHA256&",
                      0),
            0u);
  EXPECT_EQ(check_url(url, kT).result, PresignResult::kOk);
  EXPECT_EQ(check_url(replace(url, "text%2Fplain", "text%2Fhtml"), kT).result,
            PresignResult::kBadSignature);
}

}  // namespace
}  // namespace s3
