// IP addresses and CIDR ranges, for per-route `allow:` lists and `server.trusted_proxies:`. Pure:
// text or a sockaddr in, values out; callable from any thread.
// Tricky: a dual-stack socket reports an IPv4 client as ::ffff:a.b.c.d, so an IPv4-mapped IPv6
// address *is* its IPv4 address here: IpAddress folds it when built (parsed, read from a socket
// or constructed), and ::ffff:10.0.0.0/104 parses as 10.0.0.0/8. Matching never sees the mapped
// form. As in nginx, IPv6 ranges do not match IPv4 clients (::/0 is "every IPv6 client").
#pragma once

#include <array>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "conf/result.h"

struct sockaddr;

namespace conf {

// An IPv4 or IPv6 address, never an IPv4-mapped IPv6 one (those are folded into IPv4). The
// default value is 0.0.0.0.
class IpAddress {
 public:
  enum class Family : std::uint8_t { kV4, kV6 };

  IpAddress() = default;
  static IpAddress v4(const std::array<std::uint8_t, 4>& octets);
  // ::ffff:a.b.c.d gives the IPv4 address a.b.c.d.
  static IpAddress v6(const std::array<std::uint8_t, 16>& bytes);

  Family family() const { return family_; }
  bool is_v4() const { return family_ == Family::kV4; }
  // Network byte order: 4 bytes for IPv4, 16 for IPv6. Lives as long as this address.
  std::span<const std::uint8_t> bytes() const {
    return std::span<const std::uint8_t>(bytes_.data(), is_v4() ? 4 : 16);
  }
  int bits() const { return is_v4() ? 32 : 128; }

  // IPv4 orders before IPv6; within a family, numerically.
  auto operator<=>(const IpAddress&) const = default;
  bool operator==(const IpAddress&) const = default;

 private:
  Family family_ = Family::kV4;
  std::array<std::uint8_t, 16> bytes_{};  // IPv4: the first 4, the rest stay zero
};

// "192.0.2.7", "2001:db8::1", "::", "::ffff:192.0.2.7" (gives 192.0.2.7), "[2001:db8::1]"
// (brackets only around IPv6). Every RFC 4291 text form of IPv6, including embedded IPv4.
// IPv4 is strictly four decimal octets: no leading zeros (010 would be octal to inet_aton), no
// short forms. nullopt for anything else: empty, whitespace, zone ids (fe80::1%eth0), ports,
// text longer than any address.
std::optional<IpAddress> parse_ip(std::string_view text);

// The address of an AF_INET or AF_INET6 socket address (the peer of an accepted connection);
// nullopt for a null pointer, another family (AF_UNIX) or `len` too short for the family.
std::optional<IpAddress> from_sockaddr(const sockaddr* addr, std::size_t len);

// "192.0.2.7" (IPv4 also when it was given mapped); IPv6 in RFC 5952 form ("2001:db8::1").
std::string to_string(const IpAddress& addr);

// A range: the addresses whose first `prefix` bits are those of `net`. `prefix` counts in the
// family of `net` (0..32 or 0..128); `net` has no bit set after the prefix.
struct Cidr {
  IpAddress net;
  int prefix = 0;

  // False for an address of the other family. A prefix out of range is a bug (checked).
  bool contains(const IpAddress& addr) const;
  bool operator==(const Cidr&) const = default;
};

// "10.0.0.0/8", "192.168.1.7" (= /32), "::1" (= /128), "2001:db8::/32", "[2001:db8::]/32",
// "::ffff:10.0.0.0/104" (= 10.0.0.0/8). The error text names the input and what is wrong: empty,
// not an address, prefix not a decimal 0..32 (IPv4) or 0..128 (IPv6), or host bits set.
// "10.0.0.1/8" is refused with a message suggesting 10.0.0.0/8 (or 10.0.0.1/32): nginx silently
// widens such an entry to its network, which turns a typo into an access rule nobody wrote.
Result<Cidr, std::string> parse_cidr(std::string_view text);

// "10.0.0.0/8", "2001:db8::/32": what parse_cidr reads back to the same value.
std::string to_string(const Cidr& cidr);

// An ordered list of ranges, e.g. one `allow:` list. Matching is linear: the lists are short.
class CidrList {
 public:
  CidrList() = default;
  explicit CidrList(std::vector<Cidr> ranges) : ranges_(std::move(ranges)) {}

  void add(const Cidr& range) { ranges_.push_back(range); }
  // Whether any range holds `addr`. An empty list holds nothing. A client on a dual-stack socket
  // (::ffff:1.2.3.4) was folded to 1.2.3.4 when its IpAddress was made, so IPv4 ranges match it.
  bool contains(const IpAddress& addr) const;

  bool empty() const { return ranges_.empty(); }
  std::size_t size() const { return ranges_.size(); }
  const std::vector<Cidr>& ranges() const { return ranges_; }
  bool operator==(const CidrList&) const = default;

 private:
  std::vector<Cidr> ranges_;
};

}  // namespace conf
