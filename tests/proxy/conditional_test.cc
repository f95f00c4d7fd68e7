// Table-driven tests of conditional request evaluation (RFC 9110 §13.2.2 order).
#include "proxy/conditional.h"

#include <gtest/gtest.h>

namespace proxy {
namespace {

constexpr std::time_t kLm = 1700000000;  // Tue, 14 Nov 2023 22:13:20 GMT
const char* kLmText = "Tue, 14 Nov 2023 22:13:20 GMT";

struct Case {
  const char* name;
  Conditions c;
  Precondition want;
};

class EvaluateTest : public testing::TestWithParam<Case> {};

TEST_P(EvaluateTest, Evaluates) {
  const Case& c = GetParam();
  Validators v{"\"abc\"", kLm};
  EXPECT_EQ(evaluate(c.c, v), c.want) << c.name;
}

Conditions inm(const char* v) {
  Conditions c;
  c.if_none_match = v;
  return c;
}
Conditions ims(const char* v) {
  Conditions c;
  c.if_modified_since = v;
  return c;
}
Conditions im(const char* v) {
  Conditions c;
  c.if_match = v;
  return c;
}

INSTANTIATE_TEST_SUITE_P(
    Table, EvaluateTest,
    testing::Values(
        Case{"none", {}, Precondition::kProceed},
        Case{"inm match", inm("\"abc\""), Precondition::kNotModified},
        Case{"inm weak match", inm("W/\"abc\""), Precondition::kNotModified},
        Case{"inm list", inm("\"x\", \"abc\""), Precondition::kNotModified},
        Case{"inm star", inm("*"), Precondition::kNotModified},
        Case{"inm other", inm("\"zzz\""), Precondition::kProceed},
        Case{"inm garbage", inm("abc"), Precondition::kProceed},
        Case{"ims equal", ims(kLmText), Precondition::kNotModified},
        Case{"ims later", ims("Wed, 15 Nov 2023 00:00:00 GMT"), Precondition::kNotModified},
        Case{"ims earlier", ims("Mon, 13 Nov 2023 00:00:00 GMT"), Precondition::kProceed},
        Case{"ims malformed ignored", ims("yesterday"), Precondition::kProceed},
        Case{"inm wins over ims",
             Conditions{"", "\"zzz\"", "Wed, 15 Nov 2023 00:00:00 GMT", "", ""},
             Precondition::kProceed},
        Case{"if-match ok", im("\"abc\""), Precondition::kProceed},
        Case{"if-match star", im("*"), Precondition::kProceed},
        Case{"if-match weak fails", im("W/\"abc\""), Precondition::kFailed},
        Case{"if-match other", im("\"x\""), Precondition::kFailed},
        Case{"ius earlier fails", Conditions{"", "", "", "Mon, 13 Nov 2023 00:00:00 GMT", ""},
             Precondition::kFailed},
        Case{"ius later ok", Conditions{"", "", "", "Wed, 15 Nov 2023 00:00:00 GMT", ""},
             Precondition::kProceed}));

TEST(IfRange, StrongEtagAndExactDate) {
  Validators v{"\"abc\"", kLm};
  Conditions c;
  EXPECT_TRUE(if_range_allows(c, v));
  c.if_range = "\"abc\"";
  EXPECT_TRUE(if_range_allows(c, v));
  c.if_range = "\"other\"";
  EXPECT_FALSE(if_range_allows(c, v));
  c.if_range = "W/\"abc\"";  // weak validators never match If-Range
  EXPECT_FALSE(if_range_allows(c, v));
  c.if_range = kLmText;
  EXPECT_TRUE(if_range_allows(c, v));
  c.if_range = "Wed, 15 Nov 2023 00:00:00 GMT";
  EXPECT_FALSE(if_range_allows(c, v));
  c.if_range = "garbage";
  EXPECT_FALSE(if_range_allows(c, v));
}

}  // namespace
}  // namespace proxy
