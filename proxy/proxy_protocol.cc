// PROXY protocol v1 and v2 (haproxy.org proxy-protocol.txt). The first byte picks the version
// ('P' or the CR of the v2 signature); every check that can fail early does, so a plain HTTP
// client is refused at its first byte instead of after a timeout.
#include "proxy/proxy_protocol.h"

#include <algorithm>
#include <array>

#include "conf/check.h"

namespace proxy {
namespace {

constexpr std::string_view kV1Prefix = "PROXY ";
constexpr char kV2SignatureBytes[] = {'\r', '\n', '\r', '\n', '\0', '\r',
                                      '\n', 'Q',  'U',  'I',  'T',  '\n'};
constexpr std::string_view kV2Signature(kV2SignatureBytes, sizeof kV2SignatureBytes);
constexpr std::size_t kV2Fixed = 16;  // signature, ver_cmd, fam, len

// v2 ver_cmd and fam bytes.
constexpr unsigned kV2Version = 0x2;
constexpr unsigned kCmdLocal = 0x0;
constexpr unsigned kCmdProxy = 0x1;
constexpr unsigned kFamUnspec = 0x0;
constexpr unsigned kFamInet = 0x1;
constexpr unsigned kFamInet6 = 0x2;
constexpr unsigned kFamUnix = 0x3;

ProxyParse fail(std::string* error, const char* what) {
  if (error != nullptr) {
    *error = what;
  }
  return ProxyParse::kInvalid;
}

bool matches_prefix(std::string_view buffered, std::string_view expected) {
  const std::size_t n = std::min(buffered.size(), expected.size());
  return buffered.substr(0, n) == expected.substr(0, n);
}

unsigned byte_at(std::string_view s, std::size_t i) { return static_cast<unsigned char>(s[i]); }

// ---- v1 ----

// Decimal 0..65535 without sign or leading zero, as every sender formats it.
bool parse_v1_port(std::string_view s, std::uint16_t* port) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) {
    return false;
  }
  unsigned value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) {
    return false;
  }
  *port = static_cast<std::uint16_t>(value);
  return true;
}

// TCP4 takes a dotted quad only, TCP6 an unbracketed IPv6 address only.
std::optional<conf::IpAddress> parse_v1_address(std::string_view text, bool v6) {
  const bool looks_v6 = text.find(':') != std::string_view::npos;
  if (looks_v6 != v6 || text.starts_with('[')) {
    return std::nullopt;
  }
  return conf::parse_ip(text);
}

ProxyParse parse_v1(std::string_view buffered, ProxyHeader* out, std::size_t* consumed,
                    std::string* error) {
  if (!matches_prefix(buffered, kV1Prefix)) {
    return fail(error, "not a PROXY protocol header");
  }
  const std::size_t n = std::min(buffered.size(), kMaxProxyV1Header);
  std::size_t lf = std::string_view::npos;
  for (std::size_t i = 0; i < n; ++i) {
    if (buffered[i] == '\n') {
      lf = i;
      break;
    }
    if (buffered[i] == '\r' && i + 1 < n && buffered[i + 1] != '\n') {
      return fail(error, "PROXY v1: CR not followed by LF");
    }
  }
  if (lf == std::string_view::npos) {
    if (buffered.size() >= kMaxProxyV1Header) {
      return fail(error, "PROXY v1: no CRLF within 107 bytes");
    }
    return ProxyParse::kNeedMore;
  }
  if (buffered[lf - 1] != '\r') {  // lf >= kV1Prefix.size(): the prefix matched
    return fail(error, "PROXY v1: line not ended by CRLF");
  }
  std::string_view line = buffered.substr(kV1Prefix.size(), lf - 1 - kV1Prefix.size());
  const std::size_t space = line.find(' ');
  const std::string_view protocol = line.substr(0, space);
  ProxyHeader header;
  header.version = 1;
  if (protocol == "UNKNOWN") {
    // The spec: whatever follows UNKNOWN up to the CRLF is ignored; use the socket's addresses.
    *out = header;
    *consumed = lf + 1;
    return ProxyParse::kDone;
  }
  if ((protocol != "TCP4" && protocol != "TCP6") || space == std::string_view::npos) {
    return fail(error, "PROXY v1: protocol is not TCP4, TCP6 or UNKNOWN");
  }
  const bool v6 = protocol == "TCP6";
  // Exactly four fields, each separated by one space.
  std::array<std::string_view, 4> fields;
  line.remove_prefix(space + 1);
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const std::size_t end = line.find(' ');
    if ((end == std::string_view::npos) != (i + 1 == fields.size())) {
      return fail(error, "PROXY v1: expected source, destination, source port, destination port");
    }
    fields[i] = line.substr(0, end);
    line.remove_prefix(end == std::string_view::npos ? line.size() : end + 1);
  }
  header.source = parse_v1_address(fields[0], v6);
  header.destination = parse_v1_address(fields[1], v6);
  if (!header.source || !header.destination) {
    return fail(error, v6 ? "PROXY v1: bad TCP6 address" : "PROXY v1: bad TCP4 address");
  }
  if (!parse_v1_port(fields[2], &header.source_port) ||
      !parse_v1_port(fields[3], &header.destination_port)) {
    return fail(error, "PROXY v1: bad port");
  }
  *out = header;
  *consumed = lf + 1;
  return ProxyParse::kDone;
}

// ---- v2 ----

template <std::size_t N>
std::array<std::uint8_t, N> bytes_at(std::string_view s, std::size_t at) {
  std::array<std::uint8_t, N> out{};
  for (std::size_t i = 0; i < N; ++i) {
    out[i] = static_cast<std::uint8_t>(byte_at(s, at + i));
  }
  return out;
}

std::uint16_t u16_at(std::string_view s, std::size_t at) {
  return static_cast<std::uint16_t>((byte_at(s, at) << 8) | byte_at(s, at + 1));
}

// The size of the address block of a valid `fam` byte (family << 4 | transport), or nullopt for
// one the spec says to reject: only UNSPEC/UNSPEC and {INET, INET6, UNIX} x {STREAM, DGRAM}.
std::optional<std::size_t> v2_address_size(unsigned fam) {
  const unsigned family = fam >> 4;
  const unsigned transport = fam & 0xf;
  if (family == kFamUnspec && transport == 0) {
    return 0;
  }
  if (transport != 1 && transport != 2) {
    return std::nullopt;
  }
  switch (family) {
    case kFamInet:
      return 4 + 4 + 2 + 2;
    case kFamInet6:
      return 16 + 16 + 2 + 2;
    case kFamUnix:
      return 108 + 108;
    default:
      return std::nullopt;
  }
}

ProxyParse parse_v2(std::string_view buffered, ProxyHeader* out, std::size_t* consumed,
                    std::string* error) {
  if (!matches_prefix(buffered, kV2Signature)) {
    return fail(error, "not a PROXY protocol header");
  }
  const std::size_t n = buffered.size();
  unsigned command = kCmdLocal;
  if (n > 12) {
    if ((byte_at(buffered, 12) >> 4) != kV2Version) {
      return fail(error, "PROXY v2: unsupported version");
    }
    command = byte_at(buffered, 12) & 0xf;
    if (command != kCmdLocal && command != kCmdProxy) {
      return fail(error, "PROXY v2: unknown command");
    }
  }
  // LOCAL: the spec says to ignore the family, so it is only checked for PROXY.
  std::optional<std::size_t> address_size = 0;
  if (n > 13 && command == kCmdProxy) {
    address_size = v2_address_size(byte_at(buffered, 13));
    if (!address_size) {
      return fail(error, "PROXY v2: unknown address family or transport");
    }
  }
  if (n < kV2Fixed) {
    return ProxyParse::kNeedMore;
  }
  const std::size_t total = kV2Fixed + u16_at(buffered, 14);
  if (total > kMaxProxyV2Header) {
    return fail(error, "PROXY v2: header longer than 536 bytes");
  }
  if (total < kV2Fixed + *address_size) {
    return fail(error, "PROXY v2: length shorter than the addresses");
  }
  if (n < total) {
    return ProxyParse::kNeedMore;
  }
  ProxyHeader header;
  header.version = 2;
  header.local = command == kCmdLocal;
  const unsigned family = byte_at(buffered, 13) >> 4;
  if (!header.local && family != kFamUnspec) {
    // TLVs (type, 16-bit length, value) fill the rest exactly; their contents are not used.
    std::size_t at = kV2Fixed + *address_size;
    while (at < total) {
      if (total - at < 3 || total - at - 3 < u16_at(buffered, at + 1)) {
        return fail(error, "PROXY v2: TLV overruns the header");
      }
      at += 3 + u16_at(buffered, at + 1);
    }
  }
  if (!header.local && family == kFamInet) {
    header.source = conf::IpAddress::v4(bytes_at<4>(buffered, 16));
    header.destination = conf::IpAddress::v4(bytes_at<4>(buffered, 20));
    header.source_port = u16_at(buffered, 24);
    header.destination_port = u16_at(buffered, 26);
  } else if (!header.local && family == kFamInet6) {
    header.source = conf::IpAddress::v6(bytes_at<16>(buffered, 16));
    header.destination = conf::IpAddress::v6(bytes_at<16>(buffered, 32));
    header.source_port = u16_at(buffered, 48);
    header.destination_port = u16_at(buffered, 50);
  }
  *out = header;
  *consumed = total;
  return ProxyParse::kDone;
}

}  // namespace

ProxyParse parse_proxy_header(std::string_view buffered, ProxyHeader* out, std::size_t* consumed,
                              std::string* error) {
  TUSK_CHECK(out != nullptr && consumed != nullptr);
  if (buffered.empty()) {
    return ProxyParse::kNeedMore;
  }
  if (buffered.front() == kV1Prefix.front()) {
    return parse_v1(buffered, out, consumed, error);
  }
  if (buffered.front() == kV2Signature.front()) {
    return parse_v2(buffered, out, consumed, error);
  }
  return fail(error, "not a PROXY protocol header");
}

}  // namespace proxy
