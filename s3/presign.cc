// Presigned URLs (SigV4 made and checked, SigV2 checked), on top of s3/sign.h. Pure.
// Tricky: the canonical request is built from *decoded* then re-encoded path and parameters, so
// "%7E" and "~" sign alike, exactly as S3 does; a bad escape is a malformed request, not a
// mismatch. Parameter names are matched after decoding everywhere (verify and strip), so an
// encoded "X-Amz-%53ignature" can neither hide from the check nor slip through to an upstream.
#include "s3/presign.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <array>
#include <exception>
#include <utility>
#include <vector>

namespace s3 {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr std::string_view kUnsignedPayload = "UNSIGNED-PAYLOAD";
constexpr std::size_t kMaxAccessKey = 128;
constexpr std::size_t kMaxSignedHeaders = 32;

constexpr std::string_view kV4Algorithm = "X-Amz-Algorithm";
constexpr std::string_view kV4Credential = "X-Amz-Credential";
constexpr std::string_view kV4Date = "X-Amz-Date";
constexpr std::string_view kV4Expires = "X-Amz-Expires";
constexpr std::string_view kV4SignedHeaders = "X-Amz-SignedHeaders";
constexpr std::string_view kV4Signature = "X-Amz-Signature";
constexpr std::string_view kV4SecurityToken = "X-Amz-Security-Token";
constexpr std::string_view kV4Names[] = {kV4Algorithm,    kV4Credential,    kV4Date,
                                         kV4Expires,      kV4SignedHeaders, kV4Signature,
                                         kV4SecurityToken};
constexpr std::string_view kV2AccessKey = "AWSAccessKeyId";
constexpr std::string_view kV2Expires = "Expires";
constexpr std::string_view kV2Signature = "Signature";
constexpr std::string_view kV2Names[] = {kV2AccessKey, kV2Expires, kV2Signature};


template <std::size_t N>
bool one_of(const std::string_view (&names)[N], std::string_view n) {
  return std::find(std::begin(names), std::end(names), n) != std::end(names);
}

bool is_presign_name(std::string_view n) { return one_of(kV4Names, n) || one_of(kV2Names, n); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

// RFC 3986 percent-decoding. '+' stays '+' (S3's SigV4 signers never write it for a space).
// False on a '%' not followed by two hex digits.
bool percent_decode(std::string_view in, std::string& out) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (in.size() - i < 3) {
      return false;
    }
    int hi = hex_value(in[i + 1]);
    int lo = hex_value(in[i + 2]);
    if (hi < 0 || lo < 0) {
      return false;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return true;
}

struct Param {
  std::string name;   // decoded
  std::string value;  // decoded
  bool has_value = false;
};

// Splits a raw query into decoded parameters, skipping empty segments ("a&&b"). Returns a reason
// (safe for the client) when over the bounds or on a bad escape, "" otherwise.
std::string parse_query(std::string_view query, std::vector<Param>& out) {
  out.clear();
  if (query.size() > kPresignMaxQuery) {
    return "query string over 8 KiB";
  }
  std::size_t count = 0;
  for (std::size_t start = 0; start <= query.size();) {
    std::size_t amp = std::min(query.find('&', start), query.size());
    count += amp > start ? 1 : 0;
    start = amp + 1;
  }
  if (count > kPresignMaxParams) {
    return "more than 64 query parameters";
  }
  out.reserve(count);
  for (std::size_t start = 0; start <= query.size();) {
    std::size_t amp = std::min(query.find('&', start), query.size());
    std::string_view seg = query.substr(start, amp - start);
    start = amp + 1;
    if (seg.empty()) {
      continue;
    }
    std::size_t eq = seg.find('=');
    Param p;
    p.has_value = eq != std::string_view::npos;
    if (!percent_decode(seg.substr(0, eq), p.name) ||
        (p.has_value && !percent_decode(seg.substr(eq + 1), p.value))) {
      return "bad percent-escape in the query string";
    }
    out.push_back(std::move(p));
  }
  return {};
}

// The value of the one parameter called `name`; nullptr with `reason` set when it is missing or
// given more than once.
const std::string* unique_param(const std::vector<Param>& params, std::string_view name,
                                std::string& reason) {
  const std::string* found = nullptr;
  for (const auto& p : params) {
    if (p.name != name) {
      continue;
    }
    if (found != nullptr) {
      reason = "duplicated " + std::string(name);
      return nullptr;
    }
    found = &p.value;
  }
  if (found == nullptr) {
    reason = "missing " + std::string(name);
  }
  return found;
}

bool has_param(const std::vector<Param>& params, std::string_view name) {
  return std::any_of(params.begin(), params.end(),
                     [name](const Param& p) { return p.name == name; });
}

enum class Number { kOk, kJunk, kHuge };

// A non-negative decimal integer: digits only. Over 18 significant digits is kHuge (a well-formed
// number past any bound we check), so no overflow.
Number parse_number(std::string_view s, std::int64_t& out) {
  if (s.empty()) {
    return Number::kJunk;
  }
  out = 0;
  int significant = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return Number::kJunk;
    }
    if (significant > 0 || c != '0') {
      ++significant;
    }
    if (significant > 18) {
      // Keep scanning: junk after many digits is still junk.
      continue;
    }
    out = out * 10 + (c - '0');
  }
  return significant > 18 ? Number::kHuge : Number::kOk;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2 ? 1 : 0;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// "YYYYMMDDTHHMMSSZ" to Unix seconds; false when malformed or not a real date and time.
bool parse_amz_date(std::string_view s, std::int64_t& out) {
  if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') {
    return false;
  }
  auto digits = [s](std::size_t at, std::size_t n, unsigned& v) {
    v = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') {
        return false;
      }
      v = v * 10 + static_cast<unsigned>(s[i] - '0');
    }
    return true;
  };
  unsigned y = 0, mo = 0, d = 0, h = 0, mi = 0, se = 0;
  if (!digits(0, 4, y) || !digits(4, 2, mo) || !digits(6, 2, d) || !digits(9, 2, h) ||
      !digits(11, 2, mi) || !digits(13, 2, se)) {
    return false;
  }
  static constexpr std::array<unsigned, 12> kDays = {31, 29, 31, 30, 31, 30,
                                                     31, 31, 30, 31, 30, 31};
  if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] || h > 23 || mi > 59 || se > 59) {
    return false;
  }
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  if (mo == 2 && d == 29 && !leap) {
    return false;
  }
  out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se;
  return true;
}

bool equal_constant_time(std::string_view given, std::string_view expected) {
  // The length of a signature is public; only its bytes must not leak through timing.
  return given.size() == expected.size() && !expected.empty() &&
         CRYPTO_memcmp(given.data(), expected.data(), expected.size()) == 0;
}

// The methods a signature may have been made for: the one received, and GET for a HEAD (a HEAD
// shows nothing a GET of the same URL would not; curl -I and health checks rely on it).
std::vector<std::string> candidate_methods(std::string_view method) {
  std::vector<std::string> out{std::string(method)};
  if (method == "HEAD") {
    out.emplace_back("GET");
  }
  return out;
}

PresignCheck verdict(PresignResult r, std::string reason, std::string key_id = {}) {
  PresignCheck c;
  c.result = r;
  c.reason = std::move(reason);
  c.key_id = std::move(key_id);
  return c;
}

// Lowercase header names, strictly ascending (what every signer writes), including host.
bool valid_signed_headers(std::string_view list, std::vector<std::string>& names) {
  names.clear();
  for (std::size_t start = 0; start <= list.size();) {
    std::size_t semi = std::min(list.find(';', start), list.size());
    std::string_view n = list.substr(start, semi - start);
    start = semi + 1;
    if (n.empty() || names.size() >= kMaxSignedHeaders) {
      return false;
    }
    for (char c : n) {
      if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
        return false;
      }
    }
    if (!names.empty() && n <= names.back()) {
      return false;
    }
    names.emplace_back(n);
  }
  return std::find(names.begin(), names.end(), "host") != names.end();
}

// S3's canonical URI: the path decoded, then encoded once with '/' kept. No dot-segment
// normalisation (S3 keys may hold "." and ".." segments).
bool canonical_uri(std::string_view path, std::string& out) {
  std::string decoded;
  if (!percent_decode(path, decoded)) {
    return false;
  }
  out = decoded.empty() ? std::string("/") : uri_encode(decoded, true);
  return true;
}

PresignCheck verify_v4(const PresignedRequest& r, const std::vector<Param>& params,
                       const SecretLookup& secrets, std::string_view region,
                       std::string_view service, std::time_t now) {
  using R = PresignResult;
  if (has_param(params, kV4SecurityToken)) {
    return verdict(R::kMalformed, "X-Amz-Security-Token is not supported (no temporary keys)");
  }
  std::string reason;
  const std::string* algorithm = unique_param(params, kV4Algorithm, reason);
  const std::string* credential = algorithm ? unique_param(params, kV4Credential, reason) : nullptr;
  const std::string* date = credential ? unique_param(params, kV4Date, reason) : nullptr;
  const std::string* expires = date ? unique_param(params, kV4Expires, reason) : nullptr;
  const std::string* signed_headers =
      expires ? unique_param(params, kV4SignedHeaders, reason) : nullptr;
  const std::string* signature =
      signed_headers ? unique_param(params, kV4Signature, reason) : nullptr;
  if (signature == nullptr) {
    return verdict(R::kMalformed, reason);
  }
  if (*algorithm != kAlgorithm) {
    return verdict(R::kMalformed, "X-Amz-Algorithm must be AWS4-HMAC-SHA256");
  }

  // AK/YYYYMMDD/region/service/aws4_request, split from the right.
  std::array<std::string_view, 4> scope;
  std::string_view rest = *credential;
  for (std::size_t i = scope.size(); i-- > 0;) {
    std::size_t slash = rest.rfind('/');
    if (slash == std::string_view::npos) {
      return verdict(R::kMalformed,
                     "X-Amz-Credential must be KEY/DATE/REGION/SERVICE/aws4_request");
    }
    scope[i] = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
  }
  if (rest.empty() || rest.size() > kMaxAccessKey) {
    return verdict(R::kMalformed, "X-Amz-Credential has no valid access key");
  }
  std::string key_id(rest);
  std::int64_t signed_at = 0;
  if (!parse_amz_date(*date, signed_at)) {
    return verdict(R::kMalformed, "X-Amz-Date must be YYYYMMDDTHHMMSSZ", key_id);
  }
  if (scope[0] != std::string_view(*date).substr(0, 8)) {
    return verdict(R::kMalformed, "X-Amz-Credential date does not match X-Amz-Date", key_id);
  }
  if (scope[1] != region) {
    return verdict(R::kMalformed,
                   "X-Amz-Credential region does not match: expected " + std::string(region),
                   key_id);
  }
  if (scope[2] != service) {
    return verdict(R::kMalformed,
                   "X-Amz-Credential service does not match: expected " + std::string(service),
                   key_id);
  }
  if (scope[3] != "aws4_request") {
    return verdict(R::kMalformed, "X-Amz-Credential must end in aws4_request", key_id);
  }
  std::int64_t lifetime = 0;
  switch (parse_number(*expires, lifetime)) {
    case Number::kJunk:
      return verdict(R::kMalformed, "X-Amz-Expires must be a number of seconds", key_id);
    case Number::kHuge:
      return verdict(R::kTooLong, "X-Amz-Expires over 7 days", key_id);
    case Number::kOk:
      break;
  }
  if (lifetime < 1) {
    return verdict(R::kMalformed, "X-Amz-Expires must be at least 1", key_id);
  }
  if (lifetime > kPresignMaxExpires) {
    return verdict(R::kTooLong, "X-Amz-Expires over 7 days", key_id);
  }
  std::vector<std::string> header_names;
  if (!valid_signed_headers(*signed_headers, header_names)) {
    return verdict(R::kMalformed,
                   "X-Amz-SignedHeaders must be sorted lowercase names including host", key_id);
  }
  if (r.path.size() > kPresignMaxPath) {
    return verdict(R::kMalformed, "path over 8 KiB", key_id);
  }
  std::string uri;
  if (!canonical_uri(r.path, uri)) {
    return verdict(R::kMalformed, "bad percent-escape in the path", key_id);
  }
  HeaderList headers;
  for (const auto& name : header_names) {
    std::optional<std::string> value = r.header ? r.header(name) : std::nullopt;
    if (!value) {
      // `name` is validated above: [a-z0-9-] only, safe to echo.
      return verdict(R::kMalformed, "signed header missing from the request: " + name, key_id);
    }
    headers.emplace_back(name, std::move(*value));
  }
  const auto t = static_cast<std::int64_t>(now);
  if (signed_at > t + kPresignMaxSkew) {
    return verdict(R::kNotYetValid, "X-Amz-Date is in the future", key_id);
  }
  if (signed_at + lifetime < t) {
    return verdict(R::kExpired, "expired", key_id);
  }
  const std::string* secret = secrets ? secrets(key_id) : nullptr;
  if (secret == nullptr) {
    return verdict(R::kUnknownKey, "unknown access key", key_id);
  }

  V4Input in;
  in.canonical_uri = std::move(uri);
  for (const auto& p : params) {
    if (p.name != kV4Signature) {
      in.query.emplace_back(p.name, p.value);
    }
  }
  // Host names are case-insensitive and botocore signs the lowercased host, while curl sends it
  // as written in the URL: a Host with capitals is tried as received, then lowercased.
  std::vector<HeaderList> header_sets{headers};
  bool lowered = false;
  for (auto& h : headers) {
    if (h.first == "host") {
      for (char& ch : h.second) {
        if (ch >= 'A' && ch <= 'Z') {
          ch = static_cast<char>(ch - 'A' + 'a');
          lowered = true;
        }
      }
    }
  }
  if (lowered) {
    header_sets.push_back(std::move(headers));
  }
  in.payload_hash = std::string(kUnsignedPayload);
  in.region = std::string(region);
  in.service = std::string(service);
  in.amz_date = *date;
  const Credentials creds{key_id, *secret};
  for (auto& method : candidate_methods(r.method)) {
    in.method = std::move(method);
    for (const auto& set : header_sets) {
      in.headers = set;
      if (equal_constant_time(*signature, v4_sign(creds, in).signature)) {
        return verdict(R::kOk, {}, key_id);
      }
    }
  }
  return verdict(R::kBadSignature,
                 "signature does not match: the URL was altered, or made for another host or key",
                 key_id);
}

PresignCheck verify_v2(const PresignedRequest& r, const std::vector<Param>& params,
                       const SecretLookup& secrets, std::time_t now) {
  using R = PresignResult;
  std::string reason;
  const std::string* access = unique_param(params, kV2AccessKey, reason);
  const std::string* expires = access ? unique_param(params, kV2Expires, reason) : nullptr;
  const std::string* signature = expires ? unique_param(params, kV2Signature, reason) : nullptr;
  if (signature == nullptr) {
    return verdict(R::kMalformed, reason);
  }
  if (access->empty() || access->size() > kMaxAccessKey) {
    return verdict(R::kMalformed, "AWSAccessKeyId is not a valid access key");
  }
  const std::string& key_id = *access;
  std::int64_t until = 0;
  const auto t = static_cast<std::int64_t>(now);
  switch (parse_number(*expires, until)) {
    case Number::kJunk:
      return verdict(R::kMalformed, "Expires must be a Unix time in seconds", key_id);
    case Number::kHuge:
      return verdict(R::kTooLong, "Expires more than 7 days ahead", key_id);
    case Number::kOk:
      break;
  }
  if (until < t) {
    return verdict(R::kExpired, "expired", key_id);
  }
  if (until - t > kPresignMaxExpires) {
    return verdict(R::kTooLong, "Expires more than 7 days ahead", key_id);
  }
  if (r.path.size() > kPresignMaxPath) {
    return verdict(R::kMalformed, "path over 8 KiB", key_id);
  }
  // SigV2 signs only the sub-resources of the query: any other parameter would ride along
  // unsigned (on a `query: key` route, a new cache entry and upstream request per variation).
  for (const auto& p : params) {
    if (!one_of(kV2Names, p.name) && !is_v2_subresource(p.name)) {
      return verdict(R::kMalformed, "a SigV2 presigned URL carries no unsigned parameter",
                     key_id);
    }
  }
  const std::string* secret = secrets ? secrets(key_id) : nullptr;
  if (secret == nullptr) {
    return verdict(R::kUnknownKey, "unknown access key", key_id);
  }

  // The resource: the path as received plus the sub-resources, sorted by name (stable, as
  // botocore's HmacV1 signer does), values decoded, "name" alone when sent without '='.
  std::vector<const Param*> sub;
  for (const auto& p : params) {
    if (is_v2_subresource(p.name)) {
      sub.push_back(&p);
    }
  }
  std::stable_sort(sub.begin(), sub.end(),
                   [](const Param* a, const Param* b) { return a->name < b->name; });
  std::string resource(r.path);
  for (const Param* p : sub) {
    resource += p == sub.front() ? '?' : '&';
    resource += p->name;
    if (p->has_value) {
      resource += '=';
      resource += p->value;
    }
  }
  for (const auto& method : candidate_methods(r.method)) {
    const std::string to_sign = method + "\n\n\n" + *expires + '\n' + resource;
    if (equal_constant_time(*signature, base64(hmac_sha1(*secret, to_sign)))) {
      return verdict(R::kOk, {}, key_id);
    }
  }
  return verdict(R::kBadSignature,
                 "signature does not match: the URL was altered, or made for another host or key",
                 key_id);
}

PresignCheck verify(const PresignedRequest& r, const SecretLookup& secrets, std::string_view region,
                    std::string_view service, std::time_t now) {
  std::vector<Param> params;
  if (std::string bad = parse_query(r.query, params); !bad.empty()) {
    return verdict(PresignResult::kMalformed, std::move(bad));
  }
  bool v4 = false;
  bool v2 = false;
  for (const auto& p : params) {
    v4 = v4 || one_of(kV4Names, p.name);
    v2 = v2 || one_of(kV2Names, p.name);
  }
  if (v4 && v2) {
    return verdict(PresignResult::kMalformed, "both SigV4 and SigV2 presign parameters");
  }
  if (v4) {
    return verify_v4(r, params, secrets, region, service, now);
  }
  if (v2) {
    return verify_v2(r, params, secrets, now);
  }
  return verdict(PresignResult::kNone, "no presign parameters");
}

// What clients send as-is: printable ASCII only, no space.
bool wire_safe(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

conf::Result<std::string, std::string> make_v4(std::string_view url, const Credentials& c,
                                               std::string_view region, std::string_view service,
                                               std::time_t now, std::int64_t expires_seconds) {
  auto fail = [](std::string m) { return conf::unexpected(std::move(m)); };
  if (!wire_safe(url)) {
    return fail("the URL must be percent-encoded: no spaces, control or non-ASCII bytes");
  }
  if (url.find('#') != std::string_view::npos) {
    return fail("the URL must not have a fragment (#...)");
  }
  const std::size_t sep = url.find("://");
  if (sep == std::string_view::npos) {
    return fail("the URL must start with http:// or https://");
  }
  const std::size_t auth_end = std::min(url.find_first_of("/?", sep + 3), url.size());
  // split_url looks for the path's '/' only: give it scheme://authority alone ("http://h?q").
  const UrlParts parts = split_url(url.substr(0, auth_end));
  if (parts.scheme != "http" && parts.scheme != "https") {
    return fail("the URL must start with http:// or https://");
  }
  std::string_view authority = url.substr(sep + 3, auth_end - (sep + 3));
  // User-info ("user@") never reaches Host; what follows is host[:port] or [v6][:port].
  std::string_view host = authority.substr(authority.rfind('@') + 1);
  const std::size_t colon = host.rfind(':');
  if (colon != std::string_view::npos &&
      (host.rfind(']') == std::string_view::npos || colon > host.rfind(']'))) {
    std::string_view port = host.substr(colon + 1);
    host = host.substr(0, colon);
    std::int64_t n = 0;
    if (port.empty() || port.size() > 5 || port.front() == '0' ||
        parse_number(port, n) != Number::kOk || n > 65535) {
      return fail("the URL's port must be a number from 1 to 65535");
    }
  }
  if (host.empty()) {
    return fail("the URL has no host");
  }
  const std::size_t q = std::min(url.find('?', auth_end), url.size());
  std::string_view path = url.substr(auth_end, q - auth_end);
  std::string_view query = q < url.size() ? url.substr(q + 1) : std::string_view();
  if (path.size() > kPresignMaxPath) {
    return fail("the URL path is over 8 KiB");
  }
  std::string uri;
  if (!canonical_uri(path, uri)) {
    return fail("bad percent-escape in the URL path");
  }
  std::vector<Param> params;
  if (std::string bad = parse_query(query, params); !bad.empty()) {
    return fail("the URL's " + bad);
  }
  for (const auto& p : params) {
    if (is_presign_name(p.name)) {
      return fail("the URL already carries presign parameters (" + p.name + ")");
    }
  }
  if (expires_seconds < 1 || expires_seconds > kPresignMaxExpires) {
    return fail("the expiry must be between 1 second and 7 days");
  }
  if (c.access_key.empty() || c.access_key.size() > kMaxAccessKey || !wire_safe(c.access_key) ||
      c.access_key.find('/') != std::string::npos) {
    return fail("the access key must be 1 to 128 printable characters without '/'");
  }
  if (region.empty() || service.empty() || !wire_safe(region) || !wire_safe(service) ||
      region.find('/') != std::string_view::npos || service.find('/') != std::string_view::npos) {
    return fail("region and service must be non-empty names without '/'");
  }

  V4Input in;
  in.method = "GET";
  in.canonical_uri = uri;
  in.amz_date = amz_date(now);
  in.region = std::string(region);
  in.service = std::string(service);
  in.payload_hash = std::string(kUnsignedPayload);
  in.headers = {{"host", parts.authority}};
  const std::string scope = c.access_key + '/' + in.amz_date.substr(0, 8) + '/' + in.region + '/' +
                            in.service + "/aws4_request";
  // botocore's order: the operation's parameters, then these, then the signature.
  const std::vector<std::pair<std::string, std::string>> auth = {
      {std::string(kV4Algorithm), std::string(kAlgorithm)},
      {std::string(kV4Credential), scope},
      {std::string(kV4Date), in.amz_date},
      {std::string(kV4Expires), std::to_string(expires_seconds)},
      {std::string(kV4SignedHeaders), "host"},
  };
  for (auto& p : params) {
    in.query.emplace_back(std::move(p.name), std::move(p.value));
  }
  std::string out(url.substr(0, auth_end));
  out += path.empty() ? std::string_view("/") : path;
  out += '?';
  if (!query.empty()) {
    out += query;
    out += '&';
  }
  for (const auto& [name, value] : auth) {
    in.query.emplace_back(name, value);
    out += name;
    out += '=';
    out += uri_encode(value, false);
    out += '&';
  }
  out += kV4Signature;
  out += '=';
  out += v4_sign(c, in).signature;
  if (out.size() - (out.find('?') + 1) > kPresignMaxQuery ||
      params.size() + 6 > kPresignMaxParams) {
    return fail("the URL's query string would be over the limits tuskd accepts");
  }
  return out;
}

}  // namespace

conf::Result<std::string, std::string> presign_v4(std::string_view url, const Credentials& c,
                                                  std::string_view region, std::string_view service,
                                                  std::time_t now, std::int64_t expires_seconds) {
  try {
    return make_v4(url, c, region, service, now, expires_seconds);
  } catch (const std::exception& e) {  // std::bad_alloc: nothing else throws here
    return conf::unexpected(std::string("cannot presign: ") + e.what());
  }
}

const char* presign_result_name(PresignResult r) {
  switch (r) {
    case PresignResult::kNone:
      return "none";
    case PresignResult::kOk:
      return "ok";
    case PresignResult::kMalformed:
      return "malformed";
    case PresignResult::kExpired:
      return "expired";
    case PresignResult::kNotYetValid:
      return "not_yet_valid";
    case PresignResult::kTooLong:
      return "too_long";
    case PresignResult::kUnknownKey:
      return "unknown_key";
    case PresignResult::kBadSignature:
      return "bad_signature";
  }
  return "unknown";
}

PresignCheck verify_presigned(const PresignedRequest& r, const SecretLookup& secrets,
                              std::string_view region, std::string_view service, std::time_t now) {
  // Work is bounded by the limits above; the only exceptions possible are std::bad_alloc and
  // whatever the caller's callbacks throw. None may reach the event loop: refuse the request.
  try {
    return verify(r, secrets, region, service, now);
  } catch (const std::exception&) {
    return verdict(PresignResult::kMalformed, "request could not be checked");
  }
}

std::string strip_presign_params(std::string_view query) {
  std::string out;
  out.reserve(query.size());
  std::string name;
  for (std::size_t start = 0; start <= query.size();) {
    std::size_t amp = std::min(query.find('&', start), query.size());
    std::string_view seg = query.substr(start, amp - start);
    start = amp + 1;
    if (seg.empty()) {
      continue;
    }
    // An undecodable name is no presign parameter: kept as sent.
    if (percent_decode(seg.substr(0, seg.find('=')), name) && is_presign_name(name)) {
      continue;
    }
    if (!out.empty()) {
      out += '&';
    }
    out += seg;
  }
  return out;
}

}  // namespace s3
