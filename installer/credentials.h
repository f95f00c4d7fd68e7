// Cloud credentials the euca2ools way: command-line flags win, then an eucarc file (--eucarc),
// then the environment (EC2_URL, S3_URL, EC2_ACCESS_KEY, EC2_SECRET_KEY, EC2_CERT,
// EC2_PRIVATE_KEY, EUCALYPTUS_CERT, EC2_USER_ID; AWS_ACCESS_KEY/AWS_SECRET_KEY as fallbacks).
// eucarc files are parsed, never executed: KEY=value lines with optional `export`, quotes and
// ${VAR} expansion, EUCA_KEY_DIR preset to the file's folder.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>

#include "installer/error.h"

namespace installer {

struct CloudCredentials {
  std::string ec2_url;
  std::string s3_url;
  std::string access_key;
  std::string secret_key;
  std::string cert;         // user certificate (user_encrypted_*)
  std::string private_key;  // user private key (manifest signature)
  std::string cloud_cert;   // EUCALYPTUS_CERT (ec2_encrypted_*)
  std::string user_id;      // account id
};

using EnvFn = std::function<std::optional<std::string>(const char*)>;
EnvFn process_environment();

// Errors: unreadable file (kIo). Unknown syntax (functions, $(...) other than the
// EUCA_KEY_DIR idiom) is ignored line by line.
Result<std::map<std::string, std::string>> parse_eucarc(const std::string& path);

// Fills every empty field of `flags` from `eucarc` then `env`.
CloudCredentials resolve_credentials(CloudCredentials flags,
                                     const std::map<std::string, std::string>& eucarc,
                                     const EnvFn& env);

}  // namespace installer
