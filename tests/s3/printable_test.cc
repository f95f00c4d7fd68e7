// Table tests of s3::printable (s3/printable.h): what is escaped, what passes, where it cuts.
#include "s3/printable.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace s3 {
namespace {

struct Case {
  const char* name;
  std::string text;
  std::size_t max;
  std::string want;
};

class PrintableTest : public testing::TestWithParam<Case> {};

TEST_P(PrintableTest, Escapes) {
  const Case& c = GetParam();
  EXPECT_EQ(printable(c.text, c.max), c.want) << c.name;
}

using namespace std::string_literals;

INSTANTIATE_TEST_SUITE_P(
    Table, PrintableTest,
    testing::Values(Case{"plain", "images/centos-7.tgz", 256, "images/centos-7.tgz"},
                    Case{"empty", "", 256, ""},
                    Case{"space and punctuation", "a b+c%20d'e", 256, "a b+c%20d'e"},
                    Case{"newline and CR", "a\nb\rc", 256, "a\\x0Ab\\x0Dc"},
                    Case{"NUL", "a\0b"s, 256, "a\\x00b"},
                    Case{"escape sequence", "\x1b[31mred", 256, "\\x1B[31mred"},
                    Case{"DEL and tab", "\x7f\t", 256, "\\x7F\\x09"},
                    Case{"backslash and quote", "a\\b\"c", 256, "a\\x5Cb\\x22c"},
                    Case{"valid 2-byte", "caf\xc3\xa9", 256, "caf\xc3\xa9"},
                    Case{"valid 3-byte", "\xe2\x82\xac", 256, "\xe2\x82\xac"},
                    Case{"valid 4-byte", "\xf0\x9f\x90\x98", 256, "\xf0\x9f\x90\x98"},
                    Case{"C1 control NEL", "a\xc2\x85z", 256, "a\\xC2\\x85z"},
                    Case{"C1 control CSI", "\xc2\x9b", 256, "\\xC2\\x9B"},
                    Case{"first non-control above C1", "\xc2\xa0", 256, "\xc2\xa0"},
                    Case{"lone continuation", "a\x80z", 256, "a\\x80z"},
                    Case{"latin-1 byte", "caf\xe9", 256, "caf\\xE9"},
                    Case{"truncated sequence then ASCII", "\xe2\x82z", 256, "\\xE2\\x82z"},
                    Case{"truncated at the end", "ok\xf0\x9f\x90", 256, "ok\\xF0\\x9F\\x90"},
                    Case{"overlong slash", "\xc0\xaf", 256, "\\xC0\\xAF"},
                    Case{"overlong 3-byte", "\xe0\x80\xaf", 256, "\\xE0\\x80\\xAF"},
                    Case{"surrogate", "\xed\xa0\x80", 256, "\\xED\\xA0\\x80"},
                    Case{"above U+10FFFF", "\xf4\x90\x80\x80", 256, "\\xF4\\x90\\x80\\x80"},
                    Case{"F5 and FF", "\xf5\xff", 256, "\\xF5\\xFF"},
                    Case{"max exactly", "abcd", 4, "abcd"},
                    Case{"cut", "abcdef", 4, "abcd...(+2 bytes)"},
                    Case{"max 0", "abc", 0, "...(+3 bytes)"},
                    Case{"escape not split", "ab\n", 5, "ab...(+1 bytes)"},
                    Case{"escape fits", "ab\n", 6, "ab\\x0A"},
                    Case{"UTF-8 not split", "a\xe2\x82\xac", 3, "a...(+3 bytes)"},
                    Case{"UTF-8 fits", "a\xe2\x82\xac", 4, "a\xe2\x82\xac"}));

TEST(Printable, DefaultMaxIs256) {
  std::string key(30000, 'k');
  std::string got = printable(key);
  EXPECT_EQ(got, std::string(256, 'k') + "...(+29744 bytes)");
}

TEST(Printable, HostileKeyIsBoundedAndOneLine) {
  // A 30 KB key of invalid UTF-8, newlines and escape sequences.
  std::string key;
  for (int i = 0; i < 10000; ++i) {
    key += "\xff\n\x1b";
  }
  std::string got = printable(key, 100);
  EXPECT_LE(got.size(), 100u + 32u);
  EXPECT_EQ(got.find('\n'), std::string::npos);
  EXPECT_EQ(got.find('\x1b'), std::string::npos);
  EXPECT_TRUE(got.ends_with("...(+29975 bytes)")) << got;  // 25 bytes shown as 100
  for (char c : got) {
    EXPECT_LT(static_cast<unsigned char>(c), 0x80);
  }
}

TEST(Printable, WorkIsBoundedByMax) {
  std::string huge(64u << 20, '\xff');  // 64 MiB
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(printable(huge, 8).size(), 8 + std::string("...(+67108862 bytes)").size());
  }
  // A copy or a full scan of 64 MiB, 100 times, would take seconds even in a release build.
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
}

}  // namespace
}  // namespace s3
