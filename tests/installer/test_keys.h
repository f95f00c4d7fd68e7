// Test helper: a throw-away RSA key pair and a self-signed certificate written as PEM files, made
// in-process with OpenSSL (no openssl binary needed) so bundle tests can encrypt and sign.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace installer::testing {

struct KeyFiles {
  std::string key_path;   // PKCS#8 PEM private key
  std::string cert_path;  // self-signed X.509 PEM
};

inline KeyFiles make_key_files(const std::filesystem::path& dir, const std::string& name,
                               int bits = 2048) {
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> pkey(EVP_RSA_gen(bits), &EVP_PKEY_free);
  std::unique_ptr<X509, void (*)(X509*)> x(X509_new(), &X509_free);
  if (!pkey || !x) {
    throw std::runtime_error("key generation failed");
  }
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), 1);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), 0);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 86400L * 365);
  X509_set_pubkey(x.get(), pkey.get());
  X509_NAME* n = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), n);
  X509_sign(x.get(), pkey.get(), EVP_sha256());
  KeyFiles out{(dir / (name + "-pk.pem")).string(), (dir / (name + "-cert.pem")).string()};
  std::unique_ptr<FILE, int (*)(FILE*)> kf(std::fopen(out.key_path.c_str(), "w"), &std::fclose);
  std::unique_ptr<FILE, int (*)(FILE*)> cf(std::fopen(out.cert_path.c_str(), "w"), &std::fclose);
  if (!kf || !cf ||
      PEM_write_PrivateKey(kf.get(), pkey.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1 ||
      PEM_write_X509(cf.get(), x.get()) != 1) {
    throw std::runtime_error("writing PEM files failed");
  }
  return out;
}

}  // namespace installer::testing
