// `tusk serve`: the registration service (issue 12, ImageProxy's replacement, EUSTORE.md §7).
// HTTP/JSON on its own listener: POST /images registers an image URL under a site-unique GUID
// (once: concurrent and later calls share that registration), GET /images/<guid> reports it.
// This header holds the pure parts (request validation, the 409 decision, the download-space
// eviction choice, test-mode ids, bearer authorization, the config file) and run_service().
// Tricky: the registry is the truth across restarts; the in-memory job table only adds what is
// running now and the error text of recent failures (serve_jobs.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "installer/error.h"
#include "installer/http.h"
#include "installer/install.h"
#include "installer/registry.h"

namespace installer {

// --- the request ----------------------------------------------------------------------------

struct ImageRequest {
  std::string url;           // http(s)://…, no fragment, no whitespace or control characters
  std::string guid;          // [A-Za-z0-9._:-]{1,128}
  std::string eki, eri;      // "" = the service's defaults (single disk images only)
  std::string architecture;  // "" = the service's default
  std::string sha512;        // "" or 128 lowercase hex (upper case is accepted and lowered)
  std::optional<std::uint64_t> size;
  std::string description;  // up to 255 printable characters
};

inline constexpr std::size_t kMaxUrl = 4096;
inline constexpr std::size_t kMaxGuid = 128;
inline constexpr std::size_t kMaxDescription = 255;

bool valid_guid(std::string_view guid);
// Errors (kFormat, the message names the field): not a JSON object, unknown key, wrong type,
// missing url or guid, any field out of its bounds above.
Result<ImageRequest> parse_image_request(std::string_view body);

// What a (GUID → registration) holds: the URL, plus "#sha512=<hex>" when a checksum was given.
// Two requests are the same registration exactly when their contents are equal.
std::string request_content(const ImageRequest& r);
// The URL part of a content string (what a 409 names).
std::string content_url(std::string_view content);
// The URL as logs show it: user:password@ becomes ***@ and a query string ?*** (presigned URLs
// carry signatures there).

// --- jobs -----------------------------------------------------------------------------------

enum class JobState { kQueued, kDownloading, kBundling, kUploading, kRegistering, kDone, kFailed };
const char* job_state_name(JobState s);  // "queued", …, "done", "failed"
bool job_active(JobState s);             // neither done nor failed
// The state an InstallIo::on_progress step name means ("download…" → downloading, "upload…" →
// uploading, "regist…"/"commit" → registering, unpack/convert/bundle/kernel/ramdisk/machine/
// verify → bundling); nullopt for bookkeeping steps (lookup, lock, cleanup, catalog) that keep
// the current state.
std::optional<JobState> stage_of_step(std::string_view step);
// The same from an install's log line (InstallIo::log), for the steps on_progress does not
// report: "Bundling …"/"Converting …"/"Unbundling …" → bundling, "Checking bucket"/"Creating
// bucket"/"Uploading …" → uploading, "Uploaded image as …" → registering, "Downloading …" →
// downloading; nullopt for every other line.
std::optional<JobState> stage_of_log(std::string_view line);

// What POST does given the job this process has for the GUID (if any) and the registry's record.
enum class PostVerdict {
  kAnswer,    // 200: done with this content (ids from the job, else from the record)
  kJoin,      // 202: a job with this content is queued or running: share it
  kStart,     // 202: nothing (or only a failed or interrupted attempt): start a job
  kConflict,  // 409: the GUID is registered (or being registered) with other content
};
struct PostDecision {
  PostVerdict verdict = PostVerdict::kStart;
  std::string registered_url;  // kConflict: the URL the GUID holds
};
struct JobSummary {
  JobState state = JobState::kQueued;
  std::string content;
};
// A failed job or record, or an in-progress record without a live job (a crash) never blocks
// other content: nothing is registered under the GUID then.
PostDecision decide_post(const std::optional<JobSummary>& job,
                         const std::optional<InstallRecord>& record, std::string_view content);

// --- download space ---------------------------------------------------------------------------

// One entry of the download folder: a job's subfolder (or a stray file).
struct DownloadEntry {
  std::string name;
  std::uint64_t bytes = 0;     // on disk now
  std::int64_t mtime = 0;      // newest modification inside, unix seconds
  bool active = false;         // its job is queued or running: never removed
  std::uint64_t reserved = 0;  // active: the bytes its download will reach (counts max(bytes, …))
};
struct SpacePlan {
  std::vector<std::string> remove;  // finished entries to delete, oldest first
  bool fits = true;                 // after removing them, the total is within the cap
  std::uint64_t total_after = 0;
};
// Removes the oldest finished entries (mtime, then name) until the total is within `cap`.
// fits is false when even removing every finished entry is not enough; `remove` then lists them
// all (the caller decides whether to delete them anyway).
SpacePlan plan_download_space(std::vector<DownloadEntry> entries, std::uint64_t cap);

// --- test mode, authorization ------------------------------------------------------------------

struct ImageIds {
  std::string eki, eri, emi;
};
// emi-/eki-/eri- followed by hex of sha256(guid) (0–8, 8–16, 16–24); a given eki/eri is kept.
ImageIds test_mode_ids(std::string_view guid, std::string_view eki, std::string_view eri);

enum class Auth { kOk, kMissing, kWrong };  // 200 / 401 / 403
// `Authorization: Bearer <token>` (scheme case-insensitive), compared in constant time.
// `token` must not be empty.
Auth authorize_bearer(std::string_view authorization, std::string_view token);

// --- options --------------------------------------------------------------------------------

struct ServeOptions {
  std::string listen;        // HOST:PORT (port 1..65535)
  std::string token_file;    // the bearer token (whole file minus one trailing newline)
  std::string download_dir;  // "" = <registry>/downloads
  std::uint64_t download_space = 10ull << 30;
  int parallel = 2;  // registrations at once (1..64)
  bool test_mode = false;
  std::string kernel, ramdisk;          // defaults for single disk images without eki/eri
  std::string architecture = "x86_64";  // when the request gives none
  int drain_seconds = 60;               // SIGTERM/SIGINT: how long running registrations may finish
  // Bounds of the HTTP side.
  std::size_t max_body = 64 << 10;
  std::size_t max_headers = 16 << 10;
  int timeout_seconds = 30;     // reading a request, writing an answer
  int max_connections = 256;    // connections that have sent a request; more get 503
  std::size_t max_jobs = 1024;  // queued + running; more get 503
};

// The `serve:` section of a YAML file; every key optional, unknown keys are errors. Other
// top-level sections are ignored (the file may be shared).
struct ServeFileConfig {
  std::optional<std::string> listen, token_file, download_dir, bucket, kernel, ramdisk;
  std::optional<std::uint64_t> download_space;
  std::optional<int> parallel;
  std::optional<bool> test_mode;
};
// Errors (kUsage, "file:line:column: message" when the position is known): unreadable file,
// YAML syntax, wrong types, unknown keys, bad sizes ("10G", "512M", "4096"), parallel out of
// 1..64. Relative paths resolve against the file's folder.
Result<ServeFileConfig> load_serve_config(const std::string& path);
// "10G" / "512M" / "64K" / "4096" (and conf::parse_size's forms) → bytes. kUsage on error.
Result<std::uint64_t> parse_space(std::string_view text);

// Runs the service until SIGTERM/SIGINT; returns the exit code (0 after a graceful stop).
// `base` carries the cloud side (credentials, bucket, registry_dir, signatures) for every
// install; it is not used in test mode beyond registry_dir. Logs one line per job event through
// `log` (never the token or credentials). Call from the main thread, once.
int run_service(const ServeOptions& options, const InstallOptions& base, const LogFn& log);

}  // namespace installer
