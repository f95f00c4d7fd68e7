// Live reload (issue 10): SIGHUP and POST /reload re-read the configuration file. A file that
// fails validation is refused and the running configuration stays. Otherwise routes, upstreams
// (endpoints, keys: key rotation, timeouts), TTLs, fill.parallel, the log level and the admin
// token change at once for new requests: upstreams that changed get new clients, built on the
// fetch loop; requests and fills in flight finish on what they started with (they hold their
// Live generation and their origin). Settings read only at start are reported, not ignored.
// Threads: reload() from any thread but the fetch loop's; calls are serialised.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "conf/config.h"
#include "conf/result.h"
#include "proxy/loop.h"
#include "proxy/services.h"

namespace proxy {

struct ReloadResult {
  bool ok = false;
  std::string error;                        // file:line:column: message, when refused
  std::vector<std::string> restart_needed;  // settings that changed but apply only at start
  std::uint64_t generation = 0;             // of the configuration now serving
};

// Pure: the settings that differ between the configuration the process started with and
// `next` but take effect only at start (listen addresses, the cache, connection limits, ...).
std::vector<std::string> restart_needed(const conf::Config& running, const conf::Config& next);

// The admin token from `path` ("" when path is ""): the file's content minus one trailing
// newline. Errors: unreadable, empty, or longer than 4 KiB (text without the token).
conf::Result<std::string, std::string> read_token_file(const std::string& path);

class Reloader {
 public:
  Reloader(std::string path, Services& svc, EventLoop& fetch);
  ReloadResult reload();

 private:
  std::mutex mu_;
  std::string path_;
  Services& svc_;
  EventLoop& fetch_;
};

}  // namespace proxy
