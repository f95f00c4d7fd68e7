// eucarc parsing and credential precedence. Tricky: real eucarc files start with
// `EUCA_KEY_DIR=$(cd $(dirname ${BASH_SOURCE:-$0}); pwd -P)`; we never run shell, so that line is
// recognised by its variable name and replaced with the file's own folder.
#include "installer/credentials.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

namespace installer {
namespace {

std::string trim(std::string s) {
  s.erase(0, s.find_first_not_of(" \t\r"));
  s.erase(s.find_last_not_of(" \t\r") + 1);
  return s;
}

std::string expand(const std::string& v, const std::map<std::string, std::string>& vars) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != '$' || i + 1 == v.size()) {
      out.push_back(v[i]);
      continue;
    }
    std::string name;
    std::size_t j = i + 1;
    if (v[j] == '{') {
      auto close = v.find('}', j);
      if (close == std::string::npos) {
        out.push_back(v[i]);
        continue;
      }
      name = v.substr(j + 1, close - j - 1);
      if (auto colon = name.find(":-"); colon != std::string::npos) {
        name.resize(colon);
      }
      i = close;
    } else {
      while (j < v.size() && (std::isalnum(static_cast<unsigned char>(v[j])) || v[j] == '_')) {
        name.push_back(v[j++]);
      }
      if (name.empty()) {
        out.push_back(v[i]);
        continue;
      }
      i = j - 1;
    }
    if (auto it = vars.find(name); it != vars.end()) {
      out += it->second;
    } else if (const char* e = std::getenv(name.c_str())) {
      out += e;
    }
  }
  return out;
}

}  // namespace

EnvFn process_environment() {
  return [](const char* name) -> std::optional<std::string> {
    const char* v = std::getenv(name);
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
}

Result<std::map<std::string, std::string>> parse_eucarc(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return fail(Errc::kIo, "cannot read eucarc " + path);
  }
  std::map<std::string, std::string> vars;
  std::error_code ec;
  auto abs = std::filesystem::absolute(path, ec);
  vars["EUCA_KEY_DIR"] = (ec ? std::filesystem::path(path) : abs).parent_path().string();
  std::string line;
  while (std::getline(in, line)) {
    line = trim(line);
    if (line.empty() || line[0] == '#') {
      continue;
    }
    if (line.rfind("export ", 0) == 0) {
      line = trim(line.substr(7));
    }
    auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0) {
      continue;
    }
    std::string name = line.substr(0, eq);
    if (name.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_") !=
        std::string::npos) {
      continue;
    }
    std::string value = trim(line.substr(eq + 1));
    if (name == "EUCA_KEY_DIR") {
      continue;  // keep the file's folder (the $(cd $(dirname ...)) idiom)
    }
    if (value.find("$(") != std::string::npos || value.find('`') != std::string::npos) {
      continue;  // command substitution: never executed
    }
    bool single = value.size() >= 2 && value.front() == '\'' && value.back() == '\'';
    bool dbl = value.size() >= 2 && value.front() == '"' && value.back() == '"';
    if (single || dbl) {
      value = value.substr(1, value.size() - 2);
    } else if (auto hash = value.find(" #"); hash != std::string::npos) {
      value = trim(value.substr(0, hash));
    }
    vars[name] = single ? value : expand(value, vars);
  }
  return vars;
}

CloudCredentials resolve_credentials(CloudCredentials c,
                                     const std::map<std::string, std::string>& eucarc,
                                     const EnvFn& env) {
  auto fill = [&](std::string& field, std::initializer_list<const char*> names) {
    for (const char* n : names) {
      if (!field.empty()) {
        return;
      }
      if (auto it = eucarc.find(n); it != eucarc.end() && !it->second.empty()) {
        field = it->second;
      }
    }
    for (const char* n : names) {
      if (!field.empty()) {
        return;
      }
      if (auto v = env(n); v && !v->empty()) {
        field = *v;
      }
    }
  };
  fill(c.ec2_url, {"EC2_URL"});
  fill(c.s3_url, {"S3_URL"});
  fill(c.access_key, {"EC2_ACCESS_KEY", "AWS_ACCESS_KEY"});
  fill(c.secret_key, {"EC2_SECRET_KEY", "AWS_SECRET_KEY"});
  fill(c.cert, {"EC2_CERT"});
  fill(c.private_key, {"EC2_PRIVATE_KEY"});
  fill(c.cloud_cert, {"EUCALYPTUS_CERT"});
  fill(c.user_id, {"EC2_USER_ID"});
  return c;
}

}  // namespace installer
