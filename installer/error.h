// The installer's one error shape: a closed `Errc` plus a human-readable message that names what
// failed (file, URL, object, API action) and never contains a secret. Every installer function
// that can fail returns conf::Result<T, installer::Error>.
#pragma once

#include <string>

#include "conf/result.h"

namespace installer {

enum class Errc {
  kUsage,     // bad or missing option / credential
  kIo,        // local file system
  kCrypto,    // OpenSSL: bad key, bad certificate, failed decryption
  kFormat,    // malformed catalog, manifest, tarball or response
  kChecksum,  // a digest or size did not match
  kUnsafe,    // refused input (path traversal in a tarball)
  kNetwork,   // connection, HTTP status, timeout
  kRemote,    // the S3 or EC2 service answered with an error
  kBusy,      // another live process owns the install
};

struct Error {
  Errc code = Errc::kIo;
  std::string message;
};

template <class T>
using Result = conf::Result<T, Error>;

inline conf::Unexpected<Error> fail(Errc code, std::string message) {
  return conf::unexpected(Error{code, std::move(message)});
}

}  // namespace installer
