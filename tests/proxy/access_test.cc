// Who may read (proxy/access.h): the address first, then the credentials; every outcome a row.
#include "proxy/access.h"

#include <gtest/gtest.h>

#include "s3/presign.h"

namespace proxy {
namespace {

const std::string kToken = "alpha-token-0123456789";
constexpr std::time_t kNow = 1764900000;  // 2025-12-05

conf::Route route(conf::Auth auth, std::vector<std::string> allow = {}) {
  conf::Route r;
  r.prefix = "/images/";
  r.auth = auth;
  for (const auto& a : allow) {
    r.allow.add(*conf::parse_cidr(a));
  }
  r.token_digests = {conf::token_digest(kToken), conf::token_digest("beta-token-0123456789")};
  r.client_keys = {{"AK1", "secret-one"}};
  return r;
}

RequestHead head(std::vector<std::pair<std::string, std::string>> fields) {
  RequestHead h;
  h.method = "GET";
  for (auto& f : fields) {
    h.fields.push_back(std::move(f));
  }
  return h;
}

AccessVerdict check(const conf::Route& r, const RequestHead& h, std::string_view client,
                    std::string_view target = "/images/x.img", std::string_view method = "GET",
                    std::time_t now = kNow) {
  AccessRequest req;
  req.client = *conf::parse_ip(client);
  req.method = method;
  const std::size_t q = target.find('?');
  req.path = target.substr(0, q);
  req.query = q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
  req.host = "edge.test:8080";
  req.head = &h;
  return check_access(r, req, now);
}

// The request-target of a URL presigned by `tusk presign` for edge.test:8080.
std::string presigned(std::string_view path, std::int64_t expires = 300,
                      std::string secret = "secret-one", std::time_t at = kNow) {
  auto url = s3::presign_v4("http://edge.test:8080" + std::string(path), {"AK1", secret},
                            "us-east-1", "s3", at, expires);
  EXPECT_TRUE(url) << url.error();
  return url->substr(std::string("http://edge.test:8080").size());
}

TEST(AccessTest, AddressesFirst) {
  const RequestHead none = head({});
  EXPECT_EQ(check(route(conf::Auth::kNone), none, "198.51.100.7").result, AccessResult::kAllowed);
  auto v = check(route(conf::Auth::kNone, {"10.0.0.0/8"}), none, "198.51.100.7");
  EXPECT_EQ(v.result, AccessResult::kDeniedIp);
  EXPECT_EQ(v.status, 403);
  EXPECT_EQ(check(route(conf::Auth::kNone, {"10.0.0.0/8"}), none, "10.1.2.3").result,
            AccessResult::kAllowed);
  EXPECT_EQ(check(route(conf::Auth::kNone, {"2001:db8::/32"}), none, "2001:db8::1").result,
            AccessResult::kAllowed);
  EXPECT_EQ(check(route(conf::Auth::kNone, {"10.0.0.0/8"}), none, "::ffff:10.0.0.1").result,
            AccessResult::kAllowed);
  // A right token does not open a route to a refused address.
  const RequestHead good = head({{"Authorization", "Bearer " + kToken}});
  EXPECT_EQ(check(route(conf::Auth::kToken, {"10.0.0.0/8"}), good, "192.0.2.1").result,
            AccessResult::kDeniedIp);
}

TEST(AccessTest, BearerTokens) {
  const struct {
    std::string name;
    std::vector<std::pair<std::string, std::string>> fields;
    AccessResult result;
    int status;
    bool challenge;
  } kRows[] = {
      {"none", {}, AccessResult::kNoCredentials, 401, true},
      {"basic", {{"Authorization", "Basic YTpi"}}, AccessResult::kNoCredentials, 401, true},
      {"bearer_without_token",
       {{"Authorization", "Bearer"}},
       AccessResult::kNoCredentials,
       401,
       true},
      {"empty_token", {{"Authorization", "Bearer "}}, AccessResult::kBadCredentials, 403, false},
      {"wrong",
       {{"Authorization", "Bearer nope-nope-nope-nope"}},
       AccessResult::kBadCredentials,
       403,
       false},
      {"prefix_of_a_token",
       {{"Authorization", "Bearer " + kToken.substr(0, 20)}},
       AccessResult::kBadCredentials,
       403,
       false},
      {"token_plus",
       {{"Authorization", "Bearer " + kToken + "x"}},
       AccessResult::kBadCredentials,
       403,
       false},
      {"two_lines",
       {{"Authorization", "Bearer " + kToken}, {"Authorization", "Bearer " + kToken}},
       AccessResult::kBadCredentials,
       403,
       false},
      {"right", {{"Authorization", "Bearer " + kToken}}, AccessResult::kAllowed, 200, false},
      {"scheme_case", {{"authorization", "bEaReR  " + kToken}}, AccessResult::kAllowed, 200, false},
      {"second_token",
       {{"Authorization", "Bearer beta-token-0123456789"}},
       AccessResult::kAllowed,
       200,
       false},
  };
  const conf::Route r = route(conf::Auth::kToken);
  for (const auto& row : kRows) {
    SCOPED_TRACE(row.name);
    const RequestHead h = head(row.fields);
    const AccessVerdict v = check(r, h, "192.0.2.1");
    EXPECT_EQ(v.result, row.result);
    EXPECT_EQ(v.status, row.status);
    EXPECT_EQ(v.challenge, row.challenge);
    if (row.result == AccessResult::kAllowed) {
      EXPECT_TRUE(v.key_id.starts_with("token:")) << v.key_id;
      EXPECT_EQ(v.key_id.size(), 6u + 12u);
      EXPECT_EQ(v.key_id.find("token-0123"), std::string::npos);
    } else {
      EXPECT_TRUE(v.key_id.empty());
    }
  }
  EXPECT_NE(token_id(kToken), token_id("beta-token-0123456789"));
}

TEST(AccessTest, PresignedUrls) {
  const conf::Route r = route(conf::Auth::kPresigned);
  const RequestHead h = head({});
  const struct {
    std::string name;
    std::string target;
    std::string method;
    std::time_t now;
    AccessResult result;
    std::string reason;
  } kRows[] = {
      {"none", "/images/x.img", "GET", kNow, AccessResult::kNoCredentials, "required"},
      {"valid", presigned("/images/x.img"), "GET", kNow + 10, AccessResult::kAllowed, ""},
      {"head_with_a_get_url", presigned("/images/x.img"), "HEAD", kNow, AccessResult::kAllowed, ""},
      {"expired", presigned("/images/x.img", 60), "GET", kNow + 61, AccessResult::kExpired,
       "expired"},
      {"not_yet", presigned("/images/x.img", 60, "secret-one", kNow + 3600), "GET", kNow,
       AccessResult::kBadCredentials, "future"},
      {"other_object", presigned("/images/y.img"), "GET", kNow, AccessResult::kBadCredentials,
       "signature does not match"},
      {"wrong_secret", presigned("/images/x.img", 300, "other"), "GET", kNow,
       AccessResult::kBadCredentials, "signature does not match"},
  };
  for (const auto& row : kRows) {
    SCOPED_TRACE(row.name);
    std::string target = row.target;
    if (row.name == "other_object") {
      target.replace(0, std::string("/images/y.img").size(), "/images/x.img");
    }
    const AccessVerdict v = check(r, h, "192.0.2.1", target, row.method, row.now);
    EXPECT_EQ(v.result, row.result) << v.reason;
    EXPECT_NE(v.reason.find(row.reason), std::string::npos) << v.reason;
    if (row.result == AccessResult::kAllowed) {
      EXPECT_EQ(v.key_id, "AK1");
    } else {
      EXPECT_EQ(v.status, 403);
      EXPECT_EQ(v.reason.find("secret"), std::string::npos);
    }
  }
}

TEST(AccessTest, ResultNamesAreTheMetricLabels) {
  EXPECT_STREQ(access_result_name(AccessResult::kAllowed), "allowed");
  EXPECT_STREQ(access_result_name(AccessResult::kDeniedIp), "denied_ip");
  EXPECT_STREQ(access_result_name(AccessResult::kNoCredentials), "no_credentials");
  EXPECT_STREQ(access_result_name(AccessResult::kBadCredentials), "bad_credentials");
  EXPECT_STREQ(access_result_name(AccessResult::kExpired), "expired");
  conf::Route r;
  r.prefix = "/images/";
  EXPECT_EQ(route_label(r), "/images/");
  r.host = "cdn.test";
  EXPECT_EQ(route_label(r), "cdn.test/images/");
}

}  // namespace
}  // namespace proxy
