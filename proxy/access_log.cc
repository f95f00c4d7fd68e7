// The access log's line formats (pure) and its buffered, reopenable file.
#include "proxy/access_log.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "s3/printable.h"

namespace proxy {
namespace {

constexpr std::size_t kMaxTarget = 1024;
constexpr std::size_t kMaxField = 256;

// "05/May/2024:10:00:00 +0000" (the combined format's time, UTC) and "2024-05-05T10:00:00"
// (ISO 8601, UTC); formatted once per second per thread, as nginx does.
struct SecondText {
  std::int64_t at = -1;
  char clf[64] = {};
  char iso[64] = {};
};

const SecondText& second_text(std::int64_t unix_s) {
  thread_local SecondText t;
  if (t.at != unix_s) {
    t.at = unix_s;
    const std::time_t s = static_cast<std::time_t>(unix_s);
    std::tm tm{};
    gmtime_r(&s, &tm);
    static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                              "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    std::snprintf(t.clf, sizeof t.clf, "%02d/%s/%04d:%02d:%02d:%02d +0000", tm.tm_mday,
                  kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    std::snprintf(t.iso, sizeof t.iso, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  }
  return t;
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  return a / b - ((a % b != 0) && ((a < 0) != (b < 0)) ? 1 : 0);
}

// Seconds with millisecond precision, or `none` when unknown.
void append_seconds(std::string& out, double ms, const char* none) {
  if (ms < 0) {
    out += none;
    return;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", ms / 1000.0);
  out += buf;
}

void append_number(std::string& out, std::uint64_t n) { out += std::to_string(n); }

// s3::printable text (no control byte, no '"', valid UTF-8) as a JSON string: only the
// backslashes of its \xHH escapes need escaping.
void append_json_string(std::string& out, std::string_view printable_text) {
  out += '"';
  for (char c : printable_text) {
    if (c == '\\') {
      out += "\\\\";
    } else {
      out += c;
    }
  }
  out += '"';
}

// Combined-format field: quoted printable text, "-" when empty.
void append_quoted(std::string& out, std::string_view text, std::size_t max) {
  out += '"';
  out += text.empty() ? std::string("-") : s3::printable(text, max);
  out += '"';
}

}  // namespace

std::string loggable_url(std::string_view url) {
  if (std::size_t hash = url.find('#'); hash != std::string_view::npos) {
    url = url.substr(0, hash);
  }
  std::string_view query;
  bool has_query = false;
  if (std::size_t q = url.find('?'); q != std::string_view::npos) {
    query = url.substr(q + 1);
    url = url.substr(0, q);
    has_query = true;
  }
  std::string out;
  out.reserve(url.size() + query.size() + 1);
  // An absolute URL's authority may carry "user:password@".
  if (std::size_t scheme = url.find("://"); scheme != std::string_view::npos) {
    const std::size_t start = scheme + 3;
    std::size_t end = url.find('/', start);
    if (end == std::string_view::npos) {
      end = url.size();
    }
    std::string_view authority = url.substr(start, end - start);
    if (std::size_t at = authority.rfind('@'); at != std::string_view::npos) {
      authority.remove_prefix(at + 1);
    }
    out.append(url.substr(0, start));
    out.append(authority);
    url.remove_prefix(end);
  }
  out.append(url);
  if (has_query) {
    out += '?';
    bool first = true;
    while (true) {
      const std::size_t amp = query.find('&');
      std::string_view param = query.substr(0, amp);
      if (!first) {
        out += '&';
      }
      first = false;
      out.append(param.substr(0, param.find('=')));
      if (amp == std::string_view::npos) {
        break;
      }
      query.remove_prefix(amp + 1);
    }
  }
  return out;
}

namespace {
// One space-free token: printable ASCII kept, anything else (space, '"', '\\', control and
// non-ASCII bytes) as \xHH, at most 128 bytes of input.
std::string user_field(std::string_view user) {
  std::string out;
  for (unsigned char c : user.substr(0, 128)) {
    if (c > 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02X", c);
      out += hex;
    }
  }
  return out;
}
}  // namespace

std::string format_combined(const AccessEntry& e) {
  std::string out;
  out.reserve(256 + e.target.size());
  out += e.client.empty() ? std::string("-") : s3::printable(e.client, 64);
  out += " - ";
  // The remote user field (%u): the key id of a presigned URL or token, quoted only if it would
  // break the field (client bytes: printable, spaces and quotes escaped).
  out += e.user.empty() ? std::string("-") : user_field(e.user);
  out += " [";
  out += second_text(floor_div(e.unix_ms, 1000)).clf;
  out += "] \"";
  if (e.method.empty()) {
    out += "- -";
  } else {
    out += s3::printable(e.method, 32);
    out += ' ';
    out += s3::printable(loggable_url(e.target), kMaxTarget);
    out += " HTTP/1.";
    append_number(out, static_cast<std::uint64_t>(e.minor == 0 ? 0 : 1));
  }
  out += "\" ";
  out += std::to_string(e.status);
  out += ' ';
  append_number(out, e.bytes);
  out += ' ';
  append_quoted(out, e.referer.empty() ? std::string() : loggable_url(e.referer), kMaxField);
  out += ' ';
  append_quoted(out, e.user_agent, kMaxField);
  out += ' ';
  out += e.outcome.empty() ? std::string("-") : s3::printable(e.outcome, 32);
  out += " range=";
  append_quoted(out, e.range, kMaxField);
  out += " upstream=";
  append_seconds(out, e.upstream_ms, "-");
  out += " time=";
  append_seconds(out, e.total_ms, "-");
  if (!e.reason.empty()) {
    out += " reason=";
    append_quoted(out, e.reason, kMaxField);
  }
  out += '\n';
  return out;
}

std::string format_json(const AccessEntry& e) {
  std::string out;
  out.reserve(320 + e.target.size());
  const std::int64_t s = floor_div(e.unix_ms, 1000);
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03dZ", static_cast<int>(e.unix_ms - s * 1000));
  out += "{\"time\":\"";
  out += second_text(s).iso;
  out += ms;
  out += "\",\"client\":";
  append_json_string(out, s3::printable(e.client, 64));
  out += ",\"method\":";
  append_json_string(out, s3::printable(e.method, 32));
  out += ",\"target\":";
  append_json_string(
      out, e.method.empty() ? std::string() : s3::printable(loggable_url(e.target), kMaxTarget));
  out += ",\"protocol\":";
  append_json_string(out, e.method.empty() ? "" : e.minor == 0 ? "HTTP/1.0" : "HTTP/1.1");
  out += ",\"status\":";
  out += std::to_string(e.status);
  out += ",\"bytes\":";
  append_number(out, e.bytes);
  out += ",\"outcome\":";
  append_json_string(out, s3::printable(e.outcome, 32));
  out += ",\"range\":";
  append_json_string(out, s3::printable(e.range, kMaxField));
  out += ",\"referer\":";
  append_json_string(
      out, s3::printable(e.referer.empty() ? std::string() : loggable_url(e.referer), kMaxField));
  out += ",\"user_agent\":";
  append_json_string(out, s3::printable(e.user_agent, kMaxField));
  if (!e.user.empty()) {
    out += ",\"user\":";
    append_json_string(out, s3::printable(e.user, 128));
  }
  out += ",\"upstream_time\":";
  append_seconds(out, e.upstream_ms, "null");
  out += ",\"request_time\":";
  append_seconds(out, e.total_ms, "null");
  if (!e.reason.empty()) {
    out += ",\"reason\":";
    append_json_string(out, s3::printable(e.reason, kMaxField));
  }
  out += "}\n";
  return out;
}

// ---------------------------------------------------------------- AccessLog

namespace {

conf::Result<int, std::string> open_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) {
    return conf::unexpected("cannot open the access log " + path + ": " + std::strerror(errno));
  }
  return fd;
}

}  // namespace

conf::Result<std::shared_ptr<AccessLog>, std::string> AccessLog::open(const std::string& path,
                                                                      conf::LogFormat format) {
  if (path == "off") {
    return std::shared_ptr<AccessLog>();
  }
  if (path.empty()) {
    return std::shared_ptr<AccessLog>(new AccessLog(path, STDERR_FILENO, false, format));
  }
  if (path == "stdout") {
    return std::shared_ptr<AccessLog>(new AccessLog(path, STDOUT_FILENO, false, format));
  }
  auto fd = open_file(path);
  if (!fd) {
    return conf::unexpected(fd.error());
  }
  return std::shared_ptr<AccessLog>(new AccessLog(path, *fd, true, format));
}

AccessLog::AccessLog(std::string path, int fd, bool owns_fd, conf::LogFormat format)
    : path_(std::move(path)), format_(format), owns_fd_(owns_fd), fd_(fd) {
  buf_.reserve(kFlushBytes + 4096);
  thread_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  flush();
  if (owns_fd_) {
    ::close(fd_);
  }
}

void AccessLog::write(const AccessEntry& e) {
  std::string line = format_ == conf::LogFormat::kJson ? format_json(e) : format_combined(e);
  std::unique_lock lock(mu_);
  buf_ += line;
  if (buf_.size() >= kFlushBytes) {
    write_out(lock);
  }
}

void AccessLog::flush() {
  std::unique_lock lock(mu_);
  write_out(lock);
}

conf::Result<void, std::string> AccessLog::reopen() {
  if (!owns_fd_) {
    return {};
  }
  auto fd = open_file(path_);
  if (!fd) {
    return conf::unexpected(fd.error());
  }
  std::unique_lock lock(mu_);
  write_out(lock);  // the lines from before the rotation belong to the old file
  std::lock_guard out(out_mu_);
  const int old = fd_;
  fd_ = *fd;
  ::close(old);
  return {};
}

// Takes the buffered lines and writes them with mu_ released (workers go on queueing lines
// meanwhile) but out_mu_ taken before it is released, so batches reach the file in order. Each
// write carries whole lines: another writer of the same file (stderr: tuskd's own log) puts its
// lines between ours, never inside them.
void AccessLog::write_out(std::unique_lock<std::mutex>& lock) {
  if (buf_.empty()) {
    return;
  }
  std::string batch;
  batch.reserve(kFlushBytes + 4096);
  batch.swap(buf_);
  {
    std::lock_guard out(out_mu_);
    lock.unlock();
    std::size_t done = 0;
    while (done < batch.size()) {
      const ssize_t n = ::write(fd_, batch.data() + done, batch.size() - done);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        // A full or failing disk: these lines are lost, the server goes on. Said once a minute.
        const int err = n < 0 ? errno : EIO;
        const auto now = std::chrono::steady_clock::now();
        if (now - warned_at_ > std::chrono::minutes(1)) {
          warned_at_ = now;
          spdlog::warn("access log {}: write failed ({}); {} bytes of lines dropped",
                       path_.empty() ? "stderr" : path_, std::strerror(err), batch.size() - done);
        }
        break;
      }
      done += static_cast<std::size_t>(n);
    }
  }  // out_mu_ released before mu_ is taken again (the order is always mu_, then out_mu_)
  lock.lock();
}

void AccessLog::run() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, kFlushEvery, [this] { return stop_; });
    write_out(lock);
  }
}

}  // namespace proxy
