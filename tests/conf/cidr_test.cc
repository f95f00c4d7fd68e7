// Table-driven tests of IP address and CIDR parsing and matching (conf/cidr.h).
#include "conf/cidr.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <string>

namespace conf {
namespace {

IpAddress ip(std::string_view text) {
  auto a = parse_ip(text);
  EXPECT_TRUE(a.has_value()) << text;
  return a.value_or(IpAddress());
}

// ---- parse_ip ----

struct IpCase {
  const char* text;
  const char* canonical;  // nullptr: refused
  bool v4 = true;
};

class ParseIpTest : public testing::TestWithParam<IpCase> {};

TEST_P(ParseIpTest, Parses) {
  const IpCase& c = GetParam();
  auto got = parse_ip(c.text);
  ASSERT_EQ(got.has_value(), c.canonical != nullptr) << c.text;
  if (got) {
    EXPECT_EQ(to_string(*got), c.canonical) << c.text;
    EXPECT_EQ(got->is_v4(), c.v4) << c.text;
    EXPECT_EQ(got->bytes().size(), c.v4 ? 4u : 16u);
    EXPECT_EQ(parse_ip(to_string(*got)), got) << c.text;  // round trip
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseIpTest,
    testing::Values(IpCase{"192.0.2.7", "192.0.2.7"}, IpCase{"0.0.0.0", "0.0.0.0"},
                    IpCase{"255.255.255.255", "255.255.255.255"}, IpCase{"::", "::", false},
                    IpCase{"::1", "::1", false}, IpCase{"2001:DB8::1", "2001:db8::1", false},
                    IpCase{"2001:db8:0:0:0:0:0:1", "2001:db8::1", false},
                    IpCase{"2001:db8::", "2001:db8::", false},
                    IpCase{"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8", false},
                    IpCase{"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0", false},
                    IpCase{"fe80::1:2.3.4.5", "fe80::1:203:405", false},
                    IpCase{"[2001:db8::1]", "2001:db8::1", false},
                    IpCase{"0000:0000:0000:0000:0000:ffff:255.255.255.255", "255.255.255.255"},
                    IpCase{"::ffff:192.0.2.7", "192.0.2.7"},  // mapped: folded to IPv4
                    IpCase{"::FFFF:c000:0207", "192.0.2.7"},
                    IpCase{"::192.0.2.7", "::192.0.2.7", false},  // compatible: stays IPv6
                    IpCase{"", nullptr}, IpCase{"1.2.3", nullptr}, IpCase{"1.2.3.4.5", nullptr},
                    IpCase{"1.2.3.256", nullptr}, IpCase{"01.2.3.4", nullptr},
                    IpCase{"1.2.3.04", nullptr}, IpCase{"0x1.2.3.4", nullptr},
                    IpCase{"1.2.3.4 ", nullptr}, IpCase{" 1.2.3.4", nullptr},
                    IpCase{"+1.2.3.4", nullptr}, IpCase{"1.2.3.4:80", nullptr},
                    IpCase{"[1.2.3.4]", nullptr}, IpCase{"[::1", nullptr}, IpCase{"::1]", nullptr},
                    IpCase{"[]", nullptr}, IpCase{":::", nullptr}, IpCase{"1::2::3", nullptr},
                    IpCase{"12345::", nullptr}, IpCase{"1:2:3:4:5:6:7:8:9", nullptr},
                    IpCase{"fe80::1%eth0", nullptr}, IpCase{"g::", nullptr},
                    IpCase{"localhost", nullptr}, IpCase{"::ffff:1.2.3.4.5", nullptr},
                    IpCase{"0000:0000:0000:0000:0000:ffff:255.255.255.2555", nullptr},
                    IpCase{"00000000000000000000000000000000000000000000000::", nullptr}));

TEST(ParseIp, EmbeddedNulIsRefused) {
  EXPECT_FALSE(parse_ip(std::string_view("1.2.3.4\0junk", 12)).has_value());
  EXPECT_FALSE(parse_ip(std::string_view("::1\0", 4)).has_value());
}

TEST(IpAddress, MappedIsTheIpv4Address) {
  EXPECT_EQ(ip("::ffff:10.1.2.3"), ip("10.1.2.3"));
  EXPECT_EQ(IpAddress::v6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3}),
            IpAddress::v4({10, 1, 2, 3}));
  EXPECT_NE(ip("::10.1.2.3"), ip("10.1.2.3"));
  EXPECT_LT(ip("255.255.255.255"), ip("::"));  // IPv4 first
  EXPECT_LT(ip("10.0.0.1"), ip("10.0.0.2"));
}

TEST(FromSockaddr, ReadsEachFamily) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(80);
  ASSERT_EQ(inet_pton(AF_INET, "192.0.2.7", &in.sin_addr), 1);
  auto a = from_sockaddr(reinterpret_cast<const sockaddr*>(&in), sizeof in);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(to_string(*a), "192.0.2.7");
  EXPECT_FALSE(from_sockaddr(reinterpret_cast<const sockaddr*>(&in), sizeof in - 1));

  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  ASSERT_EQ(inet_pton(AF_INET6, "::ffff:192.0.2.7", &in6.sin6_addr), 1);
  a = from_sockaddr(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
  ASSERT_TRUE(a.has_value());
  EXPECT_TRUE(a->is_v4());  // a dual-stack socket's IPv4 client
  EXPECT_EQ(to_string(*a), "192.0.2.7");
  ASSERT_EQ(inet_pton(AF_INET6, "2001:db8::5", &in6.sin6_addr), 1);
  a = from_sockaddr(reinterpret_cast<const sockaddr*>(&in6), sizeof in6);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(to_string(*a), "2001:db8::5");

  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_FALSE(from_sockaddr(reinterpret_cast<const sockaddr*>(&un), sizeof un));
  EXPECT_FALSE(from_sockaddr(nullptr, 0));
}

// ---- parse_cidr ----

struct CidrCase {
  const char* text;
  const char* canonical;   // nullptr: refused
  const char* error = "";  // a part of the error text
};

class ParseCidrTest : public testing::TestWithParam<CidrCase> {};

TEST_P(ParseCidrTest, Parses) {
  const CidrCase& c = GetParam();
  auto got = parse_cidr(c.text);
  ASSERT_EQ(got.has_value(), c.canonical != nullptr)
      << c.text << ": " << (got ? to_string(*got) : got.error());
  if (got) {
    EXPECT_EQ(to_string(*got), c.canonical) << c.text;
    auto again = parse_cidr(to_string(*got));
    ASSERT_TRUE(again.has_value()) << c.text;
    EXPECT_EQ(*again, *got) << c.text;
  } else {
    EXPECT_NE(got.error().find(c.error), std::string::npos) << c.text << ": " << got.error();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Table, ParseCidrTest,
    testing::Values(
        CidrCase{"10.0.0.0/8", "10.0.0.0/8"}, CidrCase{"192.168.1.7", "192.168.1.7/32"},
        CidrCase{"192.168.1.7/32", "192.168.1.7/32"}, CidrCase{"0.0.0.0/0", "0.0.0.0/0"},
        CidrCase{"172.16.0.0/12", "172.16.0.0/12"}, CidrCase{"10.0.0.128/25", "10.0.0.128/25"},
        CidrCase{"::1", "::1/128"}, CidrCase{"::/0", "::/0"},
        CidrCase{"2001:db8::/32", "2001:db8::/32"}, CidrCase{"[2001:db8::]/32", "2001:db8::/32"},
        CidrCase{"2001:DB8:8000::/33", "2001:db8:8000::/33"},
        CidrCase{"::ffff:10.0.0.0/104", "10.0.0.0/8"},  // mapped: the IPv4 range
        CidrCase{"::ffff:0:0/96", "0.0.0.0/0"}, CidrCase{"::ffff:1.2.3.4", "1.2.3.4/32"},
        CidrCase{"10.0.0.0/08", "10.0.0.0/8"}, CidrCase{"", nullptr, "empty"},
        CidrCase{"/8", nullptr, "not an IPv4"}, CidrCase{"10.0.0.0/", nullptr, "0..32"},
        CidrCase{"10.0.0.0/33", nullptr, "0..32"}, CidrCase{"::/129", nullptr, "0..128"},
        CidrCase{"10.0.0.0/-1", nullptr, "0..32"}, CidrCase{"10.0.0.0/+8", nullptr, "0..32"},
        CidrCase{"10.0.0.0/0008", nullptr, "0..32"}, CidrCase{"10.0.0.0/8 ", nullptr, "0..32"},
        CidrCase{"10.0.0.0/8/8", nullptr, "IPv4"}, CidrCase{"10.0.0.0 /8", nullptr, "IPv4"},
        CidrCase{"10/8", nullptr, "IPv4"}, CidrCase{"example.com/8", nullptr, "IPv4"},
        CidrCase{"fe80::%1/64", nullptr, "IPv6"},
        CidrCase{"10.0.0.1/8", nullptr, "write 10.0.0.0/8 for the range, or 10.0.0.1/32"},
        CidrCase{"192.168.1.7/24", nullptr, "write 192.168.1.0/24"},
        CidrCase{"0.0.0.1/0", nullptr, "write 0.0.0.0/0"},
        CidrCase{"2001:db8::1/32", nullptr, "write 2001:db8::/32 for the range"},
        CidrCase{"::ffff:10.0.0.1/104", nullptr, "write ::ffff:10.0.0.0/104"},
        CidrCase{"::ffff:10.0.0.0/95", nullptr, "write ::fffe:0:0/95"}));

TEST(ParseCidr, ErrorsDoNotCarryControlBytes) {
  auto got = parse_cidr(std::string("\x1b[2J") + std::string(500, 'x'));
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().find('\x1b'), std::string::npos);
  EXPECT_LT(got.error().size(), 300u);
}

// ---- contains ----

struct ContainsCase {
  const char* range;
  const char* addr;
  bool in;
};

class ContainsTest : public testing::TestWithParam<ContainsCase> {};

TEST_P(ContainsTest, Matches) {
  const ContainsCase& c = GetParam();
  auto range = parse_cidr(c.range);
  ASSERT_TRUE(range.has_value()) << c.range;
  EXPECT_EQ(range->contains(ip(c.addr)), c.in) << c.addr << " in " << c.range;
  EXPECT_EQ(CidrList({*range}).contains(ip(c.addr)), c.in) << c.addr << " in " << c.range;
}

INSTANTIATE_TEST_SUITE_P(
    Table, ContainsTest,
    testing::Values(
        ContainsCase{"10.0.0.0/8", "10.0.0.0", true},
        ContainsCase{"10.0.0.0/8", "10.255.255.255", true},
        ContainsCase{"10.0.0.0/8", "9.255.255.255", false},
        ContainsCase{"10.0.0.0/8", "11.0.0.0", false},
        ContainsCase{"192.168.1.128/25", "192.168.1.128", true},
        ContainsCase{"192.168.1.128/25", "192.168.1.255", true},
        ContainsCase{"192.168.1.128/25", "192.168.1.127", false},
        ContainsCase{"172.16.0.0/12", "172.31.255.255", true},
        ContainsCase{"172.16.0.0/12", "172.32.0.0", false},
        ContainsCase{"1.2.3.4", "1.2.3.4", true}, ContainsCase{"1.2.3.4/32", "1.2.3.5", false},
        ContainsCase{"0.0.0.0/0", "255.255.255.255", true},
        ContainsCase{"0.0.0.0/0", "::1", false},              // IPv4 ranges hold no IPv6 address
        ContainsCase{"10.0.0.0/8", "::ffff:10.1.2.3", true},  // dual-stack peer
        ContainsCase{"10.0.0.0/8", "::ffff:11.1.2.3", false},
        ContainsCase{"::ffff:10.0.0.0/104", "10.9.9.9", true},
        ContainsCase{"::ffff:10.0.0.0/104", "::ffff:10.9.9.9", true},
        ContainsCase{"::/0", "2001:db8::1", true},
        ContainsCase{"::/0", "10.0.0.1", false},  // as nginx: IPv6 ranges hold no IPv4 client
        ContainsCase{"::/0", "::ffff:10.0.0.1", false}, ContainsCase{"::1", "::1", true},
        ContainsCase{"::1/128", "::2", false}, ContainsCase{"::1/128", "0.0.0.1", false},
        ContainsCase{"2001:db8::/32", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", true},
        ContainsCase{"2001:db8::/32", "2001:db9::", false},
        ContainsCase{"2001:db8::/32", "2001:db7:ffff::", false},
        ContainsCase{"2001:db8:8000::/33", "2001:db8:8000::1", true},
        ContainsCase{"2001:db8:8000::/33", "2001:db8:7fff::1", false},
        ContainsCase{"::10.0.0.0/104", "10.0.0.1", false}));  // compatible is not mapped

TEST(CidrList, AnyRangeMatches) {
  CidrList list;
  EXPECT_FALSE(list.contains(ip("10.0.0.1")));  // empty holds nothing
  list.add(*parse_cidr("10.0.0.0/8"));
  list.add(*parse_cidr("2001:db8::/32"));
  EXPECT_EQ(list.size(), 2u);
  EXPECT_TRUE(list.contains(ip("10.1.1.1")));
  EXPECT_TRUE(list.contains(ip("::ffff:10.1.1.1")));
  EXPECT_TRUE(list.contains(ip("2001:db8::7")));
  EXPECT_FALSE(list.contains(ip("192.0.2.1")));
  EXPECT_FALSE(list.contains(ip("2001:db9::7")));
}

}  // namespace
}  // namespace conf
