// Fuzz target: address and range parsing (conf/cidr.h) and the X-Forwarded-For walk
// (proxy/client_address.h). The first line is a range, the other lines are X-Forwarded-For
// field lines. Ranges read back to themselves, and the walk answers the peer or an address that
// is in the field: never something it made up.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "conf/check.h"
#include "conf/cidr.h"
#include "proxy/client_address.h"

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

bool in_field(const conf::IpAddress& addr, const std::vector<std::string_view>& lines) {
  for (std::string_view line : lines) {
    std::size_t start = 0;
    while (start <= line.size()) {
      std::size_t end = line.find(',', start);
      end = end == std::string_view::npos ? line.size() : end;
      auto entry = proxy::parse_forwarded_entry(trim(line.substr(start, end - start)));
      if (entry && *entry == addr) {
        return true;
      }
      start = end + 1;
    }
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::size_t cut = in.find('\n');
  const std::string_view first = in.substr(0, cut);

  auto ip = conf::parse_ip(first);
  if (ip) {
    TUSK_CHECK(conf::parse_ip(conf::to_string(*ip)) == ip);
  }
  conf::CidrList trusted({*conf::parse_cidr("10.0.0.0/8"), *conf::parse_cidr("2001:db8::/32")});
  auto range = conf::parse_cidr(first);
  if (range) {
    TUSK_CHECK(range->prefix >= 0 && range->prefix <= range->net.bits());
    TUSK_CHECK(range->contains(range->net));
    auto again = conf::parse_cidr(conf::to_string(*range));
    TUSK_CHECK(again.has_value() && *again == *range);
    if (ip) {
      TUSK_CHECK(range->prefix == ip->bits() && range->net == *ip);
    }
    trusted.add(*range);
  } else {
    TUSK_CHECK(!range.error().empty() && !ip);
  }

  std::vector<std::string_view> lines;
  for (std::string_view rest = cut == std::string_view::npos ? "" : in.substr(cut + 1);;) {
    const std::size_t nl = rest.find('\n');
    lines.push_back(rest.substr(0, nl));
    if (nl == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(nl + 1);
  }
  const conf::IpAddress peers[] = {*conf::parse_ip("10.0.0.1"), *conf::parse_ip("2001:db8::1"),
                                   *conf::parse_ip("198.51.100.1")};
  for (const conf::IpAddress& peer : peers) {
    const conf::IpAddress client = proxy::client_from_forwarded_for(peer, lines, trusted);
    if (!trusted.contains(peer)) {
      TUSK_CHECK(client == peer);
    } else {
      TUSK_CHECK(client == peer || in_field(client, lines));
    }
  }
  return 0;
}
