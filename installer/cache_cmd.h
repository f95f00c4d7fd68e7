// `tusk cache ls|purge|warm|verify|stats`: a client of tuskd's admin API (GET/DELETE /objects,
// POST /warm and /verify with their jobs, GET /stats; JSON in and out). Pure parts first (URLs,
// parsing of the answers, every line the commands print, the exit-code decision), then the
// commands, which talk to the server through an injected transport so tests can script it. Tricky:
// warm and verify are jobs polled until done, and the per-object lines are worked out from
// successive snapshots of the job (an object is reported once, when it reaches done or failed). The
// token is sent as a header only; no message built here contains it.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "installer/credentials.h"
#include "installer/error.h"
#include "installer/http.h"

namespace installer {

inline constexpr std::string_view kDefaultAdminUrl = "http://127.0.0.1:8081";

// --- where the admin API is, and with which token ------------------------------------------------

// The admin base URL without a trailing '/': `flag`, else TUSK_ADMIN_URL, else kDefaultAdminUrl.
// Errors (kUsage): not an http:// or https:// URL.
Result<std::string> admin_base(const std::string& flag, const EnvFn& env);

// The token from a token file's contents: one trailing "\n" (or "\r\n") removed. Errors (kUsage,
// naming `file` but never the token): empty, or a control character left inside (it would break
// or forge the Authorization header).
Result<std::string> parse_token(std::string_view contents, const std::string& file);

// Reads `flag`, else TUSK_ADMIN_TOKEN_FILE; "" when neither is set (no Authorization header).
// Errors: unreadable file (kIo), and those of parse_token.
Result<std::string> read_admin_token(const std::string& flag, const EnvFn& env);

// --- URLs and bodies -----------------------------------------------------------------------------

// RFC 3986 percent-encoding of a query value: unreserved characters and '/' are kept (public
// paths stay readable), everything else, '&', '=', '+', '%', '#', space and UTF-8 bytes, is %XX.
std::string query_encode(std::string_view value);

// GET /objects?prefix=P&limit=N&after=C; an empty prefix or cursor is left out.
std::string objects_url(std::string_view base, std::string_view prefix, std::uint64_t limit,
                        std::string_view after);
// DELETE /objects?path=P, or ?prefix=P when `is_prefix`.
std::string purge_url(std::string_view base, std::string_view path_or_prefix, bool is_prefix);
// POST /verify, with ?prefix=P unless the prefix is empty.
std::string verify_url(std::string_view base, std::string_view prefix);
// GET /warm/<id> or /verify/<id> (`kind` is "warm" or "verify"); the id is percent-encoded.
std::string job_url(std::string_view base, std::string_view kind, std::string_view id);
// The POST /warm body: {"catalog": C} when `catalog` is not empty, else {"paths": [...]}.
std::string warm_body(const std::string& catalog, const std::vector<std::string>& paths);

// --- answers -------------------------------------------------------------------------------------

// `<status>: <the "error" field>`; a body that is not the contract's error shape (a proxy's HTML
// page, an empty 502) gives its first line, cut to 200 bytes, or "HTTP <status>".
std::string admin_error_message(int status, std::string_view body);

struct CachedObject {
  std::optional<std::string> path;  // nullopt: no configured route maps to the object any more
  std::string upstream, bucket, key;
  std::uint64_t size = 0;
  std::uint64_t cached_bytes = 0;
  bool complete = false;
  std::string integrity;       // verified | unverified | unverifiable
  std::int64_t stored_at = 0;  // unix seconds, 0 when absent
};

struct ObjectPage {
  std::vector<CachedObject> objects;
  std::optional<std::string> next;  // cursor of the following page, nullopt on the last one
};

// Errors (kFormat): not JSON, not an object, "objects" not an array, "next" neither a string nor
// null. Missing or mistyped fields of an object read as empty / 0 / false.
Result<ObjectPage> parse_object_page(std::string_view json);

struct JobObject {
  std::optional<std::string> path;
  std::string state;                  // queued | running | done | failed
  std::optional<std::string> result;  // ok | cached | mismatch | unverifiable | incomplete | error
  std::optional<std::string> error;
  std::uint64_t bytes_done = 0, bytes_total = 0;
};

struct Job {
  std::string id, kind;
  bool done = false;
  std::uint64_t objects_total = 0, objects_done = 0;
  std::uint64_t bytes_total = 0, bytes_done = 0;
  std::uint64_t errors = 0;
  std::vector<JobObject> objects;
};

// Errors (kFormat): not JSON, not an object, or no boolean "done" (without it the poll would never
// end). Other missing fields read as empty / 0.
Result<Job> parse_job(std::string_view json);

// --- what the commands print (each line without its '\n') ----------------------------------------

// "5s", "59m", "23h", "3d"; "-" for stored_at 0; a stamp in the future (clock skew) is "0s".
std::string format_age(std::int64_t stored_at, std::int64_t now);
// cached_bytes / size in whole percent, rounded down so only a full object shows "100%"; an empty
// object is "100%" when complete, else "0%".
std::string cached_percent(const CachedObject& o);
// The path, or "(no route) <upstream>:<bucket>/<key>" for an object no route maps to.
std::string object_name(const CachedObject& o);
// One table row: path, size (human), cached %, complete (yes/no), integrity, age.
std::vector<std::string> object_row(const CachedObject& o, std::int64_t now);
// The `ls` table: a header row, then one row per object, columns padded to their widest cell (the
// last one not padded), two spaces apart. Each line ends in '\n'.
std::string format_object_table(const std::vector<CachedObject>& objects, std::int64_t now);

// The line for an object that has finished: "done /x.tgz 1.2 MiB ok" (": <error>" appended when
// the server gave one), "failed /y.tgz: <error>".
std::string job_object_line(const JobObject& o);
// A finished object worth showing even under the progress bar: failed, or a result other than
// ok / cached / unverifiable / incomplete.
bool is_problem(const JobObject& o);
// The progress bar without '\r': "warm w1 [######    ]  40%  2/5 objects  1.2 MiB / 3.0 MiB";
// "reading the catalog" while objects_total is still 0. Percent of bytes, or of objects when the
// byte total is 0.
std::string job_progress_line(const Job& job);
// "warm w1: 5 objects, 3.0 GiB: 3 ok, 1 cached, 1 failed" (counts by result, "failed" for failed
// objects; ", N errors" appended when the server counted errors).
std::string job_summary(const Job& job);
// 0 when the job finished clean, 1 when it counted errors or any object failed or ended in
// "mismatch" or "error".
int job_exit_code(const Job& job);

// Remembers which objects of a job were reported. update() returns the objects that reached done
// or failed since the last call, in the job's order. Objects are told apart by path and
// occurrence, so neither a reordered list nor a path given twice confuses it.
class JobTracker {
 public:
  std::vector<JobObject> update(const Job& job);

 private:
  std::map<std::string, std::size_t> reported_;
};

// `stats` as "key: value" lines, each ending in '\n': the contract's fields in a fixed order with
// sizes human and the hit ratio in percent, then any field this client does not know, as given.
// Errors (kFormat): not a JSON object.
Result<std::string> format_stats(std::string_view json);

// --- the commands --------------------------------------------------------------------------------

// One call to the admin API; any status is returned. Errors: transport failures only.
using AdminTransport =
    std::function<Result<HttpResponse>(const std::string& method, const std::string& url,
                                       const Headers& headers, const std::string& body)>;

struct CacheContext {
  std::string base;   // from admin_base()
  std::string token;  // "" = no Authorization header
  bool json = false;  // print the server's JSON (pretty) instead of text
  AdminTransport transport;
  std::FILE* out = stdout;  // results
  std::FILE* err = stderr;  // progress bar, per-object lines, warnings
  bool tty = false;         // `err` is a terminal: a redrawn bar instead of one line per object
  std::function<void(std::chrono::milliseconds)> sleep;  // between polls
  std::function<std::int64_t()> now;                     // unix seconds, for ages
};

struct LsArgs {
  std::string prefix;
  std::uint64_t limit = 0;  // total objects to list, 0 = all
};
struct PurgeArgs {
  std::string path;  // exactly one of path and prefix
  std::string prefix;
};
struct WarmArgs {
  std::string catalog;  // exactly one of catalog and paths
  std::vector<std::string> paths;
  bool no_wait = false;
};
struct VerifyArgs {
  std::string prefix;
  bool no_wait = false;
};

// Each returns the exit code (0, or 1 for a job that did not finish clean) or an error: kUsage for
// bad arguments (before anything is sent), kRemote "<status>: <error>" for an error answer,
// kNetwork naming the admin URL when tuskd cannot be reached, kFormat for an answer that is not
// the contract's JSON. Called from one thread; they block (warm and verify until the job is done,
// polling every 0.5 s; interrupting leaves the job running in tuskd).
Result<int> cache_ls(const CacheContext& c, const LsArgs& a);
Result<int> cache_purge(const CacheContext& c, const PurgeArgs& a);
Result<int> cache_warm(const CacheContext& c, const WarmArgs& a);
Result<int> cache_verify(const CacheContext& c, const VerifyArgs& a);
Result<int> cache_stats(const CacheContext& c);

}  // namespace installer
