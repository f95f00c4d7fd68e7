// Endorsed image lists: strict JSON reading, CMS verification, checks and the diff. Tricky: the
// signature is checked first (CMS_verify without the chain), then the signer's chain on its own
// X509_STORE_CTX at the caller's `now`, so that each refusal (tampered, untrusted, expired) gets
// its own message instead of OpenSSL's one "certificate verify error".
#include "installer/imagelist.h"

#include "installer/ssl.h"

// pem.h before cms.h: cms.h declares PEM_read_bio_CMS only when pem.h came first.
// clang-format off
#include <openssl/pem.h>
#include <openssl/cms.h>
// clang-format on
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <time.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

namespace installer {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// --- OpenSSL handle owners ----------------------------------------------------------------

struct CmsFree {
  void operator()(CMS_ContentInfo* p) const { CMS_ContentInfo_free(p); }
};
struct StoreFree {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};
// A stack that owns its certificates (CMS_get1_certs).
struct CertStackFree {
  void operator()(STACK_OF(X509) * p) const { sk_X509_pop_free(p, X509_free); }
};
// A stack that borrows its certificates (CMS_get0_signers).
struct BorrowedStackFree {
  void operator()(STACK_OF(X509) * p) const { sk_X509_free(p); }
};
struct OpensslStringFree {
  void operator()(char* p) const { OPENSSL_free(p); }
};
using CmsPtr = std::unique_ptr<CMS_ContentInfo, CmsFree>;
using StorePtr = std::unique_ptr<X509_STORE, StoreFree>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, StoreCtxFree>;
using CertStackPtr = std::unique_ptr<STACK_OF(X509), CertStackFree>;
using BorrowedStackPtr = std::unique_ptr<STACK_OF(X509), BorrowedStackFree>;

std::string bio_text(BIO* b) {
  char* data = nullptr;
  long n = BIO_get_mem_data(b, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

std::string dn_oneline(const X509_NAME* name) {
  std::unique_ptr<char, OpensslStringFree> s(X509_NAME_oneline(name, nullptr, 0));
  return s ? std::string(s.get()) : std::string();
}

std::string dn_rfc2253(const X509_NAME* name) {
  BioPtr b(BIO_new(BIO_s_mem()));
  if (!b || X509_NAME_print_ex(b.get(), name, 0, XN_FLAG_RFC2253) < 0) {
    return {};
  }
  return bio_text(b.get());
}

// --- JSON fields ---------------------------------------------------------------------------

// Deepest nesting of objects and arrays, counted without parsing (strings skipped).
bool depth_within(std::string_view s, int max) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : s) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      if (++depth > max) {
        return false;
      }
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return true;
}

// Reads obj[key] as a bounded string. Returns "" or what is wrong, naming the key.
std::string get_string(const json& obj, const char* key, bool required, std::string& out,
                       std::size_t max = kMaxFieldBytes) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    return required ? std::string("\"") + key + "\" missing" : std::string();
  }
  if (!it->is_string()) {
    return std::string("\"") + key + "\" is not a string";
  }
  const auto& s = it->get_ref<const std::string&>();
  if (s.size() > max) {
    return std::string("\"") + key + "\" longer than " + std::to_string(max) + " bytes";
  }
  if (required && s.empty()) {
    return std::string("\"") + key + "\" is empty";
  }
  out = s;
  return {};
}

std::string get_size(const json& obj, std::uint64_t& out) {
  auto it = obj.find("hv:size");
  if (it == obj.end() || it->is_null()) {
    return "\"hv:size\" missing";
  }
  if (it->is_number_unsigned()) {
    out = it->get<std::uint64_t>();
    return {};
  }
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    bool digits = !s.empty() && s.size() <= 20 &&
                  std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (digits) {
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
      if (ec == std::errc() && end == s.data() + s.size()) {
        return {};
      }
    }
    return "\"hv:size\" is not a non-negative integer: \"" + s.substr(0, 40) + "\"";
  }
  return "\"hv:size\" is not a non-negative integer";
}

std::string get_date(const json& obj, const char* key, std::int64_t& out) {
  std::string text;
  if (auto e = get_string(obj, key, true, text, 64); !e.empty()) {
    return e;
  }
  auto t = parse_rfc3339(text);
  if (!t) {
    return std::string("\"") + key + "\": " + t.error().message;
  }
  out = *t;
  return {};
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) {
    return false;
  }
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (lower(s[i]) != lower(prefix[i])) {
      return false;
    }
  }
  return true;
}

// Returns "" or what is wrong with image `img`.
std::string read_image(const json& img, ImageListImage& out) {
  if (auto e = get_string(img, "dc:identifier", true, out.identifier, kMaxIdentifierBytes);
      !e.empty()) {
    return e;
  }
  for (char c : out.identifier) {
    if (c <= ' ' || c > '~' || c == '/') {
      return "\"dc:identifier\" holds a character other than printable ASCII (no space, no '/')";
    }
  }
  if (auto e = get_string(img, "hv:uri", true, out.uri); !e.empty()) {
    return e;
  }
  if (!starts_with_nocase(out.uri, "http://") && !starts_with_nocase(out.uri, "https://")) {
    return "\"hv:uri\" is not an http:// or https:// URL";
  }
  if (auto e = get_size(img, out.size); !e.empty()) {
    return e;
  }
  if (auto e = get_string(img, "sl:checksum:sha512", true, out.sha512, 256); !e.empty()) {
    return e;
  }
  if (out.sha512.size() != 128 || !std::all_of(out.sha512.begin(), out.sha512.end(), is_hex)) {
    return "\"sl:checksum:sha512\" is not 128 hex digits";
  }
  std::transform(out.sha512.begin(), out.sha512.end(), out.sha512.begin(), lower);
  struct {
    const char* key;
    std::string* field;
  } optional[] = {
      {"dc:title", &out.title},         {"dc:description", &out.description},
      {"hv:format", &out.format},       {"hv:version", &out.version},
      {"sl:arch", &out.arch},           {"sl:os", &out.os},
      {"sl:osversion", &out.osversion}, {"hv:hypervisor", &out.hypervisor},
      {"sl:comments", &out.comments},
  };
  for (const auto& f : optional) {
    if (auto e = get_string(img, f.key, false, *f.field); !e.empty()) {
      return e;
    }
  }
  std::transform(out.format.begin(), out.format.end(), out.format.begin(), lower);
  bool format_ok =
      out.format.size() <= 16 && std::all_of(out.format.begin(), out.format.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
      });
  if (!format_ok) {
    return "\"hv:format\" is not a format name ([a-z0-9]{1,16})";
  }
  return {};
}

// --- dates --------------------------------------------------------------------------------

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

std::string format_utc(std::int64_t t) {
  time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  char buf[32];
  if (!gmtime_r(&tt, &tm) || std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
    return std::to_string(t);
  }
  return buf;
}

// --- the CA directory ----------------------------------------------------------------------

// c_rehash names: 8 hex digits, '.', a decimal suffix (HASH.0, HASH.1 ...).
bool is_hashed_name(const std::string& name) {
  if (name.size() < 10 || name[8] != '.') {
    return false;
  }
  return std::all_of(name.begin(), name.begin() + 8, is_hex) &&
         std::all_of(name.begin() + 9, name.end(), [](char c) { return c >= '0' && c <= '9'; });
}

Result<StorePtr> load_ca_dir(const std::string& dir) {
  std::error_code ec;
  if (dir.empty() || !fs::is_directory(dir, ec)) {
    return fail(Errc::kIo, "CA directory \"" + dir + "\" is not a directory");
  }
  StorePtr store(X509_STORE_new());
  X509_LOOKUP* lookup =
      store ? X509_STORE_add_lookup(store.get(), X509_LOOKUP_hash_dir()) : nullptr;
  if (!lookup || X509_LOOKUP_add_dir(lookup, dir.c_str(), X509_FILETYPE_PEM) != 1) {
    return fail(Errc::kCrypto, "CA directory " + dir + ": " + ssl_error());
  }
  int found = 0;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (is_hashed_name(name)) {
      ++found;  // looked up by subject hash when needed
      continue;
    }
    auto ext = it->path().extension();
    if ((ext == ".pem" || ext == ".crt") && it->is_regular_file(ec)) {
      std::string path = it->path().string();
      if (X509_STORE_load_file(store.get(), path.c_str()) != 1) {
        return fail(Errc::kCrypto, "CA file " + path + " is not a PEM certificate: " + ssl_error());
      }
      ++found;
    }
  }
  if (ec) {
    return fail(Errc::kIo, "CA directory " + dir + ": " + ec.message());
  }
  if (found == 0) {
    return fail(Errc::kIo,
                "CA directory " + dir + " holds no certificate (no HASH.0 name, no *.pem / *.crt)");
  }
  return store;
}

// `openssl smime -sign -text` signs "Content-Type: text/plain" headers with the content; drop
// them so the JSON is what remains.
std::string strip_text_headers(std::string content) {
  if (!starts_with_nocase(content, "content-type: text/plain")) {
    return content;
  }
  for (std::string_view sep : {"\r\n\r\n", "\n\n"}) {
    auto at = content.find(sep);
    if (at != std::string::npos) {
      return content.substr(at + sep.size());
    }
  }
  return content;
}

std::string_view skip_space(std::string_view s) {
  while (!s.empty() &&
         (s.front() == ' ' || s.front() == '\t' || s.front() == '\r' || s.front() == '\n')) {
    s.remove_prefix(1);
  }
  return s;
}

Result<CmsPtr> read_cms(std::string_view message, BioPtr& detached_content) {
  std::string_view head = skip_space(message);
  if (!head.empty() && (head.front() == '{' || head.front() == '[')) {
    return fail(Errc::kCrypto, "unsigned: the list is plain JSON, not an S/MIME signed message");
  }
  BioPtr in(BIO_new_mem_buf(message.data(), static_cast<int>(message.size())));
  if (!in) {
    return fail(Errc::kCrypto, "cannot read the message: " + ssl_error());
  }
  CmsPtr cms;
  if (head.substr(0, 10) == "-----BEGIN") {
    cms.reset(PEM_read_bio_CMS(in.get(), nullptr, nullptr, nullptr));
  } else if (!message.empty() && static_cast<unsigned char>(message.front()) == 0x30) {
    cms.reset(d2i_CMS_bio(in.get(), nullptr));
  } else {
    BIO* content = nullptr;
    cms.reset(SMIME_read_CMS(in.get(), &content));
    detached_content.reset(content);
  }
  if (!cms) {
    return fail(Errc::kFormat,
                "not an S/MIME (multipart/signed or application/pkcs7-mime) or CMS message: " +
                    ssl_error());
  }
  return cms;
}

std::string chain_error(X509_STORE_CTX* ctx, const std::string& signer, const std::string& dir) {
  int err = X509_STORE_CTX_get_error(ctx);
  int depth = X509_STORE_CTX_get_error_depth(ctx);
  std::string what = X509_verify_cert_error_string(err);
  std::string whose = depth == 0 ? "signer certificate \"" + signer + "\""
                                 : "a CA certificate of the signer's chain";
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED: {
      X509* cert = X509_STORE_CTX_get_current_cert(ctx);
      std::string until;
      if (cert) {
        BioPtr b(BIO_new(BIO_s_mem()));
        if (b && ASN1_TIME_print(b.get(), X509_get0_notAfter(cert)) == 1) {
          until = " (not after " + bio_text(b.get()) + ")";
        }
      }
      return whose + " expired" + until;
    }
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return whose + " is not yet valid";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return "signer \"" + signer + "\" is not chained to a CA in " + dir + " (" + what + ")";
    default:
      return whose + " refused: " + what;
  }
}

}  // namespace

// --- dates --------------------------------------------------------------------------------

Result<std::int64_t> parse_rfc3339(std::string_view s) {
  auto bad = [&](const char* why) {
    return fail(Errc::kFormat, "\"" + std::string(s.substr(0, 40)) + "\" is not an RFC 3339 " +
                                   "date-time (YYYY-MM-DDTHH:MM:SSZ or +HH:MM): " + why);
  };
  auto num = [&](std::size_t at, std::size_t n, int& out) {
    if (at + n > s.size()) {
      return false;
    }
    out = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      if (s[i] < '0' || s[i] > '9') {
        return false;
      }
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int y, mo, d, h, mi, sec;
  if (s.size() < 20 || !num(0, 4, y) || s[4] != '-' || !num(5, 2, mo) || s[7] != '-' ||
      !num(8, 2, d) || (s[10] != 'T' && s[10] != 't') || !num(11, 2, h) || s[13] != ':' ||
      !num(14, 2, mi) || s[16] != ':' || !num(17, 2, sec)) {
    return bad("wrong shape");
  }
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (mo < 1 || mo > 12 || d < 1 || d > kDays[mo - 1] + (mo == 2 && leap(y) ? 1 : 0)) {
    return bad("no such day");
  }
  if (h > 23 || mi > 59 || sec > 60) {
    return bad("no such time");
  }
  std::size_t at = 19;
  if (at < s.size() && s[at] == '.') {
    std::size_t digits = 0;
    for (++at; at < s.size() && s[at] >= '0' && s[at] <= '9'; ++at) {
      ++digits;
    }
    if (digits == 0 || digits > 9) {
      return bad("bad fraction");
    }
  }
  int offset = 0;
  if (at + 1 == s.size() && (s[at] == 'Z' || s[at] == 'z')) {
    offset = 0;
  } else if (at + 6 == s.size() && (s[at] == '+' || s[at] == '-') && s[at + 3] == ':') {
    int oh, om;
    if (!num(at + 1, 2, oh) || !num(at + 4, 2, om) || oh > 23 || om > 59) {
      return bad("bad offset");
    }
    offset = (oh * 60 + om) * 60 * (s[at] == '-' ? -1 : 1);
  } else {
    return bad("no Z or offset");
  }
  std::int64_t days = days_from_civil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  return days * 86400 + h * 3600 + mi * 60 + std::min(sec, 59) - offset;
}

// --- parse --------------------------------------------------------------------------------

Result<ImageList> parse_image_list(std::string_view text) {
  auto bad = [](std::string what) { return fail(Errc::kFormat, "image list: " + what); };
  if (text.size() > kMaxImageListBytes) {
    return bad("larger than " + std::to_string(kMaxImageListBytes) + " bytes");
  }
  if (!depth_within(text, kMaxJsonDepth)) {
    return bad("nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return bad("not JSON");
  }
  if (!doc.is_object()) {
    return bad("the top level is not an object");
  }
  auto top = doc.find("hv:imagelist");
  if (top == doc.end() || !top->is_object()) {
    return bad("\"hv:imagelist\" missing or not an object");
  }
  const json& il = *top;
  ImageList out;
  for (auto e :
       {get_string(il, "dc:identifier", true, out.identifier, kMaxIdentifierBytes),
        get_string(il, "hv:version", true, out.version),
        get_date(il, "dc:date:created", out.created), get_date(il, "dc:date:expires", out.expires),
        get_string(il, "dc:title", false, out.title),
        get_string(il, "dc:description", false, out.description),
        get_string(il, "hv:uri", false, out.uri)}) {
    if (!e.empty()) {
      return bad(e);
    }
  }
  if (out.expires < out.created) {
    return bad("\"dc:date:expires\" is before \"dc:date:created\"");
  }
  auto endorser = il.find("hv:endorser");
  if (endorser == il.end() || !endorser->is_object()) {
    return bad("\"hv:endorser\" missing or not an object");
  }
  auto x509 = endorser->find("hv:x509");
  if (x509 == endorser->end() || !x509->is_object()) {
    return bad("\"hv:endorser\".\"hv:x509\" missing or not an object");
  }
  for (auto e : {get_string(*x509, "hv:dn", true, out.endorser_dn),
                 get_string(*x509, "hv:ca", true, out.endorser_ca)}) {
    if (!e.empty()) {
      return bad("\"hv:endorser\".\"hv:x509\": " + e);
    }
  }
  auto images = il.find("hv:images");
  if (images == il.end() || !images->is_array()) {
    return bad("\"hv:images\" missing or not an array");
  }
  if (images->size() > kMaxImages) {
    return bad("more than " + std::to_string(kMaxImages) + " images");
  }
  std::set<std::string> seen;
  out.images.reserve(images->size());
  for (std::size_t i = 0; i < images->size(); ++i) {
    std::string where = "hv:images[" + std::to_string(i) + "]";
    const json& entry = (*images)[i];
    auto img = entry.is_object() ? entry.find("hv:image") : entry.end();
    if (!entry.is_object() || img == entry.end() || !img->is_object()) {
      return bad(where + ": not {\"hv:image\": {...}}");
    }
    ImageListImage image;
    if (auto e = read_image(*img, image); !e.empty()) {
      return bad(where + ": " + e);
    }
    if (!seen.insert(image.identifier).second) {
      return bad(where + ": duplicate \"dc:identifier\" \"" + image.identifier + "\"");
    }
    out.images.push_back(std::move(image));
  }
  return out;
}

// --- verify -------------------------------------------------------------------------------

bool dn_matches(std::string_view expected, std::string_view dn_oneline,
                std::string_view dn_rfc2253) {
  return !expected.empty() && (expected == dn_oneline || expected == dn_rfc2253);
}

Result<SignedContent> verify_signed_list(std::string_view message, const VerifyOptions& opts) {
  if (message.size() > kMaxSignedMessageBytes) {
    return fail(Errc::kFormat, "signed image list larger than " +
                                   std::to_string(kMaxSignedMessageBytes) + " bytes");
  }
  ERR_clear_error();
  BioPtr detached;
  auto cms = read_cms(message, detached);
  if (!cms) {
    return conf::unexpected(std::move(cms).error());
  }
  CMS_ContentInfo* c = cms->get();
  if (OBJ_obj2nid(CMS_get0_type(c)) != NID_pkcs7_signed) {
    return fail(Errc::kCrypto, "unsigned: the CMS message is not SignedData");
  }
  int signers = sk_CMS_SignerInfo_num(CMS_get0_SignerInfos(c));
  if (signers <= 0) {
    return fail(Errc::kCrypto, "unsigned: the message carries no signature");
  }
  if (signers != 1) {
    return fail(Errc::kCrypto,
                "signed by " + std::to_string(signers) + " signers; exactly one expected");
  }
  if (CMS_is_detached(c) && !detached) {
    return fail(Errc::kFormat, "detached signature without the signed content");
  }
  auto store = load_ca_dir(opts.ca_dir);
  if (!store) {
    return conf::unexpected(std::move(store).error());
  }
  // The signature over the content first; the chain below, at `now`.
  BioPtr out(BIO_new(BIO_s_mem()));
  if (!out) {
    return fail(Errc::kCrypto, "out of memory: " + ssl_error());
  }
  if (CMS_verify(c, nullptr, store->get(), detached.get(), out.get(), CMS_NO_SIGNER_CERT_VERIFY) !=
      1) {
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_CMS && ERR_GET_REASON(e) == CMS_R_SIGNER_CERTIFICATE_NOT_FOUND) {
      ERR_clear_error();
      return fail(Errc::kCrypto, "the signer's certificate is not in the message");
    }
    return fail(
        Errc::kCrypto,
        "bad signature: the content does not match its signature (tampered?): " + ssl_error());
  }
  BorrowedStackPtr signer_certs(CMS_get0_signers(c));
  X509* signer = signer_certs && sk_X509_num(signer_certs.get()) == 1
                     ? sk_X509_value(signer_certs.get(), 0)
                     : nullptr;
  if (!signer) {
    return fail(Errc::kCrypto, "the signer's certificate is not in the message");
  }
  SignedContent result;
  result.signer_dn = dn_oneline(X509_get_subject_name(signer));
  result.signer_dn_rfc2253 = dn_rfc2253(X509_get_subject_name(signer));
  result.issuer_dn = dn_oneline(X509_get_issuer_name(signer));
  result.issuer_dn_rfc2253 = dn_rfc2253(X509_get_issuer_name(signer));

  CertStackPtr chain(CMS_get1_certs(c));  // may be null: no certificates besides the signer's
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store->get(), signer, chain.get()) != 1 ||
      X509_STORE_CTX_set_default(ctx.get(), "smime_sign") != 1) {
    return fail(Errc::kCrypto, "cannot set up certificate verification: " + ssl_error());
  }
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()), static_cast<time_t>(opts.now));
  if (X509_verify_cert(ctx.get()) != 1) {
    std::string why = chain_error(ctx.get(), result.signer_dn, opts.ca_dir);
    ERR_clear_error();
    return fail(Errc::kCrypto, why);
  }
  if (!opts.endorser_dn.empty() &&
      !dn_matches(opts.endorser_dn, result.signer_dn, result.signer_dn_rfc2253)) {
    return fail(Errc::kUnsafe, "signed by \"" + result.signer_dn + "\", not by the endorser \"" +
                                   opts.endorser_dn + "\"");
  }
  std::string content = bio_text(out.get());
  if (content.size() > kMaxImageListBytes) {
    return fail(Errc::kFormat,
                "signed content larger than " + std::to_string(kMaxImageListBytes) + " bytes");
  }
  result.content = strip_text_headers(std::move(content));
  return result;
}

// --- check, load ---------------------------------------------------------------------------

Result<void> check_image_list(const ImageList& list, const SignedContent& signer,
                              std::int64_t now) {
  if (list.expires <= now) {
    return fail(Errc::kUnsafe, "image list \"" + list.identifier + "\" expired at " +
                                   format_utc(list.expires) + " (dc:date:expires)");
  }
  if (!dn_matches(list.endorser_dn, signer.signer_dn, signer.signer_dn_rfc2253)) {
    return fail(Errc::kUnsafe, "image list \"" + list.identifier + "\" names the endorser \"" +
                                   list.endorser_dn + "\" (hv:dn) but was signed by \"" +
                                   signer.signer_dn + "\"");
  }
  if (!dn_matches(list.endorser_ca, signer.issuer_dn, signer.issuer_dn_rfc2253)) {
    return fail(Errc::kUnsafe, "image list \"" + list.identifier + "\" names the CA \"" +
                                   list.endorser_ca + "\" (hv:ca) but the signer's issuer is \"" +
                                   signer.issuer_dn + "\"");
  }
  return {};
}

Result<ImageList> load_endorsed_list(std::string_view message, const VerifyOptions& opts) {
  auto signed_content = verify_signed_list(message, opts);
  if (!signed_content) {
    return conf::unexpected(std::move(signed_content).error());
  }
  auto list = parse_image_list(signed_content->content);
  if (!list) {
    return list;
  }
  if (auto ok = check_image_list(*list, *signed_content, opts.now); !ok) {
    return conf::unexpected(ok.error());
  }
  return list;
}

// --- diff ---------------------------------------------------------------------------------

ImageListDiff diff_image_list(const std::map<std::string, ImageState>& previous,
                              const ImageList& list) {
  ImageListDiff out;
  std::set<std::string_view> present;
  for (const auto& image : list.images) {
    present.insert(image.identifier);
    auto it = previous.find(image.identifier);
    if (it == previous.end()) {
      out.changed.push_back({ImageChange::Kind::kNew, image});
    } else if (it->second != ImageState{image.sha512, image.size, image.uri}) {
      out.changed.push_back({ImageChange::Kind::kChanged, image});
    }
  }
  for (const auto& [id, state] : previous) {
    if (!present.count(id)) {
      out.removed.push_back(id);
    }
  }
  return out;
}

}  // namespace installer
