// The access log: one line per answered request, in the combined format (Apache's and nginx's,
// with tusk's fields appended) or as one JSON object per line (`log.format: json`).
// Lines are formatted by the worker that answered, by the pure functions below, then appended to
// a buffer; a thread of the log writes the buffer out once a second (or when 64 KiB wait), so a
// hit costs no system call. reopen() (SIGUSR1, after logrotate renamed the file) opens the
// configured path anew: lines buffered before it go to the old file, later ones to the new.
// Tricky: everything a client sent is escaped (s3::printable: one line, bounded, valid UTF-8)
// and credentials never reach a line: no Authorization, no userinfo, no query-string values.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "conf/config.h"
#include "conf/result.h"

namespace proxy {

// What one line says. Views must live for the call that formats them.
struct AccessEntry {
  std::int64_t unix_ms = 0;     // when the answer ended (wall clock, milliseconds)
  std::string_view client;      // the client's address (after trusted proxies); "" unknown
  std::string_view user;        // the key id of a presigned URL or token; "" none
  std::string_view method;      // "" : no request could be read (then `reason` says why)
  std::string_view target;      // the request-target as sent (logged through loggable_url)
  int minor = 1;                // HTTP/1.<minor>
  int status = 0;               // the status sent (499: the client went away first)
  std::uint64_t bytes = 0;      // body bytes sent
  std::string_view outcome;     // HIT, MISS, ... (the X-Cache value)
  std::string_view range;       // the Range field as sent; "" none
  std::string_view referer;     // "" none
  std::string_view user_agent;  // "" none
  double upstream_ms = -1;      // waiting for the upstream's answer head; < 0: not asked
  double total_ms = -1;         // from the request head to the end of the answer; < 0: unknown
  std::string_view reason;      // tusk's own reason, for answers given without a request
};

// `url` (a request-target or a Referer) with what may carry a credential removed: userinfo
// before an authority's '@', every query parameter's value (the names stay: `?X-Amz-Signature`)
// and any fragment. Not escaped. Pure.
std::string loggable_url(std::string_view url);

// The line, ending in '\n':
//   combined: 127.0.0.1 - - [05/May/2024:10:00:00 +0000] "GET /p HTTP/1.1" 200 5 "-" "curl/8"
//             MISS range="-" upstream=0.012 time=0.015[ reason="..."]
//   json:     {"time":"2024-05-05T10:00:00.123Z","client":"127.0.0.1","method":"GET",...}
// Times in UTC; durations in seconds with millisecond precision ("-" / null when unknown).
// Client strings are s3::printable (at most 1 KiB of the target, 256 bytes of the others); in
// JSON that text is a JSON string, so a decoded value is exactly the combined format's text.
// Pure.
std::string format_combined(const AccessEntry& e);
std::string format_json(const AccessEntry& e);

class AccessLog {
 public:
  // `path`: "" stderr, "stdout", or a file (created 0640 if missing, appended to). "off" gives
  // a null log (no line is written). Errors: the file cannot be opened (message with errno).
  static conf::Result<std::shared_ptr<AccessLog>, std::string> open(const std::string& path,
                                                                    conf::LogFormat format);
  ~AccessLog();  // writes what is buffered, stops the writer thread, closes the file

  // Formats `e` and queues the line. Any thread.
  void write(const AccessEntry& e);
  // Writes what is buffered now. Any thread.
  void flush();
  // Opens the configured path again (after a rename by logrotate) and writes later lines
  // there; stdout and stderr are left as they are. On error the old file stays in use and the
  // message says why. Any thread.
  conf::Result<void, std::string> reopen();

  conf::LogFormat format() const { return format_; }
  const std::string& path() const { return path_; }

  static constexpr std::size_t kFlushBytes = 64 * 1024;
  static constexpr std::chrono::milliseconds kFlushEvery{1000};

  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

 private:
  AccessLog(std::string path, int fd, bool owns_fd, conf::LogFormat format);
  // Writes the buffered lines out; `lock` holds mu_ on entry and on return.
  void write_out(std::unique_lock<std::mutex>& lock);
  void run();  // the writer thread

  const std::string path_;
  const conf::LogFormat format_;
  const bool owns_fd_;  // false for stdout and stderr
  std::mutex mu_;       // buf_, stop_; taken before out_mu_
  std::condition_variable cv_;
  std::string buf_;
  bool stop_ = false;
  std::mutex out_mu_;  // fd_, warned_at_, and the order of writes
  int fd_;
  std::chrono::steady_clock::time_point warned_at_{};
  std::thread thread_;
};

}  // namespace proxy
