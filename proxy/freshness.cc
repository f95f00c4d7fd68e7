#include "proxy/freshness.h"

#include <algorithm>
#include <charconv>
#include <limits>

#include "proxy/http_text.h"
#include "s3/sign.h"

namespace proxy {
namespace {

std::int64_t delta_seconds(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    v = v.substr(1, v.size() - 2);
  }
  std::int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec == std::errc::result_out_of_range) {
    return std::numeric_limits<std::int32_t>::max();  // RFC 9111 §1.2.2: cap at 2^31
  }
  if (ec != std::errc() || p != v.data() + v.size() || n < 0) {
    return 0;
  }
  return std::min<std::int64_t>(n, std::numeric_limits<std::int32_t>::max());
}

}  // namespace

std::string_view find_header(const Headers& headers, std::string_view name) {
  const std::string* v = find_field(headers, name);
  return v ? std::string_view(*v) : std::string_view();
}

CacheControl parse_cache_control(std::string_view value) {
  CacheControl cc;
  std::size_t i = 0;
  while (i <= value.size()) {
    // Find the end of this directive, skipping commas inside quoted arguments.
    std::size_t j = i;
    bool quoted = false;
    while (j < value.size() && (quoted || value[j] != ',')) {
      if (value[j] == '"') {
        quoted = !quoted;
      }
      ++j;
    }
    std::string_view item = trim_ows(value.substr(i, j - i));
    i = j + 1;
    if (item.empty()) {
      continue;
    }
    std::size_t eq = item.find('=');
    std::string name(trim_ows(item.substr(0, eq)));
    std::transform(name.begin(), name.end(), name.begin(), ascii_lower);
    std::string_view arg =
        eq == std::string_view::npos ? std::string_view{} : trim_ows(item.substr(eq + 1));
    if (name == "no-store") {
      cc.no_store = true;
    } else if (name == "no-cache") {
      // A qualified no-cache="field" only limits headers; tusk treats it as unqualified, which
      // is the safe reading for a shared cache.
      cc.no_cache = true;
    } else if (name == "private") {
      cc.private_ = true;
    } else if (name == "public") {
      cc.public_ = true;
    } else if (name == "must-revalidate" || name == "proxy-revalidate") {
      cc.must_revalidate = true;
    } else if (name == "max-age") {
      cc.max_age = delta_seconds(arg);
    } else if (name == "s-maxage") {
      cc.s_maxage = delta_seconds(arg);
    }
  }
  return cc;
}

Freshness decide(const Headers& headers, const conf::Route& route, std::int64_t now) {
  Freshness f;
  std::string cc_text;
  for (const auto& [k, v] : headers) {
    if (iequals(k, "cache-control")) {
      if (!cc_text.empty()) {
        cc_text += ',';
      }
      cc_text += v;
    }
  }
  CacheControl cc = parse_cache_control(cc_text);
  if (cc.no_store || cc.private_) {
    return f;  // not storable, whatever the route says
  }
  // Vary (RFC 9111 §4.1): a stored answer may serve only requests whose nominated headers
  // match the request it answered. tusk's upstream requests are its own (no client header is
  // forwarded), so a varying answer is passed through, never stored and replayed to requests
  // it may not fit; `Vary: *` never matches anything. S3 and Walrus send no Vary to tusk.
  for (const auto& [k, v] : headers) {
    if (iequals(k, "vary") && !trim_ows(v).empty()) {
      return f;
    }
  }
  f.storable = true;

  // Age already accumulated upstream (RFC 9111 §4.2.3, without the request-delay term, which
  // is negligible next to object lifetimes measured in seconds to days).
  std::int64_t age = 0;
  if (auto a = find_header(headers, "age"); !a.empty()) {
    age = delta_seconds(a);
  }
  std::time_t date = s3::parse_http_date(find_header(headers, "date"));
  if (date != -1 && now > date) {
    age = std::max<std::int64_t>(age, now - date);
  }

  const std::int64_t ttl = route.ttl.count();
  std::int64_t lifetime = ttl;
  if (route.ttl_override) {
    age = 0;  // the route's ttl counts from when tusk stored the object
  } else {
    f.revalidate_each_use = cc.no_cache;
    if (cc.s_maxage) {
      lifetime = *cc.s_maxage;
    } else if (cc.max_age) {
      lifetime = *cc.max_age;
    } else if (auto exp = find_header(headers, "expires"); !exp.empty()) {
      std::time_t e = s3::parse_http_date(exp);
      // An invalid Expires (e.g. "0") means already expired (RFC 9111 §5.3).
      std::time_t base = date != -1 ? date : now;
      lifetime = e == -1 ? 0 : std::max<std::int64_t>(0, e - base);
      if (date != -1) {
        age = std::max<std::int64_t>(0, now - date);
      }
    }
  }
  f.stored_at = now - age;
  f.expires_at = f.stored_at + lifetime;
  return f;
}

Headers replayable_headers(const Headers& origin) {
  static constexpr std::string_view kKeep[] = {
      "cache-control",       "expires",
      "content-disposition", "content-language",
      "x-amz-version-id",    "x-amz-website-redirect-location",
      "x-amz-storage-class", "vary",
  };
  Headers out;
  for (const auto& [k, v] : origin) {
    bool keep = false;
    if (k.size() > 11 && iequals(std::string_view(k).substr(0, 11), "x-amz-meta-")) {
      keep = true;
    } else {
      for (auto name : kKeep) {
        if (iequals(k, name)) {
          keep = true;
          break;
        }
      }
    }
    if (keep) {
      out.emplace_back(k, v);
    }
  }
  return out;
}

bool is_tarball_key(std::string_view key) {
  auto ends_with = [&](std::string_view suffix) {
    return key.size() >= suffix.size() && iequals(key.substr(key.size() - suffix.size()), suffix);
  };
  return ends_with(".tgz") || ends_with(".tar.gz");
}

}  // namespace proxy
