// AWS request signing (SigV2 S3 REST, SigV4, EC2 Query SigV2) and the encodings and dates they
// rest on. Everything here is pure: the caller supplies the time. Tricky: header values are
// trimmed and inner whitespace runs collapsed before signing (V2 amz headers and V4 alike), and
// dates must be formatted without the C locale's help (strftime's %a/%b follow LC_TIME).
#include "s3/sign.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <map>

namespace s3 {
namespace {

constexpr std::array<const char*, 7> kWeekdays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<const char*, 7> kLongWeekdays = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                                      "Thursday", "Friday", "Saturday"};
constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// Trim both ends and collapse inner whitespace runs to one space (AWS "Trimall").
std::string trim_all(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  bool pending_space = false;
  for (char c : v) {
    if (is_space(c)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) {
      out.push_back(' ');
      pending_space = false;
    }
    out.push_back(c);
  }
  return out;
}

// Lowercased name -> values joined by ',' in order of appearance, sorted by name. `keep` selects
// which lowercased names take part.
template <class Pred>
std::map<std::string, std::string> canonical_headers(const HeaderList& headers, Pred keep) {
  std::map<std::string, std::string> out;
  for (const auto& [name, value] : headers) {
    std::string n = lower(trim_all(name));
    if (!keep(n)) {
      continue;
    }
    auto [it, inserted] = out.try_emplace(n, trim_all(value));
    if (!inserted) {
      it->second += ',';
      it->second += trim_all(value);
    }
  }
  return out;
}

std::string find_header(const HeaderList& headers, std::string_view name) {
  for (const auto& [n, v] : headers) {
    if (lower(n) == name) {
      return v;
    }
  }
  return {};
}

bool has_header(const HeaderList& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(),
                     [&](const auto& h) { return lower(h.first) == name; });
}

std::tm utc(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  return tm;
}

// --- date parsing helpers: a tiny cursor over the input ---
struct Cursor {
  std::string_view s;
  std::size_t i = 0;

  bool lit(std::string_view l) {
    if (s.substr(i, l.size()) != l) {
      return false;
    }
    i += l.size();
    return true;
  }
  // Exactly `min..max` digits.
  bool num(int min_digits, int max_digits, int& out) {
    int n = 0;
    int v = 0;
    while (i < s.size() && n < max_digits && std::isdigit(static_cast<unsigned char>(s[i]))) {
      v = v * 10 + (s[i] - '0');
      ++i;
      ++n;
    }
    out = v;
    return n >= min_digits;
  }
  bool month(int& out) {
    for (int m = 0; m < 12; ++m) {
      if (lit(kMonths[m])) {
        out = m;
        return true;
      }
    }
    return false;
  }
  bool time(std::tm& tm) {
    return num(2, 2, tm.tm_hour) && lit(":") && num(2, 2, tm.tm_min) && lit(":") &&
           num(2, 2, tm.tm_sec);
  }
  bool done() const { return i == s.size(); }
};

std::time_t finish_date(std::tm tm) {
  static constexpr std::array<int, 12> kDays = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (tm.tm_mday < 1 || tm.tm_mday > kDays[tm.tm_mon] || tm.tm_hour > 23 || tm.tm_min > 59 ||
      tm.tm_sec > 60 || tm.tm_year < 70) {  // before 1970 would collide with -1
    return -1;
  }
  bool leap = (tm.tm_year % 4 == 0 && tm.tm_year % 100 != 0) || (tm.tm_year + 1900) % 400 == 0;
  if (tm.tm_mon == 1 && tm.tm_mday == 29 && !leap) {
    return -1;
  }
  return timegm(&tm);
}

std::string hmac(const EVP_MD* md, std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // Empty views may carry a null data pointer; HMAC() wants a valid one.
  static const unsigned char kEmpty = 0;
  const auto* k = key.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(key.data());
  const auto* d = data.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(data.data());
  HMAC(md, k, static_cast<int>(key.size()), d, data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

}  // namespace

std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' ||
        (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string http_date(std::time_t t) {
  std::tm tm = utc(t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kWeekdays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return buf;
}

std::string amz_date(std::time_t t) {
  std::tm tm = utc(t);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::time_t parse_http_date(std::string_view s) {
  std::tm tm{};
  // RFC 1123: "Sun, 06 Nov 1994 08:49:37 GMT"
  for (const char* wd : kWeekdays) {
    Cursor c{s};
    if (c.lit(wd) && c.lit(", ") && c.num(2, 2, tm.tm_mday) && c.lit(" ") && c.month(tm.tm_mon) &&
        c.lit(" ") && c.num(4, 4, tm.tm_year) && c.lit(" ") && c.time(tm) && c.lit(" GMT") &&
        c.done()) {
      tm.tm_year -= 1900;
      return finish_date(tm);
    }
  }
  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT". Two-digit years pivot at 70 (the Unix epoch): no
  // clock here to apply RFC 9110's "more than 50 years in the future" rule.
  for (const char* wd : kLongWeekdays) {
    Cursor c{s};
    if (c.lit(wd) && c.lit(", ") && c.num(2, 2, tm.tm_mday) && c.lit("-") && c.month(tm.tm_mon) &&
        c.lit("-") && c.num(2, 2, tm.tm_year) && c.lit(" ") && c.time(tm) && c.lit(" GMT") &&
        c.done()) {
      if (tm.tm_year < 70) {
        tm.tm_year += 100;
      }
      return finish_date(tm);
    }
  }
  // asctime: "Sun Nov  6 08:49:37 1994" (day padded with a space).
  for (const char* wd : kWeekdays) {
    Cursor c{s};
    bool ok = c.lit(wd) && c.lit(" ") && c.month(tm.tm_mon) && c.lit(" ");
    if (ok && !c.lit(" ")) {  // two-digit day: no padding space
      ok = c.num(2, 2, tm.tm_mday);
    } else {
      ok = ok && c.num(1, 1, tm.tm_mday);
    }
    if (ok && c.lit(" ") && c.time(tm) && c.lit(" ") && c.num(4, 4, tm.tm_year) && c.done()) {
      tm.tm_year -= 1900;
      return finish_date(tm);
    }
  }
  return -1;
}

std::string hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char ch : bytes) {
    auto c = static_cast<unsigned char>(ch);
    out.push_back(kHex[c >> 4]);
    out.push_back(kHex[c & 15]);
  }
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr);
  return hex(std::string_view(reinterpret_cast<char*>(out), len));
}

std::string base64(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::string hmac_sha1(std::string_view key, std::string_view data) {
  return hmac(EVP_sha1(), key, data);
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  return hmac(EVP_sha256(), key, data);
}

// --- Signature V2 ---

std::string v2_string_to_sign(const V2Input& in) {
  // Explicit fields win; when empty, the same header from `headers` is used, so a caller may
  // pass just the header list. AWS leaves the Date line empty when x-amz-date is sent.
  std::string md5 =
      in.content_md5.empty() ? find_header(in.headers, "content-md5") : in.content_md5;
  std::string type =
      in.content_type.empty() ? find_header(in.headers, "content-type") : in.content_type;
  std::string date = in.date;
  if (date.empty() && !has_header(in.headers, "x-amz-date")) {
    date = find_header(in.headers, "date");
  }
  std::string out =
      in.method + '\n' + trim_all(md5) + '\n' + trim_all(type) + '\n' + trim_all(date) + '\n';
  auto amz =
      canonical_headers(in.headers, [](const std::string& n) { return n.rfind("x-amz-", 0) == 0; });
  for (const auto& [name, value] : amz) {
    out += name + ':' + value + '\n';
  }
  out += in.resource;
  return out;
}

std::string v2_authorization(const Credentials& c, const V2Input& in) {
  return "AWS " + c.access_key + ':' + base64(hmac_sha1(c.secret_key, v2_string_to_sign(in)));
}

// --- Signature V4 ---

V4Output v4_sign(const Credentials& c, const V4Input& in) {
  V4Output out;
  auto headers = canonical_headers(in.headers, [](const std::string&) { return true; });
  std::string canonical_headers_block;
  for (const auto& [name, value] : headers) {
    canonical_headers_block += name + ':' + value + '\n';
    if (!out.signed_headers.empty()) {
      out.signed_headers += ';';
    }
    out.signed_headers += name;
  }
  std::string scope_date = in.amz_date.substr(0, 8);
  std::string scope = scope_date + '/' + in.region + '/' + in.service + "/aws4_request";

  out.canonical_request = in.method + '\n' + (in.canonical_uri.empty() ? "/" : in.canonical_uri) +
                          '\n' + canonical_query(in.query) + '\n' + canonical_headers_block + '\n' +
                          out.signed_headers + '\n' + in.payload_hash;
  out.string_to_sign =
      "AWS4-HMAC-SHA256\n" + in.amz_date + '\n' + scope + '\n' + sha256_hex(out.canonical_request);

  std::string key = hmac_sha256("AWS4" + c.secret_key, scope_date);
  key = hmac_sha256(key, in.region);
  key = hmac_sha256(key, in.service);
  key = hmac_sha256(key, "aws4_request");
  out.signature = hex(hmac_sha256(key, out.string_to_sign));
  out.authorization = "AWS4-HMAC-SHA256 Credential=" + c.access_key + '/' + scope +
                      ",SignedHeaders=" + out.signed_headers + ",Signature=" + out.signature;
  return out;
}

// --- EC2 Query API SigV2 ---

std::string canonical_query(std::vector<std::pair<std::string, std::string>> params) {
  // Sort by the *encoded* name (then value), which is what V4 specifies; for V2's byte-order sort
  // of raw names the result is the same because encoding preserves the order of unreserved bytes
  // and EC2 parameter names are plain ASCII.
  for (auto& [k, v] : params) {
    k = uri_encode(k, false);
    v = uri_encode(v, false);
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) {
      out += '&';
    }
    out += k + '=' + v;
  }
  return out;
}

std::string query_v2_signature(const Credentials& c, std::string_view method, std::string_view host,
                               std::string_view path,
                               std::vector<std::pair<std::string, std::string>> params) {
  std::string to_sign = std::string(method) + '\n' + lower(host) + '\n' +
                        (path.empty() ? std::string("/") : std::string(path)) + '\n' +
                        canonical_query(std::move(params));
  return base64(hmac_sha256(c.secret_key, to_sign));
}

UrlParts split_url(std::string_view url) {
  UrlParts ep;
  auto sep = url.find("://");
  ep.scheme = sep == std::string_view::npos ? "http" : std::string(url.substr(0, sep));
  for (char& c : ep.scheme) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  std::string_view rest = sep == std::string_view::npos ? url : url.substr(sep + 3);
  auto slash = rest.find('/');
  std::string_view auth = rest.substr(0, slash);
  if (slash != std::string_view::npos) {
    ep.path = std::string(rest.substr(slash));
    if (auto q = ep.path.find('?'); q != std::string::npos) {
      ep.path.resize(q);
    }
    while (!ep.path.empty() && ep.path.back() == '/') {
      ep.path.pop_back();
    }
  }
  if (auto at = auth.rfind('@'); at != std::string_view::npos) {
    auth.remove_prefix(at + 1);  // user-info never reaches Host
  }
  std::string_view host = auth;
  std::string_view port;
  // "[v6]:port" or "host:port"; the colon must come after a closing bracket if any.
  auto colon = auth.rfind(':');
  auto bracket = auth.rfind(']');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    host = auth.substr(0, colon);
    port = auth.substr(colon + 1);
  }
  ep.authority = std::string(host);
  for (char& c : ep.authority) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  bool default_port = port.empty() || (ep.scheme == "http" && port == "80") ||
                      (ep.scheme == "https" && port == "443");
  if (!default_port) {
    ep.authority += ':';
    ep.authority += port;
  }
  return ep;
}

bool is_v2_subresource(std::string_view name) {
  static constexpr std::string_view kSub[] = {
      "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber",
      "policy", "requestPayment", "response-cache-control", "response-content-disposition",
      "response-content-encoding", "response-content-language", "response-content-type",
      "response-expires", "tagging", "torrent", "uploadId", "uploads", "versionId",
      "versioning", "versions", "website",
  };
  return std::find(std::begin(kSub), std::end(kSub), name) != std::end(kSub);
}

bool selects_another_operation(std::string_view name) {
  static constexpr std::string_view kOps[] = {
      "accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
      "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "location", "logging",
      "metrics", "notification", "object-lock", "ownershipControls", "policy", "policyStatus",
      "publicAccessBlock", "replication", "requestPayment", "restore", "retention", "select",
      "tagging", "torrent", "uploadId", "uploads", "versioning", "versions", "website",
  };
  return std::find(std::begin(kOps), std::end(kOps), name) != std::end(kOps);
}

}  // namespace s3
