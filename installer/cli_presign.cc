// `tusk presign URL --key-file F`: prints a SigV4 presigned URL for GET of URL (tuskd's own
// address), for routes with `auth: presigned`. Option plumbing over s3/presign.h, plus reading
// the one `ACCESS_KEY:SECRET_KEY` line of the key file. Tricky: the secret must never reach the
// terminal, so errors about the key file name the file and line, never the line's text.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>

#include "installer/cli.h"
#include "s3/presign.h"

namespace installer {
namespace {

// A key file is a few short lines; anything much bigger is not one.
constexpr std::streamsize kMaxKeyFile = 64 * 1024;

struct PresignArgs {
  std::string url, key_file, expires = "1h", region = "us-east-1", service = "s3";
};

// "30s", "15m", "1h", "7d", or bare seconds; 1 s .. 7 days.
Result<std::int64_t> parse_duration(const std::string& s) {
  const Error bad{Errc::kUsage, "--expires must be a duration like 30s, 15m, 1h or 7d, at most 7d"};
  if (s.empty() || s.size() > 12) {
    return conf::unexpected(bad);
  }
  std::int64_t unit = 1;
  std::string digits = s;
  switch (s.back()) {
    case 's':
      digits.pop_back();
      break;
    case 'm':
      unit = 60;
      digits.pop_back();
      break;
    case 'h':
      unit = 3600;
      digits.pop_back();
      break;
    case 'd':
      unit = 86400;
      digits.pop_back();
      break;
    default:
      break;
  }
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) {
    return conf::unexpected(bad);
  }
  const std::int64_t n = std::stoll(digits) * unit;  // at most 11 digits: no overflow
  if (n < 1 || n > s3::kPresignMaxExpires) {
    return conf::unexpected(bad);
  }
  return n;
}

bool has_space(const std::string& s) { return s.find_first_of(" \t\r\n\v\f") != std::string::npos; }

// The one key pair of `path`. Blank lines and '#' comments are ignored; anything else must be
// ACCESS_KEY:SECRET_KEY (split at the first ':', no whitespace, no '/' in the access key).
Result<s3::Credentials> read_key_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    return conf::unexpected(Error{Errc::kIo, "cannot read " + path + ": " + std::strerror(errno)});
  }
  std::string text(static_cast<std::size_t>(kMaxKeyFile) + 1, '\0');
  f.read(text.data(), kMaxKeyFile + 1);
  if (f.bad()) {
    return conf::unexpected(Error{Errc::kIo, "cannot read " + path});
  }
  text.resize(static_cast<std::size_t>(f.gcount()));
  if (text.size() > static_cast<std::size_t>(kMaxKeyFile)) {
    return conf::unexpected(Error{Errc::kUsage, path + " is too big for a key file"});
  }
  std::optional<s3::Credentials> found;
  int count = 0;
  std::istringstream lines(text);
  std::string line;
  for (int number = 1; std::getline(lines, line); ++number) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') {
      continue;
    }
    line = line.substr(first, line.find_last_not_of(" \t\r") + 1 - first);
    const auto colon = line.find(':');
    s3::Credentials c;
    if (colon != std::string::npos) {
      c.access_key = line.substr(0, colon);
      c.secret_key = line.substr(colon + 1);
    }
    if (c.access_key.empty() || c.secret_key.empty() || has_space(line) ||
        c.access_key.find('/') != std::string::npos) {
      return conf::unexpected(Error{
          Errc::kUsage, path + ":" + std::to_string(number) + ": expected ACCESS_KEY:SECRET_KEY"});
    }
    ++count;
    found = std::move(c);
  }
  if (count == 0) {
    return conf::unexpected(Error{Errc::kUsage, path + " holds no ACCESS_KEY:SECRET_KEY line"});
  }
  if (count > 1) {
    return conf::unexpected(Error{Errc::kUsage, path + " holds " + std::to_string(count) +
                                                    " key lines; tusk presign needs exactly one"});
  }
  return std::move(*found);
}

int presign(const PresignArgs& a) {
  auto expires = parse_duration(a.expires);
  if (!expires) {
    return report(expires.error());
  }
  auto creds = read_key_file(a.key_file);
  if (!creds) {
    return report(creds.error());
  }
  auto url = s3::presign_v4(a.url, *creds, a.region, a.service, std::time(nullptr), *expires);
  if (!url) {
    return report(Error{Errc::kUsage, url.error()});
  }
  std::printf("%s\n", url->c_str());
  return 0;
}

}  // namespace

std::vector<Command> add_presign_commands(CLI::App& app, const EnvFn& /*env*/) {
  auto a = std::make_shared<PresignArgs>();
  auto* cmd = app.add_subcommand(
      "presign",
      "print a SigV4 presigned URL for GET of a tuskd URL (routes with auth: presigned)");
  cmd->add_option("URL", a->url,
                  "the object's URL as clients will send it, e.g. http://edge:8080/images/a.tgz")
      ->required();
  cmd->add_option("--key-file", a->key_file, "file holding one ACCESS_KEY:SECRET_KEY line")
      ->required();
  cmd->add_option("--expires", a->expires, "validity: 30s, 15m, 1h, 7d (at most 7d)")
      ->capture_default_str();
  cmd->add_option("--region", a->region, "SigV4 region tuskd checks")->capture_default_str();
  cmd->add_option("--service", a->service, "SigV4 service tuskd checks")->capture_default_str();
  return {Command{cmd, [a] { return presign(*a); }}};
}

}  // namespace installer
