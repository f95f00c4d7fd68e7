// Token and client-key files (conf/client_auth.h): every rule a row.
#include "conf/client_auth.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace conf {
namespace {

const std::string kT1 = "alpha-token-0123456789";
const std::string kT2 = "beta-token-0123456789";

TEST(TokenFileTest, Rows) {
  const struct {
    std::string name;
    std::string text;
    std::vector<std::string> tokens;  // empty: an error containing `error`
    std::string error;
  } kRows[] = {
      {"one", kT1 + "\n", {kT1}, ""},
      {"no_final_newline", kT1, {kT1}, ""},
      {"crlf_and_spaces", "  " + kT1 + " \r\n\t" + kT2 + "\r\n", {kT1, kT2}, ""},
      {"comments_and_blanks", "# robots\n\n" + kT1 + "\n   \n# " + kT2 + "\n", {kT1}, ""},
      {"empty", "", {}, "holds no token"},
      {"only_comments", "# a\n#b\n", {}, "holds no token"},
      {"short", "x\n", {}, "line 1: a token must be at least 16 bytes"},
      {"inner_space", kT1 + "\nabc def ghi jkl mno\n", {}, "line 2: a token is printable ASCII"},
      {"control", "abcdefghijklmnop\x01q\n", {}, "line 1: a token is printable ASCII"},
      {"non_ascii", "abcdefghijklmnop\xc3\xa9\n", {}, "printable ASCII"},
      {"duplicate", kT1 + "\n" + kT1 + "\n", {}, "line 2: the same token twice"},
      {"too_long", std::string(4097, 'a') + "\n", {}, "at most 4096 bytes"},
      {"too_big", std::string(kMaxAuthFileBytes + 1, 'a'), {}, "larger than 1 MiB"},
  };
  for (const auto& row : kRows) {
    SCOPED_TRACE(row.name);
    auto r = parse_token_file(row.text);
    if (row.tokens.empty()) {
      ASSERT_FALSE(r);
      EXPECT_NE(r.error().find(row.error), std::string::npos) << r.error();
    } else {
      ASSERT_TRUE(r) << r.error();
      EXPECT_EQ(*r, row.tokens);
    }
  }
}

TEST(TokenFileTest, AtMostKMaxTokens) {
  std::string text;
  for (std::size_t i = 0; i <= kMaxTokens; ++i) {
    text += "token-number-" + std::to_string(1000000 + i) + "\n";
  }
  auto r = parse_token_file(text);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().find("line 257: more than 256 tokens"), std::string::npos) << r.error();
}

TEST(TokenFileTest, ErrorsNeverQuoteATokenLine) {
  auto r = parse_token_file(kT1 + "\nsecret secret secret\n");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().find("secret"), std::string::npos);
}

TEST(TokenFileTest, TokensAreKeptAsTheirSha256) {
  const std::string d = token_digest("abc");  // FIPS 180-2's example
  ASSERT_EQ(d.size(), 32u);
  EXPECT_EQ(static_cast<unsigned char>(d[0]), 0xba);
  EXPECT_EQ(static_cast<unsigned char>(d[31]), 0xad);
  EXPECT_NE(token_digest(kT1), token_digest(kT2));
}

TEST(ClientKeysTest, Rows) {
  const struct {
    std::string name;
    std::string text;
    std::map<std::string, std::string> keys;  // empty: an error containing `error`
    std::string error;
  } kRows[] = {
      {"two", "AK1:s1\nak-2.x_y:s/2+3=\n", {{"AK1", "s1"}, {"ak-2.x_y", "s/2+3="}}, ""},
      {"secret_with_colon", "AK:a:b\n", {{"AK", "a:b"}}, ""},
      {"comments_crlf", "# keys\r\n\r\nAK:s\r\n", {{"AK", "s"}}, ""},
      {"empty", "\n", {}, "holds no key"},
      {"no_colon", "AKs\n", {}, "line 1: expected ACCESS_KEY:SECRET_KEY"},
      {"empty_access", ":s\n", {}, "line 1: an access key is 1..128"},
      {"access_slash", "A/K:s\n", {}, "an access key is 1..128"},
      {"access_too_long", std::string(129, 'A') + ":s\n", {}, "an access key is 1..128"},
      {"empty_secret", "AK:\n", {}, "line 1: a secret key is 1..256"},
      {"secret_space", "AK:a b\n", {}, "a secret key is 1..256"},
      {"secret_too_long", "AK:" + std::string(257, 's') + "\n", {}, "a secret key is 1..256"},
      {"duplicate", "AK:s\nAK:t\n", {}, "line 2: access key 'AK' twice"},
  };
  for (const auto& row : kRows) {
    SCOPED_TRACE(row.name);
    auto r = parse_client_keys(row.text);
    if (row.keys.empty()) {
      ASSERT_FALSE(r);
      EXPECT_NE(r.error().find(row.error), std::string::npos) << r.error();
    } else {
      ASSERT_TRUE(r) << r.error();
      EXPECT_EQ(*r, row.keys);
    }
  }
}

TEST(ClientKeysTest, ErrorsNeverQuoteASecret) {
  auto r = parse_client_keys("AK:secret-value with-space\n");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().find("secret-value"), std::string::npos);
}

}  // namespace
}  // namespace conf
