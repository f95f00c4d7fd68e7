// OpenSSL behind small RAII types for the installer: streaming digests, AES-128-CBC, RSA PKCS#1
// v1.5 encryption and RSA-SHA1 signatures with keys from PEM files, hex, and the eustore checksum
// name (EUSTORE.md §1.7). OpenSSL headers stay in crypto.cc; each type here owns exactly one
// OpenSSL handle and is move-only.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "installer/error.h"

struct evp_md_ctx_st;
struct evp_cipher_ctx_st;
struct evp_pkey_st;

namespace installer {

std::string to_hex(std::string_view bytes);  // lowercase
// Errors: odd length or a non-hex character (kFormat).
Result<std::string> from_hex(std::string_view hex);

// Streaming MD5 / SHA-1 / SHA-256. final_hex() may be called once; the object is spent after.
class Digest {
 public:
  enum class Algo { kMd5, kSha1, kSha256, kSha512 };
  explicit Digest(Algo algo);
  Digest(Digest&&) noexcept;
  Digest& operator=(Digest&&) noexcept;
  ~Digest();
  void update(const void* data, std::size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string final_hex();  // lowercase hex

 private:
  struct Free {
    void operator()(evp_md_ctx_st* p) const;
  };
  std::unique_ptr<evp_md_ctx_st, Free> ctx_;
};

std::string sha1_hex(std::string_view data);
std::string md5_hex(std::string_view data);
// Lowercase hex digest of a whole file, read once. Errors: unreadable file (kIo).
Result<std::string> file_digest_hex(const std::string& path, Digest::Algo algo);

// EUSTORE.md §1.7: 10-digit zero-padded decimal CRC-32 (zlib) of the 32 lowercase hex chars of
// the MD5. `md5_hex` must be that hex string.
std::string eustore_name_from_md5(std::string_view md5_hex);
// MD5 of the whole file, then the rule above. Errors: unreadable file (kIo).
Result<std::string> eustore_name_of_file(const std::string& path);

// Cryptographically random bytes. Errors: RAND_bytes failed (kCrypto).
Result<std::string> random_bytes(std::size_t n);

// AES-128-CBC with PKCS#7 padding (openssl enc's default), streaming. `update` appends the
// produced bytes to `out`; `finish` appends the last block. Decryption errors (bad padding: the
// wrong key) are kCrypto.
class AesCbc {
 public:
  // key and iv: 16 raw bytes each. Errors: wrong sizes (kUsage), OpenSSL failure (kCrypto).
  static Result<AesCbc> create(bool encrypt, std::string_view key, std::string_view iv);
  AesCbc(AesCbc&&) noexcept;
  AesCbc& operator=(AesCbc&&) noexcept;
  ~AesCbc();
  Result<void> update(const void* data, std::size_t n, std::string& out);
  Result<void> finish(std::string& out);

 private:
  struct Free {
    void operator()(evp_cipher_ctx_st* p) const;
  };
  AesCbc() = default;
  std::unique_ptr<evp_cipher_ctx_st, Free> ctx_;
};

// An RSA key (public from an X.509 certificate, or private from a PEM private key in PKCS#1 or
// PKCS#8 form, unencrypted).
class Key {
 public:
  // Errors: unreadable file (kIo), not a certificate / key (kCrypto). Messages name the file.
  static Result<Key> from_certificate_file(const std::string& path);
  static Result<Key> from_private_key_file(const std::string& path);
  static Result<Key> from_public_key_pem(std::string_view pem);
  Key(Key&&) noexcept;
  Key& operator=(Key&&) noexcept;
  ~Key();
  // Modulus size in bytes.
  int size() const;

  // RSA PKCS#1 v1.5 encryption / decryption (randomised padding).
  Result<std::string> encrypt_pkcs1(std::string_view plain) const;
  Result<std::string> decrypt_pkcs1(std::string_view cipher) const;
  // RSA PKCS#1 v1.5 signature with SHA-1 (what Java's SHA1withRSA verifies), and its check.
  Result<std::string> sign_sha1(std::string_view data) const;
  bool verify_sha1(std::string_view data, std::string_view signature) const;

 private:
  struct Free {
    void operator()(evp_pkey_st* p) const;
  };
  Key() = default;
  std::unique_ptr<evp_pkey_st, Free> pkey_;
};

}  // namespace installer
