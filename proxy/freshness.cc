#include "proxy/freshness.h"

#include <algorithm>

#include "proxy/http_text.h"
#include "s3/sign.h"

namespace proxy {
namespace {

// delta-seconds (RFC 9111 §1.2.2): 1*DIGIT, or the same quoted (RFC 9111 §5.2: recipients
// accept both forms). nullopt when malformed; saturates at kMaxDeltaSeconds.
std::optional<std::int64_t> parse_delta(std::string_view v) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') {
    v = v.substr(1, v.size() - 2);
  }
  if (v.empty()) {
    return std::nullopt;
  }
  std::int64_t n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    if (n < kMaxDeltaSeconds) {
      n = n * 10 + (c - '0');
    }
  }
  return std::min(n, kMaxDeltaSeconds);
}

// A quoted-string's content (backslash escapes undone), or the token as it is.
std::string unquote(std::string_view v) {
  if (v.size() < 2 || v.front() != '"' || v.back() != '"') {
    return std::string(v);
  }
  std::string out;
  for (std::size_t i = 1; i + 1 < v.size(); ++i) {
    if (v[i] == '\\' && i + 2 < v.size()) {
      ++i;
    }
    out += v[i];
  }
  return out;
}

// The non-empty members of a comma list, lower case.
std::vector<std::string> lower_list(std::string_view v) {
  std::vector<std::string> out;
  for_each_list_member(v, [&](std::string_view item) {
    if (!item.empty()) {
      out.push_back(ascii_lowered(item));
    }
  });
  return out;
}

// Every line of `name`, joined as one comma list.
std::string joined(const Headers& headers, std::string_view name) {
  std::string out;
  for (const auto& [k, v] : headers) {
    if (iequals(k, name)) {
      if (!out.empty()) {
        out += ',';
      }
      out += v;
    }
  }
  return out;
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
    // The end of this directive: a comma outside a quoted-string (backslash escapes inside).
    std::size_t j = i;
    bool quoted = false;
    while (j < value.size() && (quoted || value[j] != ',')) {
      if (quoted && value[j] == '\\' && j + 1 < value.size()) {
        ++j;
      } else if (value[j] == '"') {
        quoted = !quoted;
      }
      ++j;
    }
    std::string_view item = trim_ows(value.substr(i, j - i));
    i = j + 1;
    if (item.empty()) {
      continue;
    }
    const std::size_t eq = item.find('=');
    std::string_view raw_name = item.substr(0, eq);
    std::string_view arg = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
    // "max-age = 5" is not the directive's syntax (no whitespace around '='): malformed.
    const bool spaced =
        eq != std::string_view::npos &&
        (trim_ows(raw_name).size() != raw_name.size() || trim_ows(arg).size() != arg.size());
    const std::string name = ascii_lowered(trim_ows(raw_name));
    auto delta = [&](std::optional<std::int64_t>& slot) {
      if (!slot) {  // the first occurrence wins
        slot = spaced ? 0 : parse_delta(arg).value_or(0);
      }
    };
    if (name == "no-store") {
      cc.no_store = true;
    } else if (name == "no-cache") {
      if (eq == std::string_view::npos) {
        cc.no_cache = true;
      } else {
        for (std::string& f : lower_list(unquote(trim_ows(arg)))) {
          cc.no_cache_fields.push_back(std::move(f));
        }
      }
    } else if (name == "private") {
      cc.private_ = true;
    } else if (name == "public") {
      cc.public_ = true;
    } else if (name == "must-revalidate") {
      cc.must_revalidate = true;
    } else if (name == "proxy-revalidate") {
      cc.proxy_revalidate = true;
    } else if (name == "max-age") {
      delta(cc.max_age);
    } else if (name == "s-maxage") {
      delta(cc.s_maxage);
    } else if (name == "stale-while-revalidate") {
      delta(cc.stale_while_revalidate);
    } else if (name == "stale-if-error") {
      delta(cc.stale_if_error);
    }
  }
  return cc;
}

CacheControl cache_control_of(const Headers& headers) {
  return parse_cache_control(joined(headers, "cache-control"));
}

std::optional<std::int64_t> parse_age(const Headers& headers) {
  const std::string* line = find_field(headers, "age");
  if (line == nullptr) {
    return std::nullopt;
  }
  std::string_view v = *line;
  v = trim_ows(v.substr(0, v.find(',')));  // the first member
  if (std::size_t semi = v.find(';'); semi != std::string_view::npos) {
    v = trim_ows(v.substr(0, semi));  // "7200;foo=bar": the parameter is tolerated
  }
  if (v.empty() || v.front() == '"') {
    return std::nullopt;  // no quoted form for Age
  }
  return parse_delta(v);
}

bool heuristically_cacheable(int status) {
  switch (status) {
    case 200:
    case 203:
    case 204:
    case 206:
    case 300:
    case 301:
    case 308:
    case 404:
    case 405:
    case 410:
    case 414:
    case 501:
      return true;
    default:
      return false;
  }
}

Freshness decide(int status, const Headers& headers, const conf::Route& route, std::int64_t now) {
  Freshness f;
  const CacheControl cc = cache_control_of(headers);
  if (cc.no_store || cc.private_) {
    return f;  // not storable, whatever the route says
  }
  // (Vary is the fill's to judge: proxy/vary.h, Fetch::vary_allows_storing.)
  f.storable = true;
  if (route.ttl_override) {
    f.stored_at = now;  // the route's ttl counts from when tusk stored the object
    f.expires_at = now + route.ttl.count();
    return f;
  }

  // The age it already has (RFC 9111 §4.2.3, without the request-delay term, negligible next to
  // lifetimes of seconds to days): the larger of Age and the apparent age from Date.
  std::int64_t age = parse_age(headers).value_or(0);
  const std::time_t date = s3::parse_http_date(find_header(headers, "date"));
  if (date != -1 && now > date) {
    age = std::max<std::int64_t>(age, now - date);
  }

  f.revalidate_each_use = cc.no_cache;
  std::int64_t lifetime = 0;
  if (cc.s_maxage) {
    lifetime = *cc.s_maxage;
  } else if (cc.max_age) {
    lifetime = *cc.max_age;
  } else if (const std::string* exp = find_field(headers, "expires")) {
    // An invalid Expires (e.g. "0") means already expired (RFC 9111 §5.3); so do two lines that
    // disagree (§4.2.1 allows "consider it stale").
    bool agree = true;
    for (const auto& [k, v] : headers) {
      agree = agree && (!iequals(k, "expires") || v == *exp);
    }
    const std::time_t e = agree ? s3::parse_http_date(*exp) : -1;
    lifetime = e == -1 ? 0 : std::max<std::int64_t>(0, e - (date != -1 ? date : now));
  } else if (heuristically_cacheable(status)) {
    lifetime = route.ttl.count();  // heuristic freshness: the origin said nothing
  }
  f.stored_at = now - age;
  f.expires_at = f.stored_at + lifetime;
  return f;
}

StaleWindows stale_windows(const Headers& stored, const conf::Route& route) {
  if (route.ttl_override) {
    return {};
  }
  const CacheControl cc = cache_control_of(stored);
  if (cc.no_cache || cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage) {
    return {false, 0, 0};
  }
  return {true, cc.stale_while_revalidate.value_or(0), cc.stale_if_error.value_or(0)};
}

bool is_hop_by_hop(std::string_view name) {
  static constexpr std::string_view kHop[] = {
      "connection",
      "keep-alive",
      "proxy-authenticate",
      "proxy-authentication-info",
      "proxy-authorization",
      "proxy-connection",
      "te",
      "trailer",
      "transfer-encoding",
      "upgrade",
  };
  return std::any_of(std::begin(kHop), std::end(kHop),
                     [&](std::string_view h) { return iequals(name, h); });
}

std::vector<std::string> connection_nominated(const Headers& headers) {
  return lower_list(joined(headers, "connection"));
}

Headers replayable_headers(const Headers& origin) {
  // Kept apart (Meta), written by tusk itself, or meaningful for one response only.
  static constexpr std::string_view kOwn[] = {
      "content-length", "content-range",    "content-encoding", "content-type",
      "etag",           "last-modified",    "accept-ranges",    "age",
      "server",         "x-amz-request-id", "x-amz-id-2",       "x-cache",
      "x-tusk-peer",
  };
  std::vector<std::string> drop = connection_nominated(origin);
  for (std::string& f : cache_control_of(origin).no_cache_fields) {
    drop.push_back(std::move(f));
  }
  Headers out;
  for (const auto& field : origin) {
    const std::string& k = field.first;  // (clang 14 lambdas cannot capture a structured binding)
    const bool own = std::any_of(std::begin(kOwn), std::end(kOwn),
                                 [&](std::string_view n) { return iequals(k, n); });
    const bool named =
        std::any_of(drop.begin(), drop.end(), [&](const std::string& n) { return iequals(k, n); });
    if (!own && !named && !is_hop_by_hop(k)) {
      out.push_back(field);
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
