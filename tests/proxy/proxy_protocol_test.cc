// Table-driven tests of the PROXY protocol header parser (proxy/proxy_protocol.h), v1 and v2.
#include "proxy/proxy_protocol.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <vector>

namespace proxy {
namespace {

using namespace std::string_literals;

const std::string kSignature("\r\n\r\n\0\r\nQUIT\n", 12);
const std::string kRequest = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";

std::string bytes(std::initializer_list<int> values) {
  std::string out;
  for (int v : values) {
    out += static_cast<char>(v);
  }
  return out;
}

// A v2 header: signature, ver_cmd, fam, the length of `body`, `body`.
std::string v2(int ver_cmd, int fam, const std::string& body) {
  return kSignature +
         bytes({ver_cmd, fam, static_cast<int>(body.size() >> 8),
                static_cast<int>(body.size() & 0xff)}) +
         body;
}

// 192.0.2.7:5678 -> 198.51.100.1:443
const std::string kInetBody = bytes({192, 0, 2, 7, 198, 51, 100, 1, 0x16, 0x2e, 0x01, 0xbb});
// 2001:db8::7:5678 -> 2001:db8::1:443
const std::string kInet6Body =
    bytes({0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,    7,    0x20, 0x01,
           0x0d, 0xb8, 0,    0,    0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x16, 0x2e, 0x01, 0xbb});
// ::ffff:192.0.2.7:5678 -> ::ffff:198.51.100.1:443
const std::string kMappedBody =
    bytes({0, 0, 0, 0, 0, 0, 0, 0, 0,    0,    0xff, 0xff, 192, 0, 2,    7,    0,    0,
           0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198,  51,   100, 1, 0x16, 0x2e, 0x01, 0xbb});
const std::string kUnixBody(216, 'u');
// PP2_TYPE_ALPN "h2", PP2_TYPE_AUTHORITY "example.com", PP2_TYPE_NOOP of 0 bytes.
const std::string kTlvs =
    bytes({0x01, 0, 2}) + "h2" + bytes({0x02, 0, 11}) + "example.com" + bytes({0x04, 0, 0});

struct Case {
  const char* name;
  std::string input;
  ProxyParse want;
  std::size_t consumed = 0;  // kDone
  const char* source = "";   // kDone: "" for none
  std::uint16_t source_port = 0;
  bool local = false;
  const char* error = "";  // kInvalid: a part of the error text
};

class ProxyParseTest : public testing::TestWithParam<Case> {};

TEST_P(ProxyParseTest, Parses) {
  const Case& c = GetParam();
  ProxyHeader header;
  header.source_port = 9999;  // to see that kDone writes it
  std::size_t consumed = 12345;
  std::string error;
  const ProxyParse got = parse_proxy_header(c.input, &header, &consumed, &error);
  ASSERT_EQ(got, c.want) << c.name << ": " << error;
  if (got == ProxyParse::kDone) {
    EXPECT_EQ(consumed, c.consumed) << c.name;
    EXPECT_EQ(header.source ? conf::to_string(*header.source) : "", c.source) << c.name;
    EXPECT_EQ(header.source_port, c.source_port) << c.name;
    EXPECT_EQ(header.local, c.local) << c.name;
  } else {
    EXPECT_EQ(consumed, 12345u) << c.name;  // untouched
  }
  if (got == ProxyParse::kInvalid) {
    EXPECT_NE(error.find(c.error), std::string::npos) << c.name << ": " << error;
  }
}

constexpr ProxyParse kDone = ProxyParse::kDone;
constexpr ProxyParse kMore = ProxyParse::kNeedMore;
constexpr ProxyParse kBad = ProxyParse::kInvalid;

const std::string kV1Tcp4 = "PROXY TCP4 192.0.2.7 198.51.100.1 5678 443\r\n";
const std::string kV1Tcp6 = "PROXY TCP6 2001:db8::7 2001:db8::1 5678 443\r\n";
// The longest v1 line the spec allows: 107 bytes.
const std::string kV1Longest =
    "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
    "65535 65535\r\n";

INSTANTIATE_TEST_SUITE_P(
    V1, ProxyParseTest,
    testing::Values(
        Case{"tcp4", kV1Tcp4, kDone, kV1Tcp4.size(), "192.0.2.7", 5678},
        Case{"tcp4 then request", kV1Tcp4 + kRequest, kDone, kV1Tcp4.size(), "192.0.2.7", 5678},
        Case{"tcp6", kV1Tcp6, kDone, kV1Tcp6.size(), "2001:db8::7", 5678},
        Case{"tcp6 mapped", "PROXY TCP6 ::ffff:192.0.2.7 ::1 0 65535\r\n", kDone, 41, "192.0.2.7",
             0},
        Case{"unknown", "PROXY UNKNOWN\r\n", kDone, 15},
        Case{"unknown with addresses", "PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\nGET", kDone, 35},
        Case{"unknown with anything", "PROXY UNKNOWN whatever \x01\x7f\r\n", kDone, 27},
        Case{"longest line", kV1Longest, kDone, 107}, Case{"empty", "", kMore},
        Case{"prefix", "PROXY TCP4 192.0.2.7", kMore},
        Case{"no LF yet", "PROXY TCP4 192.0.2.7 198.51.100.1 5678 443\r", kMore},
        Case{"plain http", "GET / HTTP/1.1\r\n", kBad, 0, "", 0, false, "not a PROXY"},
        Case{"early refusal", "PUT", kBad, 0, "", 0, false, "not a PROXY"},
        Case{"lower case", "proxy TCP4 192.0.2.7 198.51.100.1 5678 443\r\n", kBad},
        Case{"108 bytes", kV1Longest.substr(0, 105) + "5\r\n", kBad, 0, "", 0, false, "107"},
        Case{"no CRLF in 107 bytes", "PROXY UNKNOWN " + std::string(200, 'x'), kBad, 0, "", 0,
             false, "107"},
        Case{"bare LF", "PROXY TCP4 192.0.2.7 198.51.100.1 5678 443\n", kBad, 0, "", 0, false,
             "CRLF"},
        Case{"CR in the middle", "PROXY TCP4 192.0.2.7\r198.51.100.1 5678 443\r\n", kBad, 0, "", 0,
             false, "CR"},
        Case{"CRCRLF", "PROXY UNKNOWN\r\r\n", kBad}, Case{"no protocol", "PROXY \r\n", kBad},
        Case{"bad protocol", "PROXY UDP4 192.0.2.7 198.51.100.1 5678 443\r\n", kBad, 0, "", 0,
             false, "protocol"},
        Case{"tcp4 alone", "PROXY TCP4\r\n", kBad}, Case{"unknownx", "PROXY UNKNOWNX\r\n", kBad},
        Case{"two spaces", "PROXY TCP4 192.0.2.7  198.51.100.1 5678 443\r\n", kBad},
        Case{"trailing space", "PROXY TCP4 192.0.2.7 198.51.100.1 5678 443 \r\n", kBad},
        Case{"missing port", "PROXY TCP4 192.0.2.7 198.51.100.1 5678\r\n", kBad},
        Case{"extra field", "PROXY TCP4 192.0.2.7 198.51.100.1 5678 443 1\r\n", kBad},
        Case{"tab separator", "PROXY TCP4 192.0.2.7\t198.51.100.1 5678 443\r\n", kBad},
        Case{"v6 address in TCP4", "PROXY TCP4 ::1 ::1 5678 443\r\n", kBad, 0, "", 0, false,
             "TCP4 address"},
        Case{"mapped address in TCP4", "PROXY TCP4 ::ffff:1.2.3.4 1.2.3.4 1 2\r\n", kBad},
        Case{"v4 address in TCP6", "PROXY TCP6 192.0.2.7 198.51.100.1 5678 443\r\n", kBad, 0, "", 0,
             false, "TCP6 address"},
        Case{"bracketed TCP6", "PROXY TCP6 [::1] [::1] 1 2\r\n", kBad},
        Case{"bad octet", "PROXY TCP4 192.0.2.256 198.51.100.1 5678 443\r\n", kBad},
        Case{"leading zero octet", "PROXY TCP4 192.0.2.07 198.51.100.1 5678 443\r\n", kBad},
        Case{"host name", "PROXY TCP4 localhost 198.51.100.1 5678 443\r\n", kBad},
        Case{"bad destination", "PROXY TCP4 192.0.2.7 x 5678 443\r\n", kBad},
        Case{"port too big", "PROXY TCP4 192.0.2.7 198.51.100.1 65536 443\r\n", kBad, 0, "", 0,
             false, "port"},
        Case{"port leading zero", "PROXY TCP4 192.0.2.7 198.51.100.1 05678 443\r\n", kBad},
        Case{"port sign", "PROXY TCP4 192.0.2.7 198.51.100.1 +5678 443\r\n", kBad},
        Case{"port empty", "PROXY TCP4 192.0.2.7 198.51.100.1  443\r\n", kBad},
        Case{"dport junk", "PROXY TCP4 192.0.2.7 198.51.100.1 5678 44x\r\n", kBad},
        Case{"nul in address", std::string("PROXY TCP4 192.0.2.7\0 198.51.100.1 1 2\r\n", 40),
             kBad}));

INSTANTIATE_TEST_SUITE_P(
    V2, ProxyParseTest,
    testing::Values(
        Case{"inet", v2(0x21, 0x11, kInetBody), kDone, 28, "192.0.2.7", 5678},
        Case{"inet then request", v2(0x21, 0x11, kInetBody) + kRequest, kDone, 28, "192.0.2.7",
             5678},
        Case{"inet dgram", v2(0x21, 0x12, kInetBody), kDone, 28, "192.0.2.7", 5678},
        Case{"inet6", v2(0x21, 0x21, kInet6Body), kDone, 52, "2001:db8::7", 5678},
        Case{"inet6 mapped", v2(0x21, 0x21, kMappedBody), kDone, 52, "192.0.2.7", 5678},
        Case{"unix", v2(0x21, 0x31, kUnixBody), kDone, 232},
        Case{"unspec", v2(0x21, 0x00, ""), kDone, 16},
        Case{"unspec with bytes", v2(0x21, 0x00, "xyz"), kDone, 19},
        Case{"local", v2(0x20, 0x00, ""), kDone, 16, "", 0, true},
        Case{"local ignores family and bytes", v2(0x20, 0xff, kInetBody), kDone, 28, "", 0, true},
        Case{"inet with TLVs", v2(0x21, 0x11, kInetBody + kTlvs) + kRequest, kDone,
             28 + kTlvs.size(), "192.0.2.7", 5678},
        Case{"inet6 with TLVs", v2(0x21, 0x21, kInet6Body + kTlvs), kDone, 52 + kTlvs.size(),
             "2001:db8::7", 5678},
        Case{"at the bound",
             v2(0x21, 0x11, kInetBody + bytes({0x04, 0x01, 0xf9}) + std::string(0x1f9, '\0')),
             kDone, 536, "192.0.2.7", 5678},
        Case{"signature only", kSignature, kMore},
        Case{"fixed part only", v2(0x21, 0x11, kInetBody).substr(0, 16), kMore},
        Case{"truncated addresses", v2(0x21, 0x11, kInetBody).substr(0, 27), kMore},
        Case{"over the bound", v2(0x21, 0x11, kInetBody + std::string(509, '\0')).substr(0, 16),
             kBad, 0, "", 0, false, "536"},
        Case{"length 0xffff", kSignature + bytes({0x21, 0x11, 0xff, 0xff}), kBad, 0, "", 0, false,
             "536"},
        Case{"wrong signature", "\r\n\r\n\0\r\nQUIT\r"s + bytes({0x21, 0x11, 0, 12}) + kInetBody,
             kBad, 0, "", 0, false, "not a PROXY"},
        Case{"wrong signature early", "\r\n\r\nX", kBad},
        Case{"version 1", v2(0x11, 0x11, kInetBody), kBad, 0, "", 0, false, "version"},
        Case{"version 3", v2(0x31, 0x11, kInetBody).substr(0, 13), kBad, 0, "", 0, false,
             "version"},
        Case{"command 2", v2(0x22, 0x11, kInetBody), kBad, 0, "", 0, false, "command"},
        Case{"family 4", v2(0x21, 0x41, kInetBody), kBad, 0, "", 0, false, "family"},
        Case{"inet unspec transport", v2(0x21, 0x10, kInetBody), kBad, 0, "", 0, false, "family"},
        Case{"unspec stream", v2(0x21, 0x01, ""), kBad},
        Case{"transport 3", v2(0x21, 0x13, kInetBody).substr(0, 14), kBad},
        Case{"length shorter than inet", v2(0x21, 0x11, kInetBody.substr(0, 11)), kBad, 0, "", 0,
             false, "shorter"},
        Case{"length shorter than inet6", v2(0x21, 0x21, kInetBody), kBad},
        Case{"length shorter than unix", v2(0x21, 0x31, kInet6Body), kBad},
        Case{"TLV header cut", v2(0x21, 0x11, kInetBody + bytes({0x01, 0})), kBad, 0, "", 0, false,
             "TLV"},
        Case{"TLV value overruns", v2(0x21, 0x11, kInetBody + bytes({0x01, 0, 3}) + "h2"), kBad, 0,
             "", 0, false, "TLV"}));

// Every split point of a valid header answers kNeedMore, the whole kDone with exactly its bytes,
// whatever follows.
TEST(ProxyParse, EverySplitNeedsMoreThenDone) {
  const std::vector<std::string> headers = {
      kV1Tcp4,
      kV1Tcp6,
      "PROXY UNKNOWN\r\n",
      kV1Longest,
      v2(0x21, 0x11, kInetBody),
      v2(0x21, 0x21, kInet6Body + kTlvs),
      v2(0x21, 0x31, kUnixBody),
      v2(0x20, 0x00, ""),
  };
  for (const std::string& h : headers) {
    for (std::size_t k = 0; k < h.size(); ++k) {
      ProxyHeader header;
      std::size_t consumed = 0;
      EXPECT_EQ(parse_proxy_header(std::string_view(h).substr(0, k), &header, &consumed, nullptr),
                ProxyParse::kNeedMore)
          << k << " bytes of " << testing::PrintToString(h);
    }
    for (const std::string& rest : {std::string(), kRequest, std::string(600, 'x')}) {
      ProxyHeader header;
      std::size_t consumed = 0;
      EXPECT_EQ(parse_proxy_header(h + rest, &header, &consumed, nullptr), ProxyParse::kDone)
          << testing::PrintToString(h);
      EXPECT_EQ(consumed, h.size()) << testing::PrintToString(h);
    }
  }
}

TEST(ProxyParse, DestinationIsRead) {
  ProxyHeader header;
  std::size_t consumed = 0;
  ASSERT_EQ(parse_proxy_header(kV1Tcp4, &header, &consumed, nullptr), ProxyParse::kDone);
  EXPECT_EQ(header.version, 1);
  ASSERT_TRUE(header.destination.has_value());
  EXPECT_EQ(conf::to_string(*header.destination), "198.51.100.1");
  EXPECT_EQ(header.destination_port, 443);
  ASSERT_EQ(parse_proxy_header(v2(0x21, 0x21, kInet6Body), &header, &consumed, nullptr),
            ProxyParse::kDone);
  EXPECT_EQ(header.version, 2);
  ASSERT_TRUE(header.destination.has_value());
  EXPECT_EQ(conf::to_string(*header.destination), "2001:db8::1");
  EXPECT_EQ(header.destination_port, 443);
}

}  // namespace
}  // namespace proxy
