// Which address a request came from, when trusted proxies stand in front of tuskd: the peer of
// the connection, unless that peer is a trusted proxy, in which case the right-most
// X-Forwarded-For entry that is not itself a trusted proxy. Pure; callable from any thread.
// Tricky: everything left of the first untrusted hop was written by the client and can be
// forged, so the walk goes from the right and never returns a value that no trusted hop vouched
// for: junk stops it at the last trusted hop, not at the next entry.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>
#include <vector>

#include "conf/cidr.h"

namespace proxy {

// The walk reads at most this many non-empty entries and this many bytes of the list (the lines
// joined by ','), counted from its right end. Past either, the list is treated as junk.
inline constexpr std::size_t kMaxForwardedForEntries = 64;
inline constexpr std::size_t kMaxForwardedForBytes = 8 * 1024;

// One X-Forwarded-For entry, already trimmed of spaces and tabs: "192.0.2.7", "2001:db8::1",
// "[2001:db8::1]", or with a port as some proxies add it: "192.0.2.7:5678", "[2001:db8::1]:80"
// (the port, 0..65535, is dropped). nullopt for anything else: "unknown", RFC 7239 obfuscated
// names ("_hidden"), an unbracketed IPv6 address with a port, junk.
std::optional<conf::IpAddress> parse_forwarded_entry(std::string_view entry);

// The client address of a request that arrived from `peer` with the X-Forwarded-For field lines
// `xff_lines` (in the order received; several lines are one comma-separated list, RFC 9110 §5.3):
//   - `peer` not in `trusted`: `peer`; X-Forwarded-For is ignored, whatever it says;
//   - else, walking the entries from the right, empty ones skipped (RFC 9110 §5.6.1): the first
//     entry not in `trusted`;
//   - every entry in `trusted` (or none at all): the left-most one (or `peer`);
//   - an entry that is not an address (see parse_forwarded_entry), or the limits above reached
//     before the walk ends: the last trusted hop seen (`peer` when that is the right-most entry).
//     Choice: the entry after junk is what a client can write freely, while every hop seen so
//     far was vouched for by a trusted proxy; answering with a trusted proxy's address is wrong
//     but safe (it matches `allow:` only if the operator allowed the proxy itself).
// The views are only read during the call.
conf::IpAddress client_from_forwarded_for(const conf::IpAddress& peer,
                                          const std::vector<std::string_view>& xff_lines,
                                          const conf::CidrList& trusted);

}  // namespace proxy
