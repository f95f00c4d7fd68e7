// Table-driven tests of the X-Forwarded-For walk (proxy/client_address.h).
#include "proxy/client_address.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace proxy {
namespace {

conf::IpAddress ip(std::string_view text) {
  auto a = conf::parse_ip(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(conf::IpAddress());
}

// The trusted proxies of every row: a private range, one balancer, an IPv6 range.
const conf::CidrList& trusted() {
  static const conf::CidrList list({*conf::parse_cidr("10.0.0.0/8"), *conf::parse_cidr("192.0.2.1"),
                                    *conf::parse_cidr("2001:db8:1::/48")});
  return list;
}

// ---- parse_forwarded_entry ----

struct EntryCase {
  const char* entry;
  const char* want;  // nullptr: not an address
};

class ForwardedEntryTest : public testing::TestWithParam<EntryCase> {};

TEST_P(ForwardedEntryTest, Parses) {
  const EntryCase& c = GetParam();
  auto got = parse_forwarded_entry(c.entry);
  ASSERT_EQ(got.has_value(), c.want != nullptr) << c.entry;
  if (got) {
    EXPECT_EQ(conf::to_string(*got), c.want) << c.entry;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ForwardedEntryTest,
    testing::Values(
        EntryCase{"203.0.113.9", "203.0.113.9"}, EntryCase{"203.0.113.9:5678", "203.0.113.9"},
        EntryCase{"203.0.113.9:0", "203.0.113.9"}, EntryCase{"203.0.113.9:65535", "203.0.113.9"},
        EntryCase{"2001:db8::9", "2001:db8::9"}, EntryCase{"[2001:db8::9]", "2001:db8::9"},
        EntryCase{"[2001:db8::9]:80", "2001:db8::9"},
        EntryCase{"::ffff:203.0.113.9", "203.0.113.9"},
        EntryCase{"[::ffff:203.0.113.9]:80", "203.0.113.9"},
        EntryCase{"203.0.113.9:65536", nullptr}, EntryCase{"203.0.113.9:", nullptr},
        EntryCase{"203.0.113.9:http", nullptr}, EntryCase{"203.0.113.9:-1", nullptr},
        EntryCase{"[203.0.113.9]", nullptr}, EntryCase{"[203.0.113.9]:80", nullptr},
        EntryCase{"[2001:db8::9]80", nullptr}, EntryCase{"[2001:db8::9]:", nullptr},
        EntryCase{"[2001:db8::9", nullptr}, EntryCase{"2001:db8::9:80:x", nullptr},
        EntryCase{"unknown", nullptr}, EntryCase{"_hidden", nullptr}, EntryCase{"", nullptr},
        EntryCase{"203.0.113.9 ", nullptr}, EntryCase{"203.0.113.9 203.0.113.8", nullptr},
        EntryCase{"fe80::1%eth0", nullptr}));

// ---- client_from_forwarded_for ----

struct WalkCase {
  const char* name;
  const char* peer;
  std::vector<std::string> lines;
  const char* want;
};

class ForwardedForTest : public testing::TestWithParam<WalkCase> {};

TEST_P(ForwardedForTest, Walks) {
  const WalkCase& c = GetParam();
  std::vector<std::string_view> lines(c.lines.begin(), c.lines.end());
  EXPECT_EQ(conf::to_string(client_from_forwarded_for(ip(c.peer), lines, trusted())), c.want)
      << c.name;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ForwardedForTest,
    testing::Values(
        WalkCase{"untrusted peer: XFF ignored", "198.51.100.1", {"203.0.113.9"}, "198.51.100.1"},
        WalkCase{
            "untrusted peer, trusted-looking XFF", "198.51.100.1", {"10.0.0.1"}, "198.51.100.1"},
        WalkCase{"trusted peer, no XFF", "10.0.0.1", {}, "10.0.0.1"},
        WalkCase{"trusted peer, empty XFF", "10.0.0.1", {""}, "10.0.0.1"},
        WalkCase{"trusted peer, one entry", "10.0.0.1", {"203.0.113.9"}, "203.0.113.9"},
        WalkCase{"right-most untrusted wins over forged left",
                 "10.0.0.1",
                 {"1.1.1.1, 203.0.113.9"},
                 "203.0.113.9"},
        WalkCase{"trusted hops skipped",
                 "10.0.0.1",
                 {"1.1.1.1, 203.0.113.9, 10.0.0.7, 192.0.2.1"},
                 "203.0.113.9"},
        WalkCase{"several lines are one list",
                 "10.0.0.1",
                 {"1.1.1.1, 203.0.113.9", "10.0.0.7"},
                 "203.0.113.9"},
        WalkCase{"several lines, last untrusted",
                 "10.0.0.1",
                 {"10.0.0.5", "203.0.113.9"},
                 "203.0.113.9"},
        WalkCase{"all trusted: the left-most",
                 "10.0.0.1",
                 {"10.0.0.5, 10.0.0.6", "192.0.2.1"},
                 "10.0.0.5"},
        WalkCase{"junk right-most: the peer", "10.0.0.1", {"203.0.113.9, unknown"}, "10.0.0.1"},
        WalkCase{"junk in the middle: last trusted hop",
                 "10.0.0.1",
                 {"203.0.113.9, garbage, 10.0.0.7"},
                 "10.0.0.7"},
        WalkCase{"junk left of the client is never read",
                 "10.0.0.1",
                 {"garbage, 203.0.113.9, 10.0.0.7"},
                 "203.0.113.9"},
        WalkCase{"IPv4 with port", "10.0.0.1", {"1.1.1.1, 203.0.113.9:5678"}, "203.0.113.9"},
        WalkCase{"IPv6 with port", "10.0.0.1", {"[2001:db8::9]:443"}, "2001:db8::9"},
        WalkCase{"trusted hop with port", "10.0.0.1", {"203.0.113.9, 10.0.0.7:80"}, "203.0.113.9"},
        WalkCase{"spaces and tabs",
                 "10.0.0.1",
                 {"  1.1.1.1 ,\t203.0.113.9\t ,  10.0.0.7  "},
                 "203.0.113.9"},
        WalkCase{
            "space inside an entry is junk", "10.0.0.1", {"1.1.1.1, 203.0.113.9 8"}, "10.0.0.1"},
        WalkCase{"empty entries skipped",
                 "10.0.0.1",
                 {",, 203.0.113.9 ,, 10.0.0.7,,", ""},
                 "203.0.113.9"},
        WalkCase{"IPv6 client, IPv6 proxies",
                 "2001:db8:1::1",
                 {"2001:db8:9::9, 2001:db8:1::2"},
                 "2001:db8:9::9"},
        WalkCase{"IPv6 peer untrusted", "2001:db8:9::1", {"203.0.113.9"}, "2001:db8:9::1"},
        WalkCase{"mapped entries are IPv4",
                 "10.0.0.1",
                 {"::ffff:203.0.113.9, ::ffff:10.0.0.9"},
                 "203.0.113.9"},
        WalkCase{
            "mapped peer is trusted as IPv4", "::ffff:10.0.0.1", {"203.0.113.9"}, "203.0.113.9"}));

std::string entries(std::size_t n, std::string_view entry) {
  std::string line;
  for (std::size_t i = 0; i < n; ++i) {
    line += i == 0 ? "" : ", ";
    line += entry;
  }
  return line;
}

conf::IpAddress walk(const std::vector<std::string>& lines) {
  std::vector<std::string_view> views(lines.begin(), lines.end());
  return client_from_forwarded_for(ip("10.0.0.1"), views, trusted());
}

TEST(ForwardedFor, AtMost64EntriesAreRead) {
  // 63 trusted hops and the client: all 64 are read.
  EXPECT_EQ(conf::to_string(walk({"203.0.113.9, " + entries(63, "10.0.0.2")})), "203.0.113.9");
  // 64 trusted hops and the client: the 65th entry is past the limit: the last trusted hop.
  EXPECT_EQ(conf::to_string(walk({"203.0.113.9, " + entries(64, "10.0.0.2")})), "10.0.0.2");
  // Across lines the count is the same.
  EXPECT_EQ(
      conf::to_string(walk({"203.0.113.9", entries(32, "10.0.0.2"), entries(32, "10.0.0.3")})),
      "10.0.0.2");
  // 64 trusted entries and nothing else: all read, the left-most.
  EXPECT_EQ(conf::to_string(walk({"10.0.0.4, " + entries(63, "10.0.0.2")})), "10.0.0.4");
  // Empty entries do not count (only their bytes do).
  EXPECT_EQ(conf::to_string(walk({"203.0.113.9,,,,,,,,,,,," + entries(63, "10.0.0.2")})),
            "203.0.113.9");
}

TEST(ForwardedFor, AtMost8KiBAreRead) {
  // The client entry ends exactly 8 KiB from the right end: read.
  const std::string client = "203.0.113.9";
  std::string pad(kMaxForwardedForBytes - client.size() - 1 - 8, ' ');  // ",10.0.0.2" follows
  EXPECT_EQ(conf::to_string(walk({client + pad + ",10.0.0.2"})), "203.0.113.9");
  // One more byte: the client entry is not wholly within the limit.
  EXPECT_EQ(conf::to_string(walk({" " + client + pad + ",10.0.0.2"})), "10.0.0.2");
  // Same across lines: the line boundary counts as the ',' it stands for.
  EXPECT_EQ(conf::to_string(walk({client + pad, "10.0.0.2"})), "203.0.113.9");
  EXPECT_EQ(conf::to_string(walk({" " + client + pad, "10.0.0.2"})), "10.0.0.2");
  // A huge field is cut off without reading it all: the peer (nothing trusted was seen).
  EXPECT_EQ(conf::to_string(walk({std::string(1 << 20, '1')})), "10.0.0.1");
  EXPECT_EQ(conf::to_string(walk({"203.0.113.9", std::string(1 << 20, ',')})), "10.0.0.1");
}

}  // namespace
}  // namespace proxy
