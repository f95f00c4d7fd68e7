// X-Forwarded-For walking. The scan goes right to left over the lines with one byte budget, so
// the work is bounded by kMaxForwardedForBytes whatever the size of the fields.
#include "proxy/client_address.h"

namespace proxy {
namespace {

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_ows(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

bool is_port(std::string_view s) {
  if (s.empty() || s.size() > 5) {
    return false;
  }
  unsigned value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

}  // namespace

std::optional<conf::IpAddress> parse_forwarded_entry(std::string_view entry) {
  if (entry.starts_with('[')) {
    const std::size_t close = entry.find(']');
    if (close == std::string_view::npos) {
      return std::nullopt;
    }
    const std::string_view rest = entry.substr(close + 1);
    if (!rest.empty() && !(rest.front() == ':' && is_port(rest.substr(1)))) {
      return std::nullopt;
    }
    return conf::parse_ip(entry.substr(0, close + 1));  // brackets: IPv6 only
  }
  const std::size_t colon = entry.find(':');
  if (colon != std::string_view::npos && entry.find(':', colon + 1) == std::string_view::npos) {
    // One colon: IPv4 with a port. (IPv6 has at least two.)
    auto v4 = conf::parse_ip(entry.substr(0, colon));
    if (!v4 || !v4->is_v4() || !is_port(entry.substr(colon + 1))) {
      return std::nullopt;
    }
    return v4;
  }
  return conf::parse_ip(entry);
}

conf::IpAddress client_from_forwarded_for(const conf::IpAddress& peer,
                                          const std::vector<std::string_view>& xff_lines,
                                          const conf::CidrList& trusted) {
  if (!trusted.contains(peer)) {
    return peer;
  }
  conf::IpAddress last_trusted = peer;
  std::size_t budget = kMaxForwardedForBytes;  // bytes of the joined list still to be read
  std::size_t entries = 0;
  for (auto line = xff_lines.rbegin(); line != xff_lines.rend(); ++line) {
    if (line != xff_lines.rbegin()) {
      if (budget == 0) {
        return last_trusted;  // more list beyond the limit
      }
      --budget;  // the ',' that joins two lines
    }
    std::size_t end = line->size();
    while (true) {
      std::size_t start = end;
      while (start > 0 && (*line)[start - 1] != ',') {
        if (budget == 0) {
          return last_trusted;  // an entry not wholly within the limit
        }
        --budget;
        --start;
      }
      const std::string_view entry = trim(line->substr(start, end - start));
      if (!entry.empty()) {
        if (++entries > kMaxForwardedForEntries) {
          return last_trusted;
        }
        auto hop = parse_forwarded_entry(entry);
        if (!hop) {
          return last_trusted;
        }
        if (!trusted.contains(*hop)) {
          return *hop;
        }
        last_trusted = *hop;
      }
      if (start == 0) {
        break;
      }
      if (budget == 0) {
        return last_trusted;
      }
      --budget;  // the ','
      end = start - 1;
    }
  }
  return last_trusted;
}

}  // namespace proxy
