// The pure parts of `tusk serve` (serve.h): what a request may hold, what POST decides, which
// downloads go when space is short, the test-mode ids, the bearer check, and the YAML file.
// Tricky: every field of a request is client input; bounds are checked here, before anything
// reaches the job table, the registry or a log line.
#include "installer/serve.h"

#include <openssl/crypto.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "conf/config.h"
#include "installer/crypto.h"

namespace installer {
namespace {

using json = nlohmann::json;

bool all_of(std::string_view s, bool (*ok)(unsigned char)) {
  return std::all_of(s.begin(), s.end(), [&](char c) { return ok(static_cast<unsigned char>(c)); });
}

bool guid_char(unsigned char c) {
  return std::isalnum(c) || c == '.' || c == '_' || c == ':' || c == '-';
}
bool hex_char(unsigned char c) { return std::isxdigit(c) != 0; }
bool printable(unsigned char c) { return c >= 0x20 && c != 0x7f; }  // UTF-8 bytes pass
bool url_char(unsigned char c) { return c > 0x20 && c != 0x7f && c != '#'; }
bool arch_char(unsigned char c) { return std::isalnum(c) || c == '_'; }

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  }
  return true;
}

// eki-/eri-/aki-… followed by 8 to 17 hex digits (Eucalyptus and AWS ids).
bool valid_image_id(std::string_view id) {
  if (id.size() < 12 || id.size() > 21 || id[3] != '-') return false;
  return all_of(id.substr(0, 3), [](unsigned char c) { return std::islower(c) != 0; }) &&
         all_of(id.substr(4), hex_char);
}

Result<std::string> string_field(const json& v, const char* name) {
  if (!v.is_string()) return fail(Errc::kFormat, std::string("\"") + name + "\" must be a string");
  return v.get<std::string>();
}

}  // namespace

bool valid_guid(std::string_view guid) {
  return !guid.empty() && guid.size() <= kMaxGuid && all_of(guid, guid_char);
}

Result<ImageRequest> parse_image_request(std::string_view body) {
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail(Errc::kFormat, "the body is not JSON");
  if (!doc.is_object()) return fail(Errc::kFormat, "the body must be a JSON object");
  ImageRequest r;
  for (const auto& [key, v] : doc.items()) {
    if (key == "size") {
      if (!v.is_number_unsigned() || v.get<std::uint64_t>() == 0 ||
          v.get<std::uint64_t>() > (1ull << 62)) {
        return fail(Errc::kFormat, "\"size\" must be a positive integer (bytes)");
      }
      r.size = v.get<std::uint64_t>();
      continue;
    }
    std::string* dst = key == "url"            ? &r.url
                       : key == "guid"         ? &r.guid
                       : key == "eki"          ? &r.eki
                       : key == "eri"          ? &r.eri
                       : key == "architecture" ? &r.architecture
                       : key == "sha512"       ? &r.sha512
                       : key == "description"  ? &r.description
                                               : nullptr;
    if (dst == nullptr) {
      std::string shown =
          key.size() > 40 || !all_of(key, printable) ? "(unprintable or long)" : key;
      return fail(Errc::kFormat, "unknown key \"" + shown +
                                     "\" (known: url, guid, eki, eri, architecture, sha512, "
                                     "size, description)");
    }
    auto s = string_field(v, key.c_str());
    if (!s) return conf::unexpected(s.error());
    *dst = std::move(*s);
  }
  if (r.url.empty()) return fail(Errc::kFormat, "\"url\" is required");
  if (r.url.size() > kMaxUrl) return fail(Errc::kFormat, "\"url\" is longer than 4096 bytes");
  bool http = starts_with_ci(r.url, "http://"), https = starts_with_ci(r.url, "https://");
  if ((!http && !https) || r.url.size() == (https ? 8u : 7u) || r.url[https ? 8 : 7] == '/') {
    return fail(Errc::kFormat, "\"url\" must be an http:// or https:// URL with a host");
  }
  if (!all_of(r.url, url_char)) {
    return fail(Errc::kFormat, "\"url\" must not hold spaces, control characters or a fragment");
  }
  if (r.guid.empty()) return fail(Errc::kFormat, "\"guid\" is required");
  if (!valid_guid(r.guid)) {
    return fail(Errc::kFormat, "\"guid\" must be 1 to 128 of A-Z a-z 0-9 . _ : -");
  }
  for (auto [id, name] : {std::pair{&r.eki, "eki"}, std::pair{&r.eri, "eri"}}) {
    if (!id->empty() && !valid_image_id(*id)) {
      return fail(Errc::kFormat,
                  std::string("\"") + name + "\" must be an image id like eki-0123abcd");
    }
  }
  if (!r.architecture.empty() &&
      (r.architecture.size() > 16 || !all_of(r.architecture, arch_char))) {
    return fail(Errc::kFormat, "\"architecture\" must be 1 to 16 of A-Z a-z 0-9 _ (x86_64, i386)");
  }
  if (!r.sha512.empty()) {
    if (r.sha512.size() != 128 || !all_of(r.sha512, hex_char)) {
      return fail(Errc::kFormat, "\"sha512\" must be 128 hex digits");
    }
    std::transform(r.sha512.begin(), r.sha512.end(), r.sha512.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  }
  if (r.description.size() > kMaxDescription || !all_of(r.description, printable)) {
    return fail(Errc::kFormat, "\"description\" must be at most 255 printable characters");
  }
  return r;
}

std::string request_content(const ImageRequest& r) {
  return r.sha512.empty() ? r.url : r.url + "#sha512=" + r.sha512;
}

std::string content_url(std::string_view content) {
  return std::string(content.substr(0, content.find("#sha512=")));
}

const char* job_state_name(JobState s) {
  switch (s) {
    case JobState::kQueued:
      return "queued";
    case JobState::kDownloading:
      return "downloading";
    case JobState::kBundling:
      return "bundling";
    case JobState::kUploading:
      return "uploading";
    case JobState::kRegistering:
      return "registering";
    case JobState::kDone:
      return "done";
    case JobState::kFailed:
      return "failed";
  }
  return "failed";
}

bool job_active(JobState s) { return s != JobState::kDone && s != JobState::kFailed; }

std::optional<JobState> stage_of_step(std::string_view step) {
  std::string s(step);
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto has = [&](const char* w) { return s.find(w) != std::string::npos; };
  if (has("download") || has("fetch")) return JobState::kDownloading;
  if (has("upload")) return JobState::kUploading;
  if (has("regist") || has("commit")) return JobState::kRegistering;
  for (const char* w : {"unpack", "convert", "bundl", "kernel", "ramdisk", "machine", "verify",
                        "check", "extract"}) {
    if (has(w)) return JobState::kBundling;
  }
  return std::nullopt;
}

std::optional<JobState> stage_of_log(std::string_view line) {
  const std::pair<std::string_view, JobState> prefixes[] = {
      {"Downloading", JobState::kDownloading},   {"Checked ", JobState::kBundling},
      {"Converting ", JobState::kBundling},      {"Unbundling ", JobState::kBundling},
      {"Bundling ", JobState::kBundling},        {"Generating manifest", JobState::kBundling},
      {"Checking bucket", JobState::kUploading}, {"Creating bucket", JobState::kUploading},
      {"Uploading ", JobState::kUploading},      {"Uploaded image as", JobState::kRegistering},
  };
  for (const auto& [prefix, state] : prefixes) {
    if (line.substr(0, prefix.size()) == prefix) return state;
  }
  return std::nullopt;
}

PostDecision decide_post(const std::optional<JobSummary>& job,
                         const std::optional<InstallRecord>& record, std::string_view content) {
  if (job && job->state != JobState::kFailed) {
    if (job->content != content) return {PostVerdict::kConflict, content_url(job->content)};
    return {job->state == JobState::kDone ? PostVerdict::kAnswer : PostVerdict::kJoin, {}};
  }
  if (record && record->state == InstallState::kDone) {
    if (record->content != content) return {PostVerdict::kConflict, content_url(record->content)};
    return {PostVerdict::kAnswer, {}};
  }
  return {PostVerdict::kStart, {}};
}

SpacePlan plan_download_space(std::vector<DownloadEntry> entries, std::uint64_t cap) {
  SpacePlan plan;
  std::uint64_t total = 0;
  for (const auto& e : entries) total += e.active ? std::max(e.bytes, e.reserved) : e.bytes;
  std::sort(entries.begin(), entries.end(), [](const DownloadEntry& a, const DownloadEntry& b) {
    return a.mtime != b.mtime ? a.mtime < b.mtime : a.name < b.name;
  });
  for (const auto& e : entries) {
    if (total <= cap) break;
    if (e.active) continue;
    plan.remove.push_back(e.name);
    total -= e.bytes;
  }
  plan.fits = total <= cap;
  plan.total_after = total;
  return plan;
}

ImageIds test_mode_ids(std::string_view guid, std::string_view eki, std::string_view eri) {
  Digest d(Digest::Algo::kSha256);
  d.update(guid);
  std::string h = d.final_hex();
  return {eki.empty() ? "eki-" + h.substr(8, 8) : std::string(eki),
          eri.empty() ? "eri-" + h.substr(16, 8) : std::string(eri), "emi-" + h.substr(0, 8)};
}

Auth authorize_bearer(std::string_view authorization, std::string_view token) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() || !starts_with_ci(authorization, kScheme)) {
    return Auth::kMissing;
  }
  std::string_view given = authorization.substr(kScheme.size());
  while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
  while (!given.empty() && given.back() == ' ') given.remove_suffix(1);
  // The length is not secret (it leaks through timing anyway); the bytes are.
  bool same = given.size() == token.size() && !token.empty() &&
              CRYPTO_memcmp(given.data(), token.data(), token.size()) == 0;
  return same ? Auth::kOk : Auth::kWrong;
}

Result<std::uint64_t> parse_space(std::string_view text) {
  auto n = conf::parse_size(text);
  if (!n) return fail(Errc::kUsage, "download space \"" + std::string(text) + "\": " + n.error());
  if (*n == 0) return fail(Errc::kUsage, "download space must be more than 0 bytes");
  return *n;
}

Result<ServeFileConfig> load_serve_config(const std::string& path) {
  ServeFileConfig c;
  auto where = [&](const YAML::Node& n) {
    auto m = n.Mark();
    return m.is_null()
               ? path
               : path + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
  };
  std::filesystem::path base = std::filesystem::path(path).parent_path();
  auto resolve = [&](const std::string& p) {
    return p.empty() || p.front() == '/' ? p : (base / p).lexically_normal().string();
  };
  try {
    YAML::Node root = YAML::LoadFile(path);
    if (!root || root.IsNull()) return c;
    if (!root.IsMap()) return fail(Errc::kUsage, where(root) + ": the file must be a mapping");
    YAML::Node s = root["serve"];
    if (!s || s.IsNull()) return c;
    if (!s.IsMap()) return fail(Errc::kUsage, where(s) + ": serve must be a mapping");
    for (const auto& kv : s) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& v = kv.second;
      if (!v.IsScalar())
        return fail(Errc::kUsage, where(v) + ": serve." + key + " must be a scalar");
      const std::string text = v.as<std::string>();
      if (key == "listen") {
        c.listen = text;
      } else if (key == "token_file") {
        c.token_file = resolve(text);
      } else if (key == "download_dir") {
        c.download_dir = resolve(text);
      } else if (key == "bucket") {
        c.bucket = text;
      } else if (key == "kernel") {
        c.kernel = text;
      } else if (key == "ramdisk") {
        c.ramdisk = text;
      } else if (key == "download_space") {
        auto n = parse_space(text);
        if (!n) return fail(Errc::kUsage, where(v) + ": " + n.error().message);
        c.download_space = *n;
      } else if (key == "parallel") {
        int n = 0;
        if (!YAML::convert<int>::decode(v, n) || n < 1 || n > 64) {
          return fail(Errc::kUsage, where(v) + ": serve.parallel must be 1..64");
        }
        c.parallel = n;
      } else if (key == "test_mode") {
        bool b = false;
        if (!YAML::convert<bool>::decode(v, b)) {
          return fail(Errc::kUsage, where(v) + ": serve.test_mode must be true or false");
        }
        c.test_mode = b;
      } else {
        return fail(Errc::kUsage,
                    where(kv.first) + ": unknown key serve." + key +
                        " (known: listen, token_file, download_dir, download_space, parallel, "
                        "test_mode, bucket, kernel, ramdisk)");
      }
    }
  } catch (const YAML::BadFile&) {
    return fail(Errc::kUsage, path + ": cannot read the file");
  } catch (const YAML::Exception& e) {
    return fail(Errc::kUsage, path + ":" + std::to_string(e.mark.line + 1) + ":" +
                                  std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  return c;
}

}  // namespace installer
