// The pure value parsers of conf/config.h: sizes, durations, listen addresses. No YAML here;
// the readers of config_read.cc call these and put the error text at the value's place. Tricky:
// sizes may have fractions and decimal or binary units, so they are summed in 128 bits; durations
// may not, and a bare number other than 0 is refused because its unit would be a guess.

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>
#include <iterator>
#include <limits>

#include "conf/config.h"
#include "conf/config_read.h"

namespace conf {
namespace {

using detail::in_quotes;
using detail::is_alnum;
using detail::is_digit;
using detail::kGiB;
using detail::kKiB;
using detail::kMiB;
using detail::kTiB;
using detail::lowercase;

// Multiplier of a size unit, case-insensitively; 0 when unknown. Single letters are binary, as in
// nginx and Varnish; "KB"/"MB"/... are decimal, "KiB"/"MiB"/... binary.
std::uint64_t size_unit(std::string_view unit) {
  static constexpr std::pair<std::string_view, std::uint64_t> kUnits[] = {
      {"", 1},
      {"b", 1},
      {"k", kKiB},
      {"kb", 1000},
      {"kib", kKiB},
      {"m", kMiB},
      {"mb", 1000ull * 1000},
      {"mib", kMiB},
      {"g", kGiB},
      {"gb", 1000ull * 1000 * 1000},
      {"gib", kGiB},
      {"t", kTiB},
      {"tb", 1000ull * 1000 * 1000 * 1000},
      {"tib", kTiB},
  };
  const std::string low = lowercase(unit);
  for (const auto& [name, mult] : kUnits) {
    if (name == low) {
      return mult;
    }
  }
  return 0;
}

std::size_t count_digits(std::string_view text, std::size_t from) {
  std::size_t i = from;
  while (i < text.size() && is_digit(text[i])) {
    ++i;
  }
  return i - from;
}

}  // namespace

Result<std::uint64_t, std::string> parse_size(std::string_view text) {
  if (text.empty()) {
    return unexpected(std::string("empty size"));
  }
  if (text.front() == '-') {
    return unexpected("size must not be negative, got " + in_quotes(text));
  }
  const std::string bad = "invalid size " + in_quotes(text) + ": expected a number and a unit";
  const std::size_t int_len = count_digits(text, 0);
  if (int_len == 0) {
    return unexpected(bad);
  }
  std::size_t pos = int_len;
  std::string_view frac;
  if (pos < text.size() && text[pos] == '.') {
    const std::size_t frac_len = count_digits(text, pos + 1);
    // 18 digits keep frac * unit inside 128 bits.
    if (frac_len == 0 || frac_len > 18) {
      return unexpected(bad);
    }
    frac = text.substr(pos + 1, frac_len);
    pos += 1 + frac_len;
  }
  while (pos < text.size() && text[pos] == ' ') {
    ++pos;
  }
  const std::uint64_t mult = size_unit(text.substr(pos));
  if (mult == 0) {
    return unexpected("invalid size " + in_quotes(text) +
                      ": unknown unit (use B, K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB, TiB)");
  }
  std::uint64_t whole = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + int_len, whole);
  const std::string too_large = "size " + in_quotes(text) + " is too large";
  if (ec == std::errc::result_out_of_range) {
    return unexpected(too_large);
  }
  unsigned __int128 total = static_cast<unsigned __int128>(whole) * mult;
  if (!frac.empty()) {
    unsigned __int128 num = 0;
    unsigned __int128 den = 1;
    for (char c : frac) {
      num = num * 10 + static_cast<unsigned>(c - '0');
      den *= 10;
    }
    if (mult == 1 && num != 0) {
      return unexpected("invalid size " + in_quotes(text) + ": a byte count has no fraction");
    }
    // Rounds down: "1.7GiB" is not a whole number of bytes and nobody minds the missing byte.
    total += num * mult / den;
  }
  if (total > std::numeric_limits<std::uint64_t>::max()) {
    return unexpected(too_large);
  }
  return static_cast<std::uint64_t>(total);
}

Result<Millis, std::string> parse_duration(std::string_view text) {
  // Units from largest to smallest; a duration lists them in this order, each at most once.
  static constexpr std::pair<std::string_view, std::int64_t> kUnits[] = {
      {"w", 7 * 24 * 3600 * 1000ll},
      {"d", 24 * 3600 * 1000ll},
      {"h", 3600 * 1000ll},
      {"m", 60 * 1000ll},
      {"s", 1000ll},
      {"ms", 1ll},
  };
  constexpr std::size_t kNoUnit = std::size(kUnits);
  if (text.empty()) {
    return unexpected(std::string("empty duration"));
  }
  if (text.front() == '-') {
    return unexpected("duration must not be negative, got " + in_quotes(text));
  }
  const std::string bad =
      "invalid duration " + in_quotes(text) + ": expected e.g. 250ms, 30s, 1h30m";
  const std::string too_large = "duration " + in_quotes(text) + " is too large";
  std::int64_t total = 0;
  std::size_t last_unit = kNoUnit;  // index into kUnits of the previous part; none yet
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t digits = count_digits(text, pos);
    if (digits == 0) {
      return unexpected(bad);
    }
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + digits, n);
    if (ec == std::errc::result_out_of_range) {
      return unexpected(too_large);
    }
    pos += digits;
    if (pos < text.size() && text[pos] == '.') {
      return unexpected("invalid duration " + in_quotes(text) +
                        ": fractions are not supported (write 1h30m, not 1.5h)");
    }
    std::size_t unit_end = pos;
    while (unit_end < text.size() && !is_digit(text[unit_end])) {
      ++unit_end;
    }
    const std::string_view unit = text.substr(pos, unit_end - pos);
    if (unit.empty()) {
      // "0" means nothing whatever the unit; any other bare number could be seconds or millis.
      if (last_unit == kNoUnit && n == 0) {
        return Millis{0};
      }
      return unexpected("invalid duration " + in_quotes(text) +
                        ": a number needs a unit (ms, s, m, h, d, w)");
    }
    std::size_t u = 0;
    while (u < kNoUnit && kUnits[u].first != unit) {
      ++u;
    }
    if (u == kNoUnit) {
      return unexpected("invalid duration " + in_quotes(text) + ": unknown unit " +
                        in_quotes(unit) + " (use ms, s, m, h, d, w)");
    }
    if (last_unit != kNoUnit && u <= last_unit) {
      return unexpected("invalid duration " + in_quotes(text) +
                        ": units must go from largest to smallest, each once");
    }
    std::int64_t part = 0;
    if (__builtin_mul_overflow(n, kUnits[u].second, &part) ||
        __builtin_add_overflow(total, part, &total)) {
      return unexpected(too_large);
    }
    last_unit = u;
    pos = unit_end;
  }
  return Millis{total};
}

Result<HostPort, std::string> parse_listen(std::string_view text) {
  const std::string bad = "invalid listen address " + in_quotes(text);
  HostPort out;
  std::string_view port;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return unexpected(bad + ": expected [ipv6]:port");
    }
    out.host = std::string(text.substr(1, close - 1));
    in6_addr addr{};
    if (inet_pton(AF_INET6, out.host.c_str(), &addr) != 1) {
      return unexpected(bad + ": " + in_quotes(out.host) + " is not an IPv6 address");
    }
    port = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return unexpected(bad + ": expected host:port");
    }
    out.host = std::string(text.substr(0, colon));
    if (out.host.find(':') != std::string::npos) {
      return unexpected(bad + ": IPv6 addresses go in brackets, e.g. [::1]:8080");
    }
    if (out.host.empty()) {
      return unexpected(bad + ": missing host (use 0.0.0.0 or [::] for all addresses)");
    }
    for (char c : out.host) {
      if (!is_alnum(c) && c != '.' && c != '-') {
        return unexpected(bad + ": invalid host " + in_quotes(out.host));
      }
    }
    port = text.substr(colon + 1);
  }
  const bool all_digits =
      !port.empty() && port.size() <= 5 && std::all_of(port.begin(), port.end(), is_digit);
  if (all_digits) {
    (void)std::from_chars(port.data(), port.data() + port.size(), out.port);
  }
  if (!all_digits || out.port < 1 || out.port > 65535) {
    return unexpected(bad + ": port must be 1..65535");
  }
  return out;
}

}  // namespace conf
