// What installer/'s OpenSSL users share: the error queue as one line, and owners of the handles
// every one of them needs (STYLE.md habit 1). Each file keeps the owners only it uses.
#pragma once

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace installer {

// OpenSSL's error queue, drained, as "error; error"; "unknown OpenSSL error" when empty.
inline std::string ssl_error() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) {
      out += "; ";
    }
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

}  // namespace installer
