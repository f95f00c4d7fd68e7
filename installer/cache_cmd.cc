// `tusk cache`: pure helpers over the admin API's JSON first, then the commands. Tricky: answers
// are parsed as ordered_json so `--json` prints them with the server's key order; a job is polled
// until "done" and per-object lines come from JobTracker; a transport error while polling is
// retried twice (tuskd may be busy) because the job keeps running whether we watch it or not.
#include "installer/cache_cmd.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "installer/progress.h"
#include "s3/sign.h"

namespace installer {
namespace {

using Json = nlohmann::ordered_json;

constexpr std::uint64_t kMaxPage = 1000;  // the contract's largest `limit`
constexpr auto kPollInterval = std::chrono::milliseconds(500);
constexpr int kPollAttempts = 3;  // transport failures in a row before a poll gives up
constexpr int kBarWidth = 30;

std::optional<Json> parse_json(std::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return std::nullopt;
  }
  return j;
}

std::string dump(const Json& j) { return j.dump(2, ' ', false, Json::error_handler_t::replace); }

const Json* field(const Json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() ? nullptr : &*it;
}

std::string str(const Json& j, const char* key) {
  const Json* v = field(j, key);
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

std::optional<std::string> opt_str(const Json& j, const char* key) {
  const Json* v = field(j, key);
  if (v && v->is_string()) {
    return v->get<std::string>();
  }
  return std::nullopt;
}

std::uint64_t u64(const Json& j, const char* key) {
  const Json* v = field(j, key);
  if (!v) return 0;
  if (v->is_number_unsigned()) return v->get<std::uint64_t>();
  if (v->is_number_integer()) return std::max<std::int64_t>(v->get<std::int64_t>(), 0);
  if (v->is_number_float() && v->get<double>() > 0 && v->get<double>() < 1.8e19) {
    return static_cast<std::uint64_t>(v->get<double>());
  }
  return 0;
}

std::int64_t i64(const Json& j, const char* key) {
  const Json* v = field(j, key);
  if (!v) return 0;
  if (v->is_number_integer()) return v->get<std::int64_t>();
  if (v->is_number_float()) return static_cast<std::int64_t>(v->get<double>());
  return 0;
}

bool boolean(const Json& j, const char* key) {
  const Json* v = field(j, key);
  return v && v->is_boolean() && v->get<bool>();
}

// Terminal columns taken by UTF-8 text: code points (continuation bytes do not count).
std::size_t text_width(std::string_view s) {
  return std::count_if(s.begin(), s.end(),
                       [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; });
}

std::string plural(std::uint64_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

CachedObject object_from_json(const Json& j) {
  CachedObject o;
  if (!j.is_object()) return o;
  o.path = opt_str(j, "path");
  o.upstream = str(j, "upstream");
  o.bucket = str(j, "bucket");
  o.key = str(j, "key");
  o.size = u64(j, "size");
  o.cached_bytes = u64(j, "cached_bytes");
  o.complete = boolean(j, "complete");
  o.integrity = str(j, "integrity");
  o.stored_at = i64(j, "stored_at");
  return o;
}

Result<ObjectPage> page_from_json(const Json& j) {
  if (!j.is_object()) return fail(Errc::kFormat, "the object list is not a JSON object");
  const Json* objects = field(j, "objects");
  if (!objects || !objects->is_array()) {
    return fail(Errc::kFormat, "the object list has no \"objects\" array");
  }
  const Json* next = field(j, "next");
  if (next && !next->is_null() && !next->is_string()) {
    return fail(Errc::kFormat, "the object list's \"next\" is neither a string nor null");
  }
  ObjectPage page;
  for (const auto& o : *objects) {
    page.objects.push_back(object_from_json(o));
  }
  if (next && next->is_string()) page.next = next->get<std::string>();
  return page;
}

Result<Job> job_from_json(const Json& j) {
  if (!j.is_object()) return fail(Errc::kFormat, "the job is not a JSON object");
  const Json* done = field(j, "done");
  if (!done || !done->is_boolean()) return fail(Errc::kFormat, "the job has no boolean \"done\"");
  Job job;
  job.id = str(j, "id");
  job.kind = str(j, "kind");
  job.done = done->get<bool>();
  job.objects_total = u64(j, "objects_total");
  job.objects_done = u64(j, "objects_done");
  job.bytes_total = u64(j, "bytes_total");
  job.bytes_done = u64(j, "bytes_done");
  job.errors = u64(j, "errors");
  if (const Json* objects = field(j, "objects"); objects && objects->is_array()) {
    for (const auto& o : *objects) {
      if (!o.is_object()) continue;
      JobObject jo;
      jo.path = opt_str(o, "path");
      jo.state = str(o, "state");
      jo.result = opt_str(o, "result");
      jo.error = opt_str(o, "error");
      jo.bytes_done = u64(o, "bytes_done");
      jo.bytes_total = u64(o, "bytes_total");
      job.objects.push_back(std::move(jo));
    }
  }
  return job;
}

std::string scalar_text(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string percent_text(double ratio) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", 100 * ratio);
  return buf;
}

std::string stats_text(const Json& j) {
  std::string out;
  std::set<std::string> shown;
  auto line = [&](const std::string& k, const std::string& v) { out += k + ": " + v + "\n"; };
  auto has = [&](const char* k) {
    bool ok = j.contains(k) && j.at(k).is_number();
    if (ok) shown.insert(k);
    return ok;
  };
  auto count = [&](const char* k, const char* label) {
    if (has(k)) line(label, std::to_string(u64(j, k)));
  };
  auto size = [&](const char* k, const char* label) {
    if (has(k)) line(label, human_bytes(u64(j, k)));
  };
  count("objects", "objects");
  if (has("bytes")) {
    std::string v = human_bytes(u64(j, "bytes"));
    if (has("max_bytes") && u64(j, "max_bytes") > 0) {
      v += " of " + human_bytes(u64(j, "max_bytes")) + " (" +
           percent_text(static_cast<double>(u64(j, "bytes")) / u64(j, "max_bytes")) + ")";
    }
    line("bytes", v);
  } else {
    size("max_bytes", "max bytes");
  }
  count("fills_in_flight", "fills in flight");
  count("connections", "connections");
  count("requests", "requests");
  count("hits", "hits");
  count("misses", "misses");
  if (has("hit_ratio")) line("hit ratio", percent_text(j.at("hit_ratio").get<double>()));
  size("bytes_sent", "bytes sent");
  size("upstream_bytes", "upstream bytes");
  count("evictions", "evictions");
  count("integrity_failures", "integrity failures");
  if (const Json* r = field(j, "config_reloads"); r && r->is_object()) {
    shown.insert("config_reloads");
    line("config reloads",
         std::to_string(u64(*r, "ok")) + " ok, " + std::to_string(u64(*r, "failed")) + " failed");
  }
  for (const auto& [k, v] : j.items()) {
    if (shown.count(k)) continue;
    std::string label = k;
    std::replace(label.begin(), label.end(), '_', ' ');
    line(label, scalar_text(v));
  }
  return out;
}

Result<void> check_public_path(std::string_view p, const char* what) {
  if (p.empty() || p.front() != '/') {
    return fail(Errc::kUsage, std::string(what) + " is a public path and starts with '/' (e.g. " +
                                  "/starter-emis/x.tgz), not \"" + std::string(p) + "\"");
  }
  return {};
}

// One admin call: the JSON of a 2xx answer, or the error the commands report.
Result<Json> call(const CacheContext& c, const std::string& method, const std::string& url,
                  const std::string& body = {}) {
  Headers h{{"Accept", "application/json"}};
  if (!c.token.empty()) h.emplace_back("Authorization", "Bearer " + c.token);
  if (method == "POST") {
    // Even without a body: curl would otherwise call it a form, which it is not.
    h.emplace_back("Content-Type", "application/json");
  }
  auto r = c.transport(method, url, h, body);
  if (!r) {
    if (r.error().code == Errc::kNetwork) {
      std::string why = r.error().message;
      if (std::string head = method + " " + url + ": "; why.rfind(head, 0) == 0) {
        why.erase(0, head.size());
      }
      return fail(Errc::kNetwork,
                  "cannot reach tuskd's admin API at " + c.base + ": " + why +
                      " (is tuskd running? --admin or TUSK_ADMIN_URL sets the URL)");
    }
    return conf::unexpected(r.error());
  }
  if (r->status < 200 || r->status >= 300) {
    return fail(Errc::kRemote, admin_error_message(r->status, r->body));
  }
  auto j = parse_json(r->body);
  if (!j) return fail(Errc::kFormat, method + " " + url + ": the answer is not JSON");
  return std::move(*j);
}

void print(std::FILE* f, const std::string& text) {
  std::fwrite(text.data(), 1, text.size(), f);
  std::fflush(f);
}

// The progress bar on a terminal: each draw overwrites the last, padded over a longer one.
class Bar {
 public:
  explicit Bar(std::FILE* f) : f_(f) {}
  void draw(const std::string& line) {
    std::size_t w = text_width(line);
    print(f_, "\r" + line + std::string(w < width_ ? width_ - w : 0, ' '));
    width_ = w;
  }
  void clear() {
    if (width_ > 0) print(f_, "\r" + std::string(width_, ' ') + "\r");
    width_ = 0;
  }
  void end() {
    if (width_ > 0) print(f_, "\n");
    width_ = 0;
  }

 private:
  std::FILE* f_;
  std::size_t width_ = 0;
};

// warm and verify: start the job, then poll it until done.
Result<int> run_job(const CacheContext& c, const std::string& kind, const std::string& start_url,
                    const std::string& body, bool no_wait) {
  auto started = call(c, "POST", start_url, body);
  if (!started) return conf::unexpected(started.error());
  std::string id = started->is_object() ? str(*started, "id") : "";
  if (id.empty()) return fail(Errc::kFormat, "POST " + start_url + ": the answer has no \"id\"");
  if (no_wait) {
    print(c.out, c.json ? dump(*started) + "\n" : id + "\n");
    return 0;
  }
  JobTracker tracker;
  Bar bar(c.err);
  int attempts = 0;
  for (;;) {
    auto j = call(c, "GET", job_url(c.base, kind, id));
    if (!j && j.error().code == Errc::kNetwork && ++attempts < kPollAttempts) {
      c.sleep(kPollInterval);
      continue;
    }
    if (!j) {
      bar.end();
      Error e = j.error();
      e.message += " (the " + kind + " job " + id + " goes on in tuskd)";
      return conf::unexpected(std::move(e));
    }
    attempts = 0;
    auto job = job_from_json(*j);
    if (!job) {
      bar.end();
      return fail(Errc::kFormat, "GET " + job_url(c.base, kind, id) + ": " + job.error().message);
    }
    for (const auto& o : tracker.update(*job)) {
      if (!c.tty) {
        print(c.err, job_object_line(o) + "\n");
      } else if (is_problem(o)) {
        bar.clear();
        print(c.err, job_object_line(o) + "\n");
      }
    }
    if (c.tty) bar.draw(job_progress_line(*job));
    if (job->done) {
      bar.end();
      print(c.out, c.json ? dump(*j) + "\n" : job_summary(*job) + "\n");
      return job_exit_code(*job);
    }
    c.sleep(kPollInterval);
  }
}

}  // namespace

// --- where the admin API is, and with which token ------------------------------------------------

Result<std::string> admin_base(const std::string& flag, const EnvFn& env) {
  std::string url = flag;
  if (url.empty()) {
    auto v = env("TUSK_ADMIN_URL");
    url = v && !v->empty() ? *v : std::string(kDefaultAdminUrl);
  }
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    return fail(Errc::kUsage,
                "--admin / TUSK_ADMIN_URL must be an http:// or https:// URL, not \"" + url + "\"");
  }
  while (url.size() > 8 && url.back() == '/') url.pop_back();
  return url;
}

Result<std::string> parse_token(std::string_view contents, const std::string& file) {
  if (!contents.empty() && contents.back() == '\n') contents.remove_suffix(1);
  if (!contents.empty() && contents.back() == '\r') contents.remove_suffix(1);
  if (contents.empty()) return fail(Errc::kUsage, "token file " + file + " is empty");
  for (char ch : contents) {
    auto u = static_cast<unsigned char>(ch);
    if (u < 0x20 || u == 0x7f) {
      return fail(Errc::kUsage,
                  "token file " + file + " holds more than one line or a control character");
    }
  }
  return std::string(contents);
}

constexpr std::size_t kMaxTokenFileBytes = 4096;

Result<std::string> read_admin_token(const std::string& flag, const EnvFn& env) {
  std::string file = flag;
  if (file.empty()) {
    auto v = env("TUSK_ADMIN_TOKEN_FILE");
    file = v ? *v : "";
  }
  if (file.empty()) return std::string();
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    return fail(Errc::kIo, "cannot read token file " + file);
  }
  // Bounded: a token is short; /dev/zero or a wrong file must not be read whole.
  std::string text(kMaxTokenFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) {
    return fail(Errc::kIo, "cannot read token file " + file);
  }
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > kMaxTokenFileBytes) {
    return fail(Errc::kUsage, "token file " + file + " is longer than 4 KiB");
  }
  return parse_token(text, file);
}

// --- URLs and bodies -----------------------------------------------------------------------------

std::string query_encode(std::string_view value) { return s3::uri_encode(value, true); }

std::string objects_url(std::string_view base, std::string_view prefix, std::uint64_t limit,
                        std::string_view after) {
  std::string url = std::string(base) + "/objects?";
  if (!prefix.empty()) url += "prefix=" + query_encode(prefix) + "&";
  url += "limit=" + std::to_string(limit);
  if (!after.empty()) url += "&after=" + query_encode(after);
  return url;
}

std::string purge_url(std::string_view base, std::string_view path_or_prefix, bool is_prefix) {
  return std::string(base) + (is_prefix ? "/objects?prefix=" : "/objects?path=") +
         query_encode(path_or_prefix);
}

std::string verify_url(std::string_view base, std::string_view prefix) {
  std::string url = std::string(base) + "/verify";
  if (!prefix.empty()) url += "?prefix=" + query_encode(prefix);
  return url;
}

std::string job_url(std::string_view base, std::string_view kind, std::string_view id) {
  return std::string(base) + "/" + std::string(kind) + "/" + s3::uri_encode(id, false);
}

std::string warm_body(const std::string& catalog, const std::vector<std::string>& paths) {
  Json j = catalog.empty() ? Json{{"paths", paths}} : Json{{"catalog", catalog}};
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// --- answers -------------------------------------------------------------------------------------

std::string admin_error_message(int status, std::string_view body) {
  std::string msg;
  if (auto j = parse_json(body); j && j->is_object()) {
    msg = str(*j, "error");
  } else {
    std::string_view first = body.substr(0, body.find('\n'));
    while (!first.empty() && std::isspace(static_cast<unsigned char>(first.back()))) {
      first.remove_suffix(1);
    }
    msg = std::string(first.substr(0, 200));
  }
  if (msg.empty()) msg = "HTTP " + std::to_string(status);
  return std::to_string(status) + ": " + msg;
}

Result<ObjectPage> parse_object_page(std::string_view json) {
  auto j = parse_json(json);
  if (!j) return fail(Errc::kFormat, "the object list is not JSON");
  return page_from_json(*j);
}

Result<Job> parse_job(std::string_view json) {
  auto j = parse_json(json);
  if (!j) return fail(Errc::kFormat, "the job is not JSON");
  return job_from_json(*j);
}

// --- what the commands print ---------------------------------------------------------------------

std::string format_age(std::int64_t stored_at, std::int64_t now) {
  if (stored_at == 0) return "-";
  std::int64_t d = std::max<std::int64_t>(now - stored_at, 0);
  if (d < 60) return std::to_string(d) + "s";
  if (d < 3600) return std::to_string(d / 60) + "m";
  if (d < 86400) return std::to_string(d / 3600) + "h";
  return std::to_string(d / 86400) + "d";
}

std::string cached_percent(const CachedObject& o) {
  if (o.size == 0) return o.complete ? "100%" : "0%";
  if (o.cached_bytes >= o.size) return "100%";
  auto p = static_cast<int>(std::floor(100.0L * o.cached_bytes / o.size));
  return std::to_string(std::min(p, 99)) + "%";
}

std::string object_name(const CachedObject& o) {
  if (o.path) return *o.path;
  return "(no route) " + o.upstream + ":" + o.bucket + "/" + o.key;
}

std::vector<std::string> object_row(const CachedObject& o, std::int64_t now) {
  return {object_name(o),
          human_bytes(o.size),
          cached_percent(o),
          o.complete ? "yes" : "no",
          o.integrity.empty() ? "-" : o.integrity,
          format_age(o.stored_at, now)};
}

std::string format_object_table(const std::vector<CachedObject>& objects, std::int64_t now) {
  std::vector<std::vector<std::string>> rows{
      {"PATH", "SIZE", "CACHED", "COMPLETE", "INTEGRITY", "AGE"}};
  for (const auto& o : objects) {
    rows.push_back(object_row(o, now));
  }
  constexpr bool kRight[] = {false, true, true, false, false, false};
  std::vector<std::size_t> width(rows[0].size(), 0);
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], text_width(r[i]));
  }
  std::string out;
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size(); ++i) {
      std::string pad(width[i] - text_width(r[i]), ' ');
      bool last = i + 1 == r.size();
      out += kRight[i] ? pad + r[i] : r[i] + (last ? "" : pad);
      out += last ? "\n" : "  ";
    }
  }
  return out;
}

std::string job_object_line(const JobObject& o) {
  std::string name = o.path.value_or("(no path)");
  if (o.state == "failed") {
    return "failed " + name + ": " + o.error.value_or(o.result.value_or("no message"));
  }
  std::string line = o.state + " " + name + " " +
                     human_bytes(o.bytes_total ? o.bytes_total : o.bytes_done) + " " +
                     o.result.value_or("-");
  if (o.error && !o.error->empty()) line += ": " + *o.error;
  return line;
}

bool is_problem(const JobObject& o) {
  if (o.state == "failed") return true;
  if (!o.result) return false;
  const std::string& r = *o.result;
  return r != "ok" && r != "cached" && r != "unverifiable" && r != "incomplete";
}

std::string job_progress_line(const Job& job) {
  std::string head = job.kind + " " + job.id + " ";
  if (job.objects_total == 0 && !job.done) {
    return head + (job.kind == "warm" ? "reading the catalog" : "starting");
  }
  double ratio =
      job.done ? 1.0
      : job.bytes_total > 0
          ? static_cast<double>(std::min(job.bytes_done, job.bytes_total)) / job.bytes_total
          : static_cast<double>(std::min(job.objects_done, job.objects_total)) / job.objects_total;
  int filled = static_cast<int>(kBarWidth * ratio);
  char pct[16];
  std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(100 * ratio));
  return head + "[" + std::string(filled, '#') + std::string(kBarWidth - filled, ' ') + "] " + pct +
         "  " + std::to_string(job.objects_done) + "/" + std::to_string(job.objects_total) +
         " objects  " + human_bytes(job.bytes_done) + " / " + human_bytes(job.bytes_total);
}

std::string job_summary(const Job& job) {
  std::map<std::string, std::uint64_t> counts;
  for (const auto& o : job.objects) {
    ++counts[o.state == "failed" ? "failed" : o.result.value_or(o.state.empty() ? "?" : o.state)];
  }
  std::string out = job.kind + " " + job.id + ": " + plural(job.objects_total, "object") + ", " +
                    human_bytes(job.bytes_done);
  std::string sep = ": ";
  auto add = [&](const std::string& label, std::uint64_t n) {
    out += sep + std::to_string(n) + " " + label;
    sep = ", ";
  };
  for (const char* label :
       {"ok", "cached", "unverifiable", "incomplete", "mismatch", "error", "failed"}) {
    if (auto it = counts.find(label); it != counts.end()) {
      add(label, it->second);
      counts.erase(it);
    }
  }
  for (const auto& [label, n] : counts) add(label, n);
  if (job.errors > 0) out += "; " + plural(job.errors, "error");
  return out;
}

int job_exit_code(const Job& job) {
  if (job.errors > 0) return 1;
  for (const auto& o : job.objects) {
    if (o.state == "failed" || o.result == "mismatch" || o.result == "error") return 1;
  }
  return 0;
}

std::vector<JobObject> JobTracker::update(const Job& job) {
  std::vector<JobObject> out;
  std::map<std::string, std::size_t> finished;
  for (const auto& o : job.objects) {
    if (o.state != "done" && o.state != "failed") continue;
    const std::string key = o.path.value_or("");
    std::size_t n = ++finished[key];
    std::size_t& reported = reported_[key];
    if (n > reported) {
      reported = n;
      out.push_back(o);
    }
  }
  return out;
}

Result<std::string> format_stats(std::string_view json) {
  auto j = parse_json(json);
  if (!j || !j->is_object()) return fail(Errc::kFormat, "the stats are not a JSON object");
  return stats_text(*j);
}

// --- the commands --------------------------------------------------------------------------------

Result<int> cache_ls(const CacheContext& c, const LsArgs& a) {
  if (!a.prefix.empty()) {
    if (auto ok = check_public_path(a.prefix, "PREFIX"); !ok) return conf::unexpected(ok.error());
  }
  Json all = Json::array();
  std::vector<CachedObject> objects;
  std::string after;
  for (;;) {
    std::uint64_t want = a.limit ? std::min(kMaxPage, a.limit - objects.size()) : kMaxPage;
    std::string url = objects_url(c.base, a.prefix, want, after);
    auto j = call(c, "GET", url);
    if (!j) return conf::unexpected(j.error());
    auto page = page_from_json(*j);
    if (!page) return fail(Errc::kFormat, "GET " + url + ": " + page.error().message);
    const Json& raw = j->at("objects");
    for (std::size_t i = 0; i < page->objects.size(); ++i) {
      if (a.limit && objects.size() == a.limit) break;
      all.push_back(raw[i]);
      objects.push_back(std::move(page->objects[i]));
    }
    if (!page->next || (a.limit && objects.size() == a.limit)) break;
    if (*page->next == after) {
      return fail(Errc::kFormat, "GET " + url + ": the server answered the same cursor again");
    }
    after = *page->next;
  }
  print(c.out, c.json ? dump(all) + "\n" : format_object_table(objects, c.now()));
  return 0;
}

Result<int> cache_purge(const CacheContext& c, const PurgeArgs& a) {
  if (a.path.empty() == a.prefix.empty()) {
    return fail(Errc::kUsage, "purge takes a PATH or --prefix P (one of them)");
  }
  bool by_prefix = !a.prefix.empty();
  const std::string& what = by_prefix ? a.prefix : a.path;
  if (auto ok = check_public_path(what, by_prefix ? "--prefix" : "PATH"); !ok) {
    return conf::unexpected(ok.error());
  }
  auto j = call(c, "DELETE", purge_url(c.base, what, by_prefix));
  if (!j) return conf::unexpected(j.error());
  print(c.out, c.json ? dump(*j) + "\n"
                      : "purged " + std::to_string(j->is_object() ? u64(*j, "purged") : 0) + "\n");
  return 0;
}

Result<int> cache_warm(const CacheContext& c, const WarmArgs& a) {
  if (a.catalog.empty() == a.paths.empty()) {
    return fail(Errc::kUsage, "warm takes --catalog PATH or PATH... (one of them)");
  }
  for (const auto& p : a.catalog.empty() ? a.paths : std::vector<std::string>{a.catalog}) {
    if (auto ok = check_public_path(p, a.catalog.empty() ? "PATH" : "--catalog"); !ok) {
      return conf::unexpected(ok.error());
    }
  }
  return run_job(c, "warm", c.base + "/warm", warm_body(a.catalog, a.paths), a.no_wait);
}

Result<int> cache_verify(const CacheContext& c, const VerifyArgs& a) {
  if (!a.prefix.empty()) {
    if (auto ok = check_public_path(a.prefix, "PREFIX"); !ok) return conf::unexpected(ok.error());
  }
  return run_job(c, "verify", verify_url(c.base, a.prefix), {}, a.no_wait);
}

Result<int> cache_stats(const CacheContext& c) {
  auto j = call(c, "GET", c.base + "/stats");
  if (!j) return conf::unexpected(j.error());
  if (!j->is_object()) return fail(Errc::kFormat, "GET " + c.base + "/stats: not a JSON object");
  print(c.out, c.json ? dump(*j) + "\n" : stats_text(*j));
  return 0;
}

}  // namespace installer
