// IP address and CIDR parsing. inet_pton does the address grammar; this file bounds and filters
// its input first (inet_pton reads a NUL-terminated string, and would stop at an embedded NUL),
// and folds IPv4-mapped addresses into IPv4.
#include "conf/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "conf/check.h"

namespace conf {
namespace {

constexpr std::size_t kMaxV4Text = 15;  // 255.255.255.255
constexpr std::size_t kMaxV6Text = 45;  // ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255
constexpr std::size_t kMaxQuoted = 64;
constexpr std::array<std::uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

// An address as written, before IPv4-mapped addresses are folded: a CIDR's prefix counts in the
// family it was written in.
struct RawAddress {
  bool v6 = false;
  std::array<std::uint8_t, 16> bytes{};
  int bits() const { return v6 ? 128 : 32; }
};

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

std::optional<RawAddress> parse_raw(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    text = text.substr(1, text.size() - 2);
    if (text.find(':') == std::string_view::npos) {
      return std::nullopt;  // brackets belong to IPv6 literals only
    }
  }
  RawAddress raw;
  raw.v6 = text.find(':') != std::string_view::npos;
  if (text.empty() || text.size() > (raw.v6 ? kMaxV6Text : kMaxV4Text)) {
    return std::nullopt;
  }
  // Only the characters of the grammar: no NUL, '%' (zone id), whitespace or sign reaches libc.
  for (char c : text) {
    if (!(c == '.' || (raw.v6 ? is_hex(c) || c == ':' : is_digit(c)))) {
      return std::nullopt;
    }
  }
  char buf[kMaxV6Text + 1];
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  if (inet_pton(raw.v6 ? AF_INET6 : AF_INET, buf, raw.bytes.data()) != 1) {
    return std::nullopt;
  }
  return raw;
}

IpAddress fold(const RawAddress& raw) {
  if (raw.v6) {
    return IpAddress::v6(raw.bytes);
  }
  return IpAddress::v4({raw.bytes[0], raw.bytes[1], raw.bytes[2], raw.bytes[3]});
}

bool is_mapped(const std::array<std::uint8_t, 16>& bytes) {
  return std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), bytes.begin());
}

std::string format(bool v6, const std::uint8_t* bytes) {
  if (!v6) {
    return std::to_string(bytes[0]) + "." + std::to_string(bytes[1]) + "." +
           std::to_string(bytes[2]) + "." + std::to_string(bytes[3]);
  }
  char buf[INET6_ADDRSTRLEN];
  const char* text = inet_ntop(AF_INET6, bytes, buf, sizeof buf);
  TUSK_CHECK(text != nullptr);  // only fails for a short buffer or a bad family
  return text;
}

// Whether the first `prefix` bits of `a` and `b` (each `bits()/8` bytes) agree.
bool same_prefix(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b, int prefix) {
  const auto whole = static_cast<std::size_t>(prefix / 8);
  if (!std::equal(a.begin(), a.begin() + whole, b.begin())) {
    return false;
  }
  const int rest = prefix % 8;
  if (rest == 0) {
    return true;
  }
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

// Clears every bit after the first `prefix`.
void clear_host_bits(std::span<std::uint8_t> bytes, int prefix) {
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const int kept = std::clamp(prefix - static_cast<int>(i) * 8, 0, 8);
    bytes[i] &= static_cast<std::uint8_t>(0xff << (8 - kept));
  }
}

// The operator's text in an error message: bounded, and control bytes do not reach a terminal.
std::string quoted(std::string_view text) {
  std::string out = "'";
  for (char c : text.substr(0, kMaxQuoted)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u >= 0x7f) ? '?' : c;
  }
  return out + (text.size() > kMaxQuoted ? "...'" : "'");
}

}  // namespace

IpAddress IpAddress::v4(const std::array<std::uint8_t, 4>& octets) {
  IpAddress a;
  std::copy(octets.begin(), octets.end(), a.bytes_.begin());
  return a;
}

IpAddress IpAddress::v6(const std::array<std::uint8_t, 16>& bytes) {
  if (is_mapped(bytes)) {
    return v4({bytes[12], bytes[13], bytes[14], bytes[15]});
  }
  IpAddress a;
  a.family_ = Family::kV6;
  a.bytes_ = bytes;
  return a;
}

std::optional<IpAddress> parse_ip(std::string_view text) {
  auto raw = parse_raw(text);
  if (!raw) {
    return std::nullopt;
  }
  return fold(*raw);
}

std::optional<IpAddress> from_sockaddr(const sockaddr* addr, std::size_t len) {
  if (addr == nullptr || len < sizeof(sa_family_t)) {
    return std::nullopt;
  }
  if (addr->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
    sockaddr_in in{};
    std::memcpy(&in, addr, sizeof in);  // no alignment assumption about the caller's buffer
    std::array<std::uint8_t, 4> octets{};
    std::memcpy(octets.data(), &in.sin_addr, octets.size());
    return IpAddress::v4(octets);
  }
  if (addr->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
    sockaddr_in6 in6{};
    std::memcpy(&in6, addr, sizeof in6);
    std::array<std::uint8_t, 16> bytes{};
    std::memcpy(bytes.data(), &in6.sin6_addr, bytes.size());
    return IpAddress::v6(bytes);
  }
  return std::nullopt;
}

std::string to_string(const IpAddress& addr) { return format(!addr.is_v4(), addr.bytes().data()); }

bool Cidr::contains(const IpAddress& addr) const {
  TUSK_CHECK(prefix >= 0 && prefix <= net.bits());
  return addr.family() == net.family() && same_prefix(addr.bytes(), net.bytes(), prefix);
}

Result<Cidr, std::string> parse_cidr(std::string_view text) {
  if (text.empty()) {
    return unexpected(std::string("empty address range: expected an address or address/prefix"));
  }
  const std::size_t slash = text.rfind('/');
  const std::string_view address = text.substr(0, slash);
  auto raw = parse_raw(address);
  if (!raw) {
    return unexpected(quoted(text) + " is not an address range: " + quoted(address) +
                      " is not an IPv4 (a.b.c.d) or IPv6 address");
  }
  int prefix = raw->bits();
  if (slash != std::string_view::npos) {
    const std::string_view digits = text.substr(slash + 1);
    const bool numeric = !digits.empty() && digits.size() <= 3 &&
                         std::all_of(digits.begin(), digits.end(), is_digit);
    prefix = 0;
    for (char c : numeric ? digits : std::string_view()) {
      prefix = prefix * 10 + (c - '0');
    }
    if (!numeric || prefix > raw->bits()) {
      return unexpected(quoted(text) + ": the prefix length after '/' must be 0.." +
                        std::to_string(raw->bits()) + (raw->v6 ? " for IPv6" : " for IPv4"));
    }
  }
  std::array<std::uint8_t, 16> net = raw->bytes;
  const std::span<std::uint8_t> used(net.data(), raw->v6 ? 16 : 4);
  clear_host_bits(used, prefix);
  if (net != raw->bytes) {
    const std::string range = format(raw->v6, net.data()) + "/" + std::to_string(prefix);
    const std::string one = format(raw->v6, raw->bytes.data()) + "/" + std::to_string(raw->bits());
    return unexpected(quoted(text) + " has bits set after the prefix: write " + range +
                      " for the range, or " + one + " for the one address");
  }
  if (raw->v6 && prefix >= 96 && is_mapped(raw->bytes)) {
    return Cidr{fold(*raw), prefix - 96};  // the IPv4 range of a dual-stack socket's view
  }
  return Cidr{fold(*raw), prefix};
}

std::string to_string(const Cidr& cidr) {
  return to_string(cidr.net) + "/" + std::to_string(cidr.prefix);
}

bool CidrList::contains(const IpAddress& addr) const {
  return std::any_of(ranges_.begin(), ranges_.end(),
                     [&addr](const Cidr& range) { return range.contains(addr); });
}

}  // namespace conf
