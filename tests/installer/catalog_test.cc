// Tests of installer/catalog.cc: column fitting (eustore 2.1 fmtCol, UTF-8 aware), URL
// resolution (3.0 urljoin rules), single-kernel truthiness and tolerant parsing, table-driven.
#include "installer/catalog.h"

#include <gtest/gtest.h>

#include "installer/crypto.h"

namespace installer {
namespace {

TEST(Catalog, FitColumn) {
  struct {
    std::string in;
    std::size_t width;
    std::string out;
  } cases[] = {
      {"", 3, "   "},          {"abc", 3, "abc"},        {"abcd", 3, "a.."},
      {"débian", 6, "débian"}, {"débiann", 6, "débi.."}, {"x", 11, "x          "},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(fit_column(c.in, c.width), c.out) << c.in;
  }
}

TEST(Catalog, ResolveUrl) {
  struct {
    std::string base, ref, want;
  } cases[] = {
      {"http://h:1/", "images/a.tgz", "http://h:1/images/a.tgz"},
      {"http://h:1", "images/a.tgz", "http://h:1/images/a.tgz"},
      {"http://h:1/store", "a.tgz", "http://h:1/store/a.tgz"},
      {"http://h:1/store/", "/other/a.tgz", "http://h:1/other/a.tgz"},
      {"http://h:1/store/", "https://x/a.tgz", "https://x/a.tgz"},
      {"https://h/store/", "//cdn/a.tgz", "https://cdn/a.tgz"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(resolve_url(c.base, c.ref), c.want) << c.base << " + " << c.ref;
  }
}

TEST(Catalog, SingleKernelIsCaseInsensitiveTrue) {
  CatalogImage i;
  for (auto [v, want] : {std::pair{"True", true},
                         {"true", true},
                         {"TRUE", true},
                         {"False", false},
                         {"", false},
                         {"yes", false}}) {
    i.single_kernel = v;
    EXPECT_EQ(is_single_kernel(i), want) << v;
  }
}

TEST(Catalog, TolerantParsing) {
  auto c = parse_catalog(
      R"({"images":[{"name":"1","os":"x","single-kernel":true,"date":20110716,"hypervisors-supported":["kvm",3]}]})");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->images.size(), 1u);
  EXPECT_EQ(c->images[0].single_kernel, "True");
  EXPECT_EQ(c->images[0].date, "20110716");
  EXPECT_EQ(c->images[0].hypervisors, (std::vector<std::string>{"kvm", "3"}));
  EXPECT_FALSE(c->warnings.empty());
  EXPECT_NE(find_image(*c, "1"), nullptr);
  EXPECT_EQ(find_image(*c, "2"), nullptr);
  EXPECT_FALSE(parse_catalog("[]"));
  EXPECT_FALSE(parse_catalog("{\"images\":{}}"));
  EXPECT_FALSE(parse_catalog("{"));
}

TEST(Catalog, EustoreNameVectors) {
  // EUSTORE.md §1.7.
  EXPECT_EQ(eustore_name_from_md5(md5_hex("")), "1136548044");
  EXPECT_EQ(eustore_name_from_md5(md5_hex("hello\n")), "0222977072");
  EXPECT_EQ(eustore_name_from_md5(md5_hex("eustore")), "0127128318");
  EXPECT_EQ(md5_hex("eustore"), "06858ee31c6d12f02dff90a03dc9815e");
}

}  // namespace
}  // namespace installer
