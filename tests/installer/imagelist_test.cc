// Tests of installer/imagelist.cc: a test PKI made here with the OpenSSL API (a CA, an endorser,
// an expired endorser, a second endorser, a rogue CA issuing the endorser's DN), lists signed by
// the openssl CLI exactly as vmcatcher endorsers sign them, and the refusals; hostile JSON, dates
// and the diff as tables.
#include "installer/imagelist.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>

namespace installer {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

using PkeyPtr = std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)>;
using X509Ptr = std::unique_ptr<X509, void (*)(X509*)>;

struct Party {
  PkeyPtr key{nullptr, &EVP_PKEY_free};
  X509Ptr cert{nullptr, &X509_free};
  std::string key_path, cert_path;
};

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  std::unique_ptr<X509_EXTENSION, void (*)(X509_EXTENSION*)> ext(
      X509V3_EXT_conf_nid(nullptr, &ctx, nid, value), &X509_EXTENSION_free);
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    throw std::runtime_error("extension");
  }
}

// A certificate for C=XX/O=org/CN=cn, valid from now+from_days to now+to_days, issued by
// `issuer` (self-signed when null), written as PEM files in `dir`.
Party make_party(const fs::path& dir, const std::string& file, const std::string& org,
                 const std::string& cn, const Party* issuer, bool ca, long from_days,
                 long to_days) {
  static long serial = 1;
  Party p;
  p.key.reset(EVP_RSA_gen(2048));
  p.cert.reset(X509_new());
  X509* x = p.cert.get();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
  X509_gmtime_adj(X509_getm_notBefore(x), from_days * 86400);
  X509_gmtime_adj(X509_getm_notAfter(x), to_days * 86400);
  X509_set_pubkey(x, p.key.get());
  X509_NAME* n = X509_get_subject_name(x);
  for (auto [field, value] : {std::pair{"C", std::string("XX")}, {"O", org}, {"CN", cn}}) {
    X509_NAME_add_entry_by_txt(n, field, MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(value.c_str()), -1, -1, 0);
  }
  X509* issuer_cert = issuer ? issuer->cert.get() : x;
  X509_set_issuer_name(x, X509_get_subject_name(issuer_cert));
  add_ext(x, issuer_cert, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
  add_ext(x, issuer_cert, NID_key_usage,
          ca ? "critical,keyCertSign,cRLSign" : "critical,digitalSignature");
  add_ext(x, issuer_cert, NID_subject_key_identifier, "hash");
  X509_sign(x, issuer ? issuer->key.get() : p.key.get(), EVP_sha256());
  p.key_path = (dir.parent_path() / "keys" / (file + "-key.pem")).string();  // never in a CA dir
  p.cert_path = (dir / (file + ".pem")).string();
  std::unique_ptr<FILE, int (*)(FILE*)> kf(std::fopen(p.key_path.c_str(), "w"), &std::fclose);
  std::unique_ptr<FILE, int (*)(FILE*)> cf(std::fopen(p.cert_path.c_str(), "w"), &std::fclose);
  if (!kf || !cf ||
      PEM_write_PrivateKey(kf.get(), p.key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_X509(cf.get(), x) != 1) {
    throw std::runtime_error("writing PEM files failed");
  }
  return p;
}

constexpr const char* kSha =
    "8b4c269a60da1061b434b696c4a89293bea847b66bd8ba486a914d4209df6511"
    "93ee8d454f8231840b7500fab6740620c7111d9a17d08b743133dc393ba2c0d4";
constexpr const char* kEndorserDn = "/C=XX/O=Tusk Test/CN=Endorser";
constexpr const char* kCaDn = "/C=XX/O=Tusk Test/CN=Tusk Test CA";

std::string list_json(const std::string& dn = kEndorserDn,
                      const std::string& expires = "2099-01-01T00:00:00Z") {
  return R"({"hv:imagelist": {
  "dc:identifier": "4e186b44-2c64-40ea-97d5-e9e5c0bce059",
  "dc:title": "tusk test list",
  "hv:version": "3",
  "dc:date:created": "2020-01-01T00:00:00Z",
  "dc:date:expires": ")" +
         expires + R"(",
  "hv:endorser": {"hv:x509": {"hv:dn": ")" +
         dn + R"(", "hv:ca": ")" + kCaDn + R"(", "hv:email": "e@example.org"}},
  "hv:images": [
    {"hv:image": {"dc:identifier": "img-a", "dc:title": "A", "hv:uri": "http://h/img-a.raw",
      "hv:size": 1048576, "sl:checksum:sha512": ")" +
         kSha + R"(", "hv:format": "RAW", "sl:arch": "x86_64", "hv:ram_minimum": "512"}},
    {"hv:image": {"dc:identifier": "img-b", "hv:uri": "https://h/img-b.qcow2",
      "hv:size": "2147483648", "sl:checksum:sha512": ")" +
         std::string(128, 'A') + R"(", "hv:format": "qcow2", "hv:version": "1.2"}}
  ]}})";
}

class ImageListSigned : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new fs::path(fs::temp_directory_path() / ("tusk-imagelist-" + std::to_string(::getpid())));
    fs::create_directories(*dir_ / "ca");
    fs::create_directories(*dir_ / "cahash");
    fs::create_directories(*dir_ / "rogue-ca");
    fs::create_directories(*dir_ / "keys");
    fs::path k = *dir_ / "keys";
    ca_ = new Party(
        make_party(*dir_ / "ca", "ca", "Tusk Test", "Tusk Test CA", nullptr, true, -10, 3650));
    rogue_ca_ = new Party(
        make_party(*dir_ / "rogue-ca", "rogue", "Rogue", "Rogue CA", nullptr, true, -10, 3650));
    endorser_ = new Party(make_party(k, "endorser", "Tusk Test", "Endorser", ca_, false, -1, 365));
    expired_ = new Party(make_party(k, "expired", "Tusk Test", "Endorser", ca_, false, -30, -1));
    other_ = new Party(make_party(k, "other", "Tusk Test", "Someone Else", ca_, false, -1, 365));
    rogue_ = new Party(make_party(k, "rogue", "Tusk Test", "Endorser", rogue_ca_, false, -1, 365));
    // The same CA under its c_rehash name, nothing else in that directory.
    char hash[16];
    std::snprintf(hash, sizeof hash, "%08lx.0", X509_subject_name_hash(ca_->cert.get()));
    fs::copy_file(ca_->cert_path, *dir_ / "cahash" / hash);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    for (Party* p : {ca_, rogue_ca_, endorser_, expired_, other_, rogue_}) {
      delete p;
    }
    delete dir_;
  }

  // `openssl smime -sign`, the way endorsers sign lists; `extra` adds options (-nodetach, -text).
  static std::string sign(const std::string& content, const Party& signer,
                          const std::string& extra = "") {
    fs::path in = *dir_ / "in.json", out = *dir_ / "out.smime";
    spit(in, content);
    std::string cmd = "openssl smime -sign -in " + in.string() + " -signer " + signer.cert_path +
                      " -inkey " + signer.key_path + " -out " + out.string() + " " + extra;
    if (std::system(cmd.c_str()) != 0) {
      throw std::runtime_error("failed: " + cmd);
    }
    return slurp(out);
  }

  static VerifyOptions opts(const std::string& ca = "ca", const std::string& dn = kEndorserDn) {
    return VerifyOptions{(*dir_ / ca).string(), dn, static_cast<std::int64_t>(std::time(nullptr))};
  }

  static inline fs::path* dir_;
  static inline Party *ca_, *rogue_ca_, *endorser_, *expired_, *other_, *rogue_;
};

TEST_F(ImageListSigned, GoodListAcceptedWithItsImages) {
  std::string msg = sign(list_json(), *endorser_);
  ASSERT_NE(msg.find("multipart/signed"), std::string::npos);
  for (const char* ca : {"ca", "cahash"}) {
    auto list = load_endorsed_list(msg, opts(ca));
    ASSERT_TRUE(list) << ca << ": " << list.error().message;
    EXPECT_EQ(list->identifier, "4e186b44-2c64-40ea-97d5-e9e5c0bce059");
    EXPECT_EQ(list->endorser_dn, kEndorserDn);
    ASSERT_EQ(list->images.size(), 2u);
    EXPECT_EQ(list->images[0].identifier, "img-a");
    EXPECT_EQ(list->images[0].uri, "http://h/img-a.raw");
    EXPECT_EQ(list->images[0].size, 1048576u);
    EXPECT_EQ(list->images[0].sha512, kSha);
    EXPECT_EQ(list->images[0].format, "raw");
    EXPECT_EQ(list->images[0].arch, "x86_64");
    EXPECT_EQ(list->images[1].identifier, "img-b");
    EXPECT_EQ(list->images[1].size, 2147483648u);
    EXPECT_EQ(list->images[1].sha512, std::string(128, 'a'));
    EXPECT_EQ(list->images[1].format, "qcow2");
    EXPECT_EQ(list->images[1].version, "1.2");
  }
  auto signed_content = verify_signed_list(msg, opts());
  ASSERT_TRUE(signed_content);
  EXPECT_EQ(signed_content->signer_dn, kEndorserDn);
  EXPECT_EQ(signed_content->signer_dn_rfc2253, "CN=Endorser,O=Tusk Test,C=XX");
  EXPECT_EQ(signed_content->issuer_dn, kCaDn);
  // The endorser DN may be given in RFC 2253 form too.
  EXPECT_TRUE(verify_signed_list(msg, opts("ca", "CN=Endorser,O=Tusk Test,C=XX")));
}

TEST_F(ImageListSigned, OpaqueAndTextFormsAccepted) {
  for (const char* extra :
       {"-nodetach", "-text", "-outform PEM -nodetach", "-outform DER -nodetach"}) {
    std::string msg = sign(list_json(), *endorser_, extra);
    auto list = load_endorsed_list(msg, opts());
    ASSERT_TRUE(list) << extra << ": " << list.error().message;
    EXPECT_EQ(list->images.size(), 2u) << extra;
  }
  // A bare detached signature carries no content to verify.
  auto r = load_endorsed_list(sign(list_json(), *endorser_, "-outform PEM"), opts());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kFormat);
  EXPECT_NE(r.error().message.find("detached signature without"), std::string::npos);
}

TEST_F(ImageListSigned, TamperedContentRefused) {
  std::string msg = sign(list_json(), *endorser_);
  auto at = msg.find("img-a.raw");
  ASSERT_NE(at, std::string::npos);
  msg[at + 4] = 'b';  // img-b.raw: same length, other URL
  auto r = load_endorsed_list(msg, opts());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCrypto);
  EXPECT_NE(r.error().message.find("bad signature"), std::string::npos) << r.error().message;
}

TEST_F(ImageListSigned, SignerNotChainedToTheCaDirRefused) {
  // The endorser's DN, but issued by a CA outside the directory.
  auto r = load_endorsed_list(sign(list_json(), *rogue_), opts());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCrypto);
  EXPECT_NE(r.error().message.find("not chained to a CA"), std::string::npos) << r.error().message;
  // The real endorser checked against the wrong CA directory.
  r = load_endorsed_list(sign(list_json(), *endorser_), opts("rogue-ca"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not chained to a CA"), std::string::npos) << r.error().message;
}

TEST_F(ImageListSigned, ExpiredSignerRefused) {
  auto r = load_endorsed_list(sign(list_json(), *expired_), opts());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCrypto);
  EXPECT_NE(r.error().message.find("signer certificate \"/C=XX/O=Tusk Test/CN=Endorser\" expired"),
            std::string::npos)
      << r.error().message;
}

TEST_F(ImageListSigned, WrongEndorserRefused) {
  // Signed by a trusted party who is not the subscribed endorser.
  std::string msg = sign(list_json(), *other_);
  auto r = load_endorsed_list(msg, opts());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnsafe);
  EXPECT_NE(r.error().message.find("not by the endorser"), std::string::npos) << r.error().message;
  // No endorser given: the list's own hv:dn must still be its signer.
  r = load_endorsed_list(msg, opts("ca", ""));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnsafe);
  EXPECT_NE(r.error().message.find("(hv:dn) but was signed by \"/C=XX/O=Tusk Test/CN=Someone"),
            std::string::npos)
      << r.error().message;
  // ... and with that list naming its real signer, it passes.
  EXPECT_TRUE(load_endorsed_list(sign(list_json("/C=XX/O=Tusk Test/CN=Someone Else"), *other_),
                                 opts("ca", "")));
}

TEST_F(ImageListSigned, ExpiredListRefused) {
  auto r =
      load_endorsed_list(sign(list_json(kEndorserDn, "2021-01-01T00:00:00Z"), *endorser_), opts());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kUnsafe);
  EXPECT_NE(r.error().message.find("expired at 2021-01-01T00:00:00Z"), std::string::npos)
      << r.error().message;
}

TEST_F(ImageListSigned, UnsignedRefused) {
  auto r = load_endorsed_list(list_json(), opts());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kCrypto);
  EXPECT_NE(r.error().message.find("unsigned"), std::string::npos) << r.error().message;
  // A CMS message of type data (no SignedData at all).
  fs::path in = *dir_ / "plain.json", out = *dir_ / "plain.smime";
  spit(in, list_json());
  std::string cmd = "openssl cms -data_create -in " + in.string() + " -out " + out.string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  r = load_endorsed_list(slurp(out), opts());
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("unsigned"), std::string::npos) << r.error().message;
  // Garbage with MIME headers.
  r = load_endorsed_list("MIME-Version: 1.0\nContent-Type: text/plain\n\nhello\n", opts());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::kFormat);
}

TEST_F(ImageListSigned, CaDirectoryProblems) {
  std::string msg = sign(list_json(), *endorser_);
  fs::create_directories(*dir_ / "empty");
  for (const char* ca : {"empty", "missing"}) {
    auto r = verify_signed_list(msg, opts(ca));
    ASSERT_FALSE(r) << ca;
    EXPECT_EQ(r.error().code, Errc::kIo) << ca;
  }
}

// --- pure parts ---------------------------------------------------------------------------

TEST(ImageList, DatesStrict) {
  struct {
    const char* text;
    std::int64_t want;  // -1: refused
  } cases[] = {
      {"1970-01-01T00:00:00Z", 0},
      {"2011-03-10T17:09:12Z", 1299776952},
      {"2011-03-10t17:09:12z", 1299776952},
      {"2011-03-10T18:09:12+01:00", 1299776952},
      {"2011-03-10T16:39:12-00:30", 1299776952},
      {"2011-03-10T17:09:12.123456Z", 1299776952},
      {"2024-02-29T00:00:00Z", 1709164800},
      {"2016-12-31T23:59:60Z", 1483228799},
      {"2023-02-29T00:00:00Z", -1},
      {"2011-13-10T17:09:12Z", -1},
      {"2011-03-10T24:00:00Z", -1},
      {"2011-03-10T17:09:12", -1},
      {"2011-03-10 17:09:12Z", -1},
      {"2011-03-10T17:09:12+0100", -1},
      {"2011-03-10T17:09:12.Z", -1},
      {"2011-3-10T17:09:12Z", -1},
      {"2011-03-10T17:09:12Zjunk", -1},
      {"", -1},
  };
  for (const auto& c : cases) {
    auto t = parse_rfc3339(c.text);
    if (c.want < 0) {
      EXPECT_FALSE(t) << c.text;
    } else {
      ASSERT_TRUE(t) << c.text << ": " << t.error().message;
      EXPECT_EQ(*t, c.want) << c.text;
    }
  }
}

TEST(ImageList, HostileJsonRefusedWithClearErrors) {
  const std::string good = list_json();
  ASSERT_TRUE(parse_image_list(good));
  auto edit = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    auto at = s.find(from);
    if (at == std::string::npos) {
      throw std::runtime_error("no " + from);
    }
    return s.replace(at, from.size(), to);
  };
  std::string many = R"({"hv:imagelist": {"dc:identifier": "x", "hv:version": "1",
    "dc:date:created": "2020-01-01T00:00:00Z", "dc:date:expires": "2099-01-01T00:00:00Z",
    "hv:endorser": {"hv:x509": {"hv:dn": "/CN=a", "hv:ca": "/CN=b"}}, "hv:images": [)";
  for (int i = 0; i <= 10000; ++i) {
    many += std::string(i ? "," : "") + "{}";
  }
  many += "]}}";
  struct {
    std::string json;
    std::string want;  // a substring of the message
  } cases[] = {
      {"{", "not JSON"},
      {"[]", "top level is not an object"},
      {R"({"hv:imagelist": []})", "\"hv:imagelist\" missing or not an object"},
      {edit(R"("dc:identifier": "4e186b44-2c64-40ea-97d5-e9e5c0bce059",)", ""),
       "\"dc:identifier\" missing"},
      {edit(R"("hv:version": "3")", R"("hv:version": 3)"), "\"hv:version\" is not a string"},
      {edit(R"("hv:dn": ")", R"("hv:dnx": ")"), "\"hv:x509\": \"hv:dn\" missing"},
      {edit(R"("hv:images": [)", R"("hv:images": {"a": [)") + "}",
       "\"hv:images\" missing or not an array"},
      {edit(R"("hv:images": [)", R"("hv:imagez": [)"), "\"hv:images\" missing or not an array"},
      {edit("2020-01-01T00:00:00Z", "2020-01-01"), "\"dc:date:created\": \"2020-01-01\" is not"},
      {edit("2099-01-01T00:00:00Z", "2019-01-01T00:00:00Z"), "expires\" is before"},
      {edit("2099-01-01T00:00:00Z", "2099-02-30T00:00:00Z"), "no such day"},
      {edit(R"("dc:identifier": "img-b")", R"("dc:identifier": "img-a")"),
       "hv:images[1]: duplicate \"dc:identifier\" \"img-a\""},
      {edit(R"("dc:identifier": "img-b")", R"("dc:identifier": "../etc")"),
       "hv:images[1]: \"dc:identifier\" holds a character"},
      {edit(R"("dc:identifier": "img-b",)", ""), "hv:images[1]: \"dc:identifier\" missing"},
      {edit(R"("hv:size": 1048576)", R"("hv:size": -1)"), "hv:images[0]: \"hv:size\" is not"},
      {edit(R"("hv:size": 1048576)", R"("hv:size": 1.5)"), "hv:images[0]: \"hv:size\" is not"},
      {edit(R"("hv:size": 1048576)", R"("hv:size": "12a")"), "hv:images[0]: \"hv:size\" is not"},
      {edit(R"("hv:size": 1048576)", R"("hv:size": "99999999999999999999")"),
       "hv:images[0]: \"hv:size\" is not"},
      {edit(R"("hv:size": 1048576,)", ""), "hv:images[0]: \"hv:size\" missing"},
      {edit(kSha, std::string(127, 'a')), "hv:images[0]: \"sl:checksum:sha512\" is not 128 hex"},
      {edit(kSha, std::string(127, 'a') + "g"), "\"sl:checksum:sha512\" is not 128 hex"},
      {edit(kSha, std::string(300, 'a')), "\"sl:checksum:sha512\" longer than 256"},
      {edit("http://h/img-a.raw", "file:///etc/passwd"), "hv:images[0]: \"hv:uri\" is not an"},
      {edit(R"("hv:format": "RAW")", R"("hv:format": "raw; rm")"), "\"hv:format\" is not a"},
      {edit(R"("dc:title": "A")", R"("dc:title": ")" + std::string(5000, 'x') + "\""),
       "hv:images[0]: \"dc:title\" longer than 4096"},
      {edit(R"("dc:title": "A")", R"("dc:title": ["A"])"),
       "hv:images[0]: \"dc:title\" is not a string"},
      {edit(R"({"hv:image": {"dc:identifier": "img-a")",
            R"({"hv:imag": {"dc:identifier": "img-a")"),
       "hv:images[0]: not {\"hv:image\""},
      {edit(R"("hv:ram_minimum": "512")",
            R"("deep": )" + std::string(20, '[') + std::string(20, ']')),
       "nested deeper than 16"},
      {many, "more than 10000 images"},
      {std::string(kMaxImageListBytes + 1, ' '), "larger than 16777216 bytes"},
  };
  for (const auto& c : cases) {
    auto r = parse_image_list(c.json);
    ASSERT_FALSE(r) << c.want;
    EXPECT_EQ(r.error().code, Errc::kFormat) << c.want;
    EXPECT_NE(r.error().message.find(c.want), std::string::npos)
        << "want \"" << c.want << "\" in: " << r.error().message;
  }
}

TEST(ImageList, CheckAgainstSignerAndTime) {
  auto list = parse_image_list(list_json());
  ASSERT_TRUE(list);
  SignedContent s{"", kEndorserDn, "CN=Endorser,O=Tusk Test,C=XX", kCaDn,
                  "CN=Tusk Test CA,O=Tusk Test,C=XX"};
  std::int64_t expires = list->expires;
  EXPECT_TRUE(check_image_list(*list, s, expires - 1));
  auto r = check_image_list(*list, s, expires);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("expired at 2099-01-01T00:00:00Z"), std::string::npos);
  SignedContent wrong_issuer = s;
  wrong_issuer.issuer_dn = "/C=XX/O=Rogue/CN=Rogue CA";
  wrong_issuer.issuer_dn_rfc2253 = "CN=Rogue CA,O=Rogue,C=XX";
  r = check_image_list(*list, wrong_issuer, 0);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("(hv:ca)"), std::string::npos) << r.error().message;
}

TEST(ImageList, DnMatches) {
  struct {
    const char* expected;
    bool want;
  } cases[] = {
      {"/C=XX/O=Tusk Test/CN=Endorser", true},  {"CN=Endorser,O=Tusk Test,C=XX", true},
      {"/C=XX/O=Tusk Test/CN=endorser", false}, {"/C=XX/O=Tusk Test", false},
      {"C=XX,O=Tusk Test,CN=Endorser", false},  {"", false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(dn_matches(c.expected, kEndorserDn, "CN=Endorser,O=Tusk Test,C=XX"), c.want)
        << c.expected;
  }
}

TEST(ImageList, Diff) {
  auto img = [](const char* id, const char* sha, std::uint64_t size, const char* uri) {
    ImageListImage i;
    i.identifier = id;
    i.sha512 = sha;
    i.size = size;
    i.uri = uri;
    i.title = "t";
    return i;
  };
  using K = ImageChange::Kind;
  struct {
    const char* name;
    std::map<std::string, ImageState> previous;
    std::vector<ImageListImage> images;
    std::vector<std::pair<std::string, K>> changed;
    std::vector<std::string> removed;
  } cases[] = {
      {"first sync: all new, list order",
       {},
       {img("b", "1", 1, "u"), img("a", "2", 2, "u")},
       {{"b", K::kNew}, {"a", K::kNew}},
       {}},
      {"nothing changed", {{"a", {"1", 1, "u"}}}, {img("a", "1", 1, "u")}, {}, {}},
      {"checksum changed",
       {{"a", {"0", 1, "u"}}},
       {img("a", "1", 1, "u")},
       {{"a", K::kChanged}},
       {}},
      {"size changed", {{"a", {"1", 9, "u"}}}, {img("a", "1", 1, "u")}, {{"a", K::kChanged}}, {}},
      {"uri changed", {{"a", {"1", 1, "v"}}}, {img("a", "1", 1, "u")}, {{"a", K::kChanged}}, {}},
      {"removed, sorted",
       {{"z", {"1", 1, "u"}}, {"a", {"1", 1, "u"}}, {"m", {"1", 1, "u"}}},
       {img("m", "1", 1, "u"), img("n", "1", 1, "u")},
       {{"n", K::kNew}},
       {"a", "z"}},
      {"one of three changed",
       {{"a", {"1", 1, "u"}}, {"b", {"1", 1, "u"}}, {"c", {"1", 1, "u"}}},
       {img("a", "1", 1, "u"), img("b", "2", 1, "u"), img("c", "1", 1, "u")},
       {{"b", K::kChanged}},
       {}},
  };
  for (const auto& c : cases) {
    ImageList list;
    list.images = c.images;
    auto d = diff_image_list(c.previous, list);
    std::vector<std::pair<std::string, K>> got;
    for (const auto& ch : d.changed) {
      got.emplace_back(ch.image.identifier, ch.kind);
    }
    EXPECT_EQ(got, c.changed) << c.name;
    EXPECT_EQ(d.removed, c.removed) << c.name;
  }
}

}  // namespace
}  // namespace installer
