// Table tests of the upstream Content-Range parser (proxy/fetch_rules.h): RFC 9110 §14.4's form and
// Walrus' unit-less one.
#include <gtest/gtest.h>

#include "proxy/fetch_rules.h"

namespace proxy {
namespace {

TEST(ContentRange, Table) {
  struct Row {
    const char* text;
    bool ok;
    bool unit = false;
    std::uint64_t first = 0, last = 0;
    std::optional<std::uint64_t> total = std::nullopt;
  } rows[] = {
      {"bytes 0-99/1000", true, true, 0, 99, 1000},
      {"bytes 0-99/*", true, true, 0, 99, std::nullopt},
      {"0-99/1000", true, false, 0, 99, 1000},
      {"0-99/0", true, false, 0, 99, 0},  // Walrus: total untrusted, sized by HEAD instead
      {"bytes 0-99/99", false},           // complete length at or below last-pos: invalid
      {"bytes 0-99/1", false},
      {"bytes 5-4/10", false},
      {"bytes */1000", false},
      {"bytes 0-99", false},
      {"bytes -1-5/10", false},
      {"bytes 0-99/1x", false},
      {"", false},
  };
  for (const Row& r : rows) {
    auto cr = parse_content_range(r.text);
    ASSERT_EQ(cr.has_value(), r.ok) << r.text;
    if (r.ok) {
      EXPECT_EQ(cr->unit, r.unit) << r.text;
      EXPECT_EQ(cr->first, r.first) << r.text;
      EXPECT_EQ(cr->last, r.last) << r.text;
      EXPECT_EQ(cr->total, r.total) << r.text;
    }
  }
}

}  // namespace
}  // namespace proxy
