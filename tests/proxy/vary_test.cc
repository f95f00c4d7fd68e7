// Tests of proxy/vary.h: the Vary spec of a response (RFC 9111 §4.1; `*` in every form), the
// variant key of a request, and the bounded index of varying objects. Row names marked
// "(cache-tests: id)" are the matching case of the public cache-tests.fyi suite.
#include "proxy/vary.h"

#include <gtest/gtest.h>

#include <thread>

namespace proxy {
namespace {

using H = Headers;
using Names = std::vector<std::string>;

struct SpecCase {
  const char* name;
  H response;
  bool star;
  Names names;
};

void PrintTo(const SpecCase& c, std::ostream* os) { *os << c.name; }

class VarySpecTest : public testing::TestWithParam<SpecCase> {};

TEST_P(VarySpecTest, Parses) {
  const SpecCase& c = GetParam();
  VarySpec v = vary_of(c.response);
  EXPECT_EQ(v.star, c.star);
  EXPECT_EQ(v.names, c.names);
  EXPECT_FALSE(v.too_many);
}

INSTANTIATE_TEST_SUITE_P(
    Table, VarySpecTest,
    testing::Values(
        SpecCase{"none", H{}, false, {}}, SpecCase{"empty line", H{{"Vary", " "}}, false, {}},
        SpecCase{
            "one name, lower-cased", H{{"Vary", "Accept-Encoding"}}, false, {"accept-encoding"}},
        SpecCase{"sorted and deduplicated over lines",
                 H{{"Vary", "Foo, bar"}, {"vary", "FOO"}},
                 false,
                 {"bar", "foo"}},
        SpecCase{"star (vary-syntax-star)", H{{"Vary", "*"}}, true, {}},
        SpecCase{"star star (vary-syntax-star-star)", H{{"Vary", "*, *"}}, true, {}},
        SpecCase{"star on two lines (vary-syntax-star-star-lines)",
                 H{{"Vary", "*"}, {"Vary", "*"}},
                 true,
                 {}},
        SpecCase{"empty then star (vary-syntax-empty-star)", H{{"Vary", ", *"}}, true, {}},
        SpecCase{"empty line then star (vary-syntax-empty-star-lines)",
                 H{{"Vary", ""}, {"Vary", "*"}},
                 true,
                 {}},
        SpecCase{"star and a name (vary-syntax-star-foo)", H{{"Vary", "*, Foo"}}, true, {"foo"}},
        SpecCase{"a name and star (vary-syntax-foo-star)", H{{"Vary", "Foo, *"}}, true, {"foo"}}));

TEST(VarySpec, TooManyNames) {
  EXPECT_TRUE(vary_of(H{{"Vary", "a, b, c, d, e, f, g, h, i"}}).too_many);
  EXPECT_FALSE(vary_of(H{{"Vary", "a, b, c, d, e, f, g, h"}}).too_many);
}

struct KeyCase {
  const char* name;
  H a;
  H b;
  bool same;
};

void PrintTo(const KeyCase& c, std::ostream* os) { *os << c.name; }

class VariantKeyTest : public testing::TestWithParam<KeyCase> {};

TEST_P(VariantKeyTest, Compares) {
  const KeyCase& c = GetParam();
  const Names names = {"bar", "foo"};
  EXPECT_EQ(variant_key("K", names, c.a) == variant_key("K", names, c.b), c.same);
}

INSTANTIATE_TEST_SUITE_P(
    Table, VariantKeyTest,
    testing::Values(
        KeyCase{"same values (vary-match)", H{{"Foo", "1"}}, H{{"foo", "1"}}, true},
        KeyCase{"different value (vary-no-match)", H{{"Foo", "1"}}, H{{"Foo", "2"}}, false},
        KeyCase{"absent vs present (vary-omit-stored)", H{}, H{{"Foo", "1"}}, false},
        KeyCase{"present vs absent (vary-omit)", H{{"Foo", "1"}}, H{}, false},
        KeyCase{"absent vs empty", H{}, H{{"Foo", ""}}, false},
        KeyCase{"both absent (vary-2-match-omit)", H{{"X", "1"}}, H{{"Y", "2"}}, true},
        KeyCase{"header order does not matter (vary-3-order)", H{{"Bar", "abc"}, {"Foo", "1"}},
                H{{"Foo", "1"}, {"Bar", "abc"}}, true},
        KeyCase{"another value of the second name (vary-3-order)", H{{"Foo", "1"}, {"Bar", "abc"}},
                H{{"Foo", "1"}, {"Bar", "abcde"}}, false},
        KeyCase{"two lines are their join", H{{"Foo", "1"}, {"Foo", "2"}}, H{{"Foo", "1, 2"}},
                true},
        KeyCase{"whitespace around members", H{{"Foo", " 1 ,2"}}, H{{"Foo", "1, 2"}}, true},
        KeyCase{"headers not named do not count", H{{"Foo", "1"}, {"Baz", "x"}},
                H{{"Foo", "1"}, {"Baz", "y"}}, true}));

TEST(VariantKey, StartsWithTheBaseAndASeparatorNoKeyHolds) {
  const std::string k = variant_key("base", {"foo"}, H{{"Foo", "1"}});
  EXPECT_EQ(k.rfind("base\n#", 0), 0u);
}

TEST(VaryIndex, LearnsForgetsAndBoundsVariants) {
  VaryIndex index;
  EXPECT_EQ(index.find("K"), std::nullopt);
  index.learn("K", {"foo"});
  EXPECT_EQ(index.find("K"), (Names{"foo"}));
  for (std::size_t i = 0; i < VaryIndex::kMaxVariants; ++i) {
    EXPECT_TRUE(index.admit("K", "K#" + std::to_string(i)));
  }
  EXPECT_FALSE(index.admit("K", "K#new"));  // full
  EXPECT_TRUE(index.admit("K", "K#3"));     // one already stored stays admitted
  EXPECT_FALSE(index.admit("other", "x"));  // not known to vary
  index.learn("K", {"bar"});                // varies differently now: variants anew
  EXPECT_TRUE(index.admit("K", "K#new"));
  index.learn("K", {});  // stopped varying
  EXPECT_EQ(index.find("K"), std::nullopt);
  EXPECT_EQ(index.size(), 0u);
}

TEST(VaryIndex, ForgetsTheOldestBeyondItsBound) {
  VaryIndex index;
  for (std::size_t i = 0; i <= VaryIndex::kMaxObjects; ++i) {
    index.learn("K" + std::to_string(i), {"foo"});
  }
  EXPECT_EQ(index.size(), VaryIndex::kMaxObjects);
  EXPECT_EQ(index.find("K0"), std::nullopt);
  EXPECT_NE(index.find("K1"), std::nullopt);
}

TEST(VaryIndex, ConcurrentUse) {
  VaryIndex index;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        const std::string k = "K" + std::to_string(i % 50);
        index.learn(k, {t % 2 == 0 ? "a" : "b"});
        (void)index.find(k);
        (void)index.admit(k, k + std::to_string(i));
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_LE(index.size(), 50u);
}

}  // namespace
}  // namespace proxy
