// Tests of conf/result.h: both sides of Result<T, E> and Result<void, E>, including the cases the
// std::expected API makes easy to get wrong (T == E, move-only T, converting unexpected()).

#include "conf/result.h"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace conf {
namespace {

Result<int, std::string> half(int n) {
  if (n % 2 != 0) {
    return unexpected("odd: " + std::to_string(n));
  }
  return n / 2;
}

TEST(ResultTest, ValueAndErrorSides) {
  const struct {
    int input;
    bool ok;
    int value;
    std::string error;
  } kCases[] = {
      {4, true, 2, ""},
      {0, true, 0, ""},
      {3, false, 0, "odd: 3"},
  };
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.input);
    auto r = half(c.input);
    ASSERT_EQ(r.has_value(), c.ok);
    EXPECT_EQ(static_cast<bool>(r), c.ok);
    if (c.ok) {
      EXPECT_EQ(r.value(), c.value);
      EXPECT_EQ(*r, c.value);
    } else {
      EXPECT_EQ(r.error(), c.error);
    }
    EXPECT_EQ(r.value_or(-1), c.ok ? c.value : -1);
  }
}

TEST(ResultTest, SameTypeOnBothSidesStaysApart) {
  Result<std::string, std::string> ok = std::string("value");
  Result<std::string, std::string> bad = unexpected(std::string("error"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, "value");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), "error");
}

TEST(ResultTest, ConvertsUnexpectedAndMovesOut) {
  Result<std::string, std::string> bad = unexpected("literal");  // const char* -> std::string
  ASSERT_FALSE(bad);
  std::string moved = std::move(bad).error();
  EXPECT_EQ(moved, "literal");

  Result<std::unique_ptr<int>, std::string> owned = std::make_unique<int>(7);
  ASSERT_TRUE(owned);
  EXPECT_EQ(**owned, 7);
  std::unique_ptr<int> taken = std::move(owned).value();
  EXPECT_EQ(*taken, 7);

  Result<std::string, int> text = std::string("abc");
  EXPECT_EQ(text->size(), 3u);
}

TEST(ResultTest, VoidSpecialisation) {
  Result<void, std::string> ok;
  EXPECT_TRUE(ok);
  EXPECT_TRUE(ok.has_value());
  ok.value();

  Result<void, std::string> bad = unexpected("failed");
  EXPECT_FALSE(bad);
  EXPECT_EQ(bad.error(), "failed");
  EXPECT_EQ(std::move(bad).error(), "failed");

  // Assignment replaces either side.
  ok = unexpected(std::string("later"));
  EXPECT_FALSE(ok);
  bad = Result<void, std::string>();
  EXPECT_TRUE(bad);
}

}  // namespace
}  // namespace conf
