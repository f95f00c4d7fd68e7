// OpenSSL 3 behind the RAII types of crypto.h. Tricky: EVP_PKEY_encrypt/decrypt need an explicit
// RSA_PKCS1_PADDING (PKCS#1 v1.5, what euca2ools and Eucalyptus use); OpenSSL's error queue is
// drained into the message so a failure says why.
#include "installer/crypto.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <zlib.h>

#include <cstdio>
#include <fstream>
#include <vector>

#include "installer/ssl.h"

namespace installer {
namespace {

struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* c) const { EVP_PKEY_CTX_free(c); }
};
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree>;

Result<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(Errc::kIo, "cannot read " + path);
  }
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() > (1u << 20)) {
    return fail(Errc::kCrypto, path + ": too large for a PEM key or certificate");
  }
  return data;
}

const EVP_MD* md_of(Digest::Algo a) {
  switch (a) {
    case Digest::Algo::kMd5:
      return EVP_md5();
    case Digest::Algo::kSha1:
      return EVP_sha1();
    case Digest::Algo::kSha256:
      return EVP_sha256();
    case Digest::Algo::kSha512:
      return EVP_sha512();
  }
  return EVP_sha1();
}

}  // namespace

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

Result<std::string> from_hex(std::string_view hex) {
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (hex.size() % 2 != 0) {
    return fail(Errc::kFormat, "hex string of odd length");
  }
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    int hi = val(hex[i]);
    int lo = val(hex[i + 1]);
    if (hi < 0 || lo < 0) {
      return fail(Errc::kFormat, "not a hex string");
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

// --- Digest -------------------------------------------------------------------------------

void Digest::Free::operator()(evp_md_ctx_st* p) const { EVP_MD_CTX_free(p); }

Digest::Digest(Algo algo) : ctx_(EVP_MD_CTX_new()) {
  // Allocation or init failure of a built-in digest is not a recoverable input error.
  if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), md_of(algo), nullptr) != 1) {
    std::fprintf(stderr, "fatal: OpenSSL digest init failed: %s\n", ssl_error().c_str());
    std::abort();
  }
}
Digest::Digest(Digest&&) noexcept = default;
Digest& Digest::operator=(Digest&&) noexcept = default;
Digest::~Digest() = default;

void Digest::update(const void* data, std::size_t n) {
  if (n > 0) {
    EVP_DigestUpdate(ctx_.get(), data, n);
  }
}

std::string Digest::final_hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_.get(), md, &len);
  return to_hex(std::string_view(reinterpret_cast<char*>(md), len));
}

std::string sha1_hex(std::string_view data) {
  Digest d(Digest::Algo::kSha1);
  d.update(data);
  return d.final_hex();
}

std::string md5_hex(std::string_view data) {
  Digest d(Digest::Algo::kMd5);
  d.update(data);
  return d.final_hex();
}

std::string eustore_name_from_md5(std::string_view md5) {
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32(crc, reinterpret_cast<const Bytef*>(md5.data()), static_cast<uInt>(md5.size()));
  char buf[16];
  std::snprintf(buf, sizeof buf, "%010lu", static_cast<unsigned long>(crc & 0xffffffffUL));
  return buf;
}

Result<std::string> file_digest_hex(const std::string& path, Digest::Algo algo) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    return fail(Errc::kIo, "cannot read " + path);
  }
  Digest d(algo);
  std::vector<char> buf(1 << 20);
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), f.get())) {
    d.update(buf.data(), n);
  }
  if (std::ferror(f.get())) {
    return fail(Errc::kIo, "read error on " + path);
  }
  return d.final_hex();
}

Result<std::string> eustore_name_of_file(const std::string& path) {
  auto md5 = file_digest_hex(path, Digest::Algo::kMd5);
  if (!md5) {
    return conf::unexpected(md5.error());
  }
  return eustore_name_from_md5(*md5);
}

Result<std::string> random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return fail(Errc::kCrypto, "RAND_bytes failed: " + ssl_error());
  }
  return out;
}

// --- AesCbc -------------------------------------------------------------------------------

void AesCbc::Free::operator()(evp_cipher_ctx_st* p) const { EVP_CIPHER_CTX_free(p); }

Result<AesCbc> AesCbc::create(bool encrypt, std::string_view key, std::string_view iv) {
  if (key.size() != 16 || iv.size() != 16) {
    return fail(Errc::kUsage, "AES-128-CBC needs a 16-byte key and a 16-byte IV");
  }
  AesCbc c;
  c.ctx_.reset(EVP_CIPHER_CTX_new());
  if (!c.ctx_ ||
      EVP_CipherInit_ex(c.ctx_.get(), EVP_aes_128_cbc(), nullptr,
                        reinterpret_cast<const unsigned char*>(key.data()),
                        reinterpret_cast<const unsigned char*>(iv.data()), encrypt ? 1 : 0) != 1) {
    return fail(Errc::kCrypto, "AES init failed: " + ssl_error());
  }
  return c;
}
AesCbc::AesCbc(AesCbc&&) noexcept = default;
AesCbc& AesCbc::operator=(AesCbc&&) noexcept = default;
AesCbc::~AesCbc() = default;

Result<void> AesCbc::update(const void* data, std::size_t n, std::string& out) {
  const auto* in = static_cast<const unsigned char*>(data);
  while (n > 0) {
    int chunk = static_cast<int>(std::min<std::size_t>(n, 1 << 20));
    std::size_t old = out.size();
    out.resize(old + chunk + 16);
    int len = 0;
    if (EVP_CipherUpdate(ctx_.get(), reinterpret_cast<unsigned char*>(out.data() + old), &len, in,
                         chunk) != 1) {
      out.resize(old);
      return fail(Errc::kCrypto, "AES failed: " + ssl_error());
    }
    out.resize(old + len);
    in += chunk;
    n -= chunk;
  }
  return {};
}

Result<void> AesCbc::finish(std::string& out) {
  std::size_t old = out.size();
  out.resize(old + 32);
  int len = 0;
  if (EVP_CipherFinal_ex(ctx_.get(), reinterpret_cast<unsigned char*>(out.data() + old), &len) !=
      1) {
    out.resize(old);
    ERR_clear_error();
    return fail(Errc::kCrypto, "AES-128-CBC: bad final block (wrong key/IV or corrupt data)");
  }
  out.resize(old + len);
  return {};
}

// --- Key ----------------------------------------------------------------------------------

void Key::Free::operator()(evp_pkey_st* p) const { EVP_PKEY_free(p); }
Key::Key(Key&&) noexcept = default;
Key& Key::operator=(Key&&) noexcept = default;
Key::~Key() = default;

Result<Key> Key::from_certificate_file(const std::string& path) {
  auto pem = read_small_file(path);
  if (!pem) {
    return conf::unexpected(pem.error());
  }
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return fail(Errc::kCrypto, path + ": not a PEM X.509 certificate");
  }
  Key k;
  k.pkey_.reset(X509_get_pubkey(cert.get()));
  if (!k.pkey_ || EVP_PKEY_base_id(k.pkey_.get()) != EVP_PKEY_RSA) {
    return fail(Errc::kCrypto, path + ": the certificate's key is not RSA");
  }
  return k;
}

Result<Key> Key::from_private_key_file(const std::string& path) {
  auto pem = read_small_file(path);
  if (!pem) {
    return conf::unexpected(pem.error());
  }
  BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  Key k;
  // An empty passphrase callback result: encrypted keys fail instead of prompting.
  k.pkey_.reset(PEM_read_bio_PrivateKey(
      bio.get(), nullptr, [](char*, int, int, void*) { return 0; }, nullptr));
  if (!k.pkey_) {
    ERR_clear_error();
    return fail(Errc::kCrypto, path + ": not an unencrypted PEM private key");
  }
  if (EVP_PKEY_base_id(k.pkey_.get()) != EVP_PKEY_RSA) {
    return fail(Errc::kCrypto, path + ": the private key is not RSA");
  }
  return k;
}

Result<Key> Key::from_public_key_pem(std::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  Key k;
  k.pkey_.reset(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!k.pkey_) {
    ERR_clear_error();
    return fail(Errc::kCrypto, "not a PEM public key");
  }
  return k;
}

int Key::size() const { return EVP_PKEY_get_size(pkey_.get()); }

Result<std::string> Key::encrypt_pkcs1(std::string_view plain) const {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(pkey_.get(), nullptr));
  std::size_t len = 0;
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
      EVP_PKEY_encrypt(ctx.get(), nullptr, &len,
                       reinterpret_cast<const unsigned char*>(plain.data()), plain.size()) != 1) {
    return fail(Errc::kCrypto, "RSA encryption setup failed: " + ssl_error());
  }
  std::string out(len, '\0');
  if (EVP_PKEY_encrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                       reinterpret_cast<const unsigned char*>(plain.data()), plain.size()) != 1) {
    return fail(Errc::kCrypto, "RSA encryption failed: " + ssl_error());
  }
  out.resize(len);
  return out;
}

Result<std::string> Key::decrypt_pkcs1(std::string_view cipher) const {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(pkey_.get(), nullptr));
  std::size_t len = 0;
  if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PADDING) != 1 ||
      EVP_PKEY_decrypt(ctx.get(), nullptr, &len,
                       reinterpret_cast<const unsigned char*>(cipher.data()), cipher.size()) != 1) {
    ERR_clear_error();
    return fail(Errc::kCrypto, "RSA decryption setup failed (not a private key?)");
  }
  std::string out(len, '\0');
  if (EVP_PKEY_decrypt(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                       reinterpret_cast<const unsigned char*>(cipher.data()), cipher.size()) != 1) {
    ERR_clear_error();
    return fail(Errc::kCrypto, "RSA decryption failed (wrong private key?)");
  }
  out.resize(len);
  return out;
}

Result<std::string> Key::sign_sha1(std::string_view data) const {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  std::size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha1(), nullptr, pkey_.get()) != 1 ||
      EVP_DigestSignUpdate(ctx.get(), data.data(), data.size()) != 1 ||
      EVP_DigestSignFinal(ctx.get(), nullptr, &len) != 1) {
    return fail(Errc::kCrypto, "RSA-SHA1 signing failed: " + ssl_error());
  }
  std::string out(len, '\0');
  if (EVP_DigestSignFinal(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len) != 1) {
    return fail(Errc::kCrypto, "RSA-SHA1 signing failed: " + ssl_error());
  }
  out.resize(len);
  return out;
}

bool Key::verify_sha1(std::string_view data, std::string_view signature) const {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  bool ok =
      ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha1(), nullptr, pkey_.get()) == 1 &&
      EVP_DigestVerifyUpdate(ctx.get(), data.data(), data.size()) == 1 &&
      EVP_DigestVerifyFinal(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size()) == 1;
  ERR_clear_error();
  return ok;
}

}  // namespace installer
