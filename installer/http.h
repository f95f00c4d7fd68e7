// Blocking HTTP for the command line: GET into memory (catalog, small answers), GET streamed to a
// file with progress and an MD5 on the fly (image downloads of any size), and arbitrary methods
// with a small body (EC2 Query POSTs, S3 DELETE). One libcurl easy handle per Http, reused for
// keep-alive; one thread at a time. Never logs header values (they may carry signatures).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "installer/error.h"

namespace installer {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpResponse {
  int status = 0;
  Headers headers;  // of the final response (after redirects)
  std::string body;
  std::string header(std::string_view name) const;  // case-insensitive, "" when absent
};

struct Download {
  std::uint64_t bytes = 0;
  std::optional<std::uint64_t> content_length;  // as announced, when it was
  std::string md5_hex;                          // of the whole file
  std::uint64_t resumed_at = 0;                 // bytes that were on disk already (resume)
};

// `url` for messages and logs: userinfo and the query (presigned signatures, tokens) replaced
// by "***". Every error Http returns names its URL this way.
std::string redact_url(std::string_view url);

class Http {
 public:
  // Errors: libcurl cannot initialise (kNetwork).
  static Result<Http> create(long connect_timeout_s = 10, long stall_timeout_s = 60);
  Http(Http&&) noexcept;
  Http& operator=(Http&&) noexcept;
  ~Http();

  // Any status is returned (callers decide); errors are transport failures only (kNetwork), or a
  // body larger than `max_body` (kFormat). Redirects are followed for GET only.
  Result<HttpResponse> request(const std::string& method, const std::string& url,
                               const Headers& headers, const std::string& body = {},
                               std::size_t max_body = 64 << 20);
  Result<HttpResponse> get(const std::string& url, const Headers& headers = {}) {
    return request("GET", url, headers);
  }

  // GET `url` into `path` (created/truncated). Errors: status >= 300 (kNetwork, with the status),
  // transport failure (kNetwork), fewer or more bytes than Content-Length (kChecksum), write
  // failure (kIo). `progress(done, total)` gets total 0 when the length is unknown.
  // With `resume`, a file already at `path` is kept and only the rest is asked for
  // (Range: bytes=<size>-): a 206 for exactly that is appended, a 200 restarts the file, a 416
  // restarts the download; a 206 for any other range is an error (kNetwork). `max_bytes` (0 =
  // none) bounds the whole file: an announced or received length over it is kChecksum.
  Result<Download> download(const std::string& url, const std::string& path,
                            const std::function<void(std::uint64_t, std::uint64_t)>& progress,
                            bool resume = false, std::uint64_t max_bytes = 0);

 private:
  struct Impl;
  explicit Http(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace installer
