// The PROXY protocol header (HAProxy's send-proxy / send-proxy-v2, proxy-protocol.txt v1 and
// v2) that a trusted load balancer writes before the first byte of a connection, carrying the
// client's address. Pure and incremental: the caller buffers what it has read and asks again.
// Tricky: the header must be parsed without reading past it (the HTTP request follows in the same
// segment), and a listener that expects it must refuse anything else, since otherwise any client
// could write its own header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "conf/cidr.h"

namespace proxy {

// v1: one text line, CRLF included ("PROXY UNKNOWN" + two longest IPv6 addresses and ports).
inline constexpr std::size_t kMaxProxyV1Header = 107;
// v2: 16 fixed bytes, then addresses (at most 216, AF_UNIX) and TLVs. Longer headers are refused:
// 536 bytes (the minimum TCP MSS, so a header that arrives in one segment) leaves room for the
// usual TLVs (ALPN, authority, unique id, SSL) while bounding what a client makes us buffer.
inline constexpr std::size_t kMaxProxyV2Header = 536;

struct ProxyHeader {
  int version = 0;  // 1 or 2
  // v2 LOCAL: the balancer's own connection (a health check); use the socket's addresses.
  bool local = false;
  // The client, when the header names one over TCP/UDP: IPv4 or IPv6 (a mapped IPv6 address is
  // folded to IPv4). nullopt for LOCAL, v1 UNKNOWN and v2 AF_UNSPEC / AF_UNIX: then use the
  // socket's peer address, as the spec asks.
  std::optional<conf::IpAddress> source;
  std::uint16_t source_port = 0;  // 0 when !source
  std::optional<conf::IpAddress> destination;
  std::uint16_t destination_port = 0;
};

enum class ProxyParse { kNeedMore, kDone, kInvalid };

// Parses the header at the start of `buffered`, the bytes read from the connection so far.
//   - kNeedMore: no whole header yet, and nothing seen that rules one out; read more and call
//     again with all the bytes (more bytes never change a kDone or kInvalid answer). Never for
//     kMaxProxyV1Header (v1) or kMaxProxyV2Header (v2) bytes or more.
//   - kDone: `*out` is the header and `*consumed` its length; the bytes after it are the
//     connection's own (an HTTP request) and were not looked at.
//   - kInvalid: not a PROXY header (e.g. a plain HTTP request: a connection without the header
//     where one is required is refused), malformed, an unknown version or command, or longer
//     than the limits. `*error` (when not null) says which, in fixed text: client bytes are
//     never echoed. The connection is to be closed.
// `out` and `consumed` must not be null; they are only written on kDone. v2 TLVs must be well
// formed and are skipped (PP2_TYPE_CRC32C is not checked). Work is linear in the header size.
ProxyParse parse_proxy_header(std::string_view buffered, ProxyHeader* out, std::size_t* consumed,
                              std::string* error);

}  // namespace proxy
