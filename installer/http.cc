// libcurl easy interface behind installer::Http. Tricky: curl reports a short body against
// Content-Length as CURLE_PARTIAL_FILE; we count bytes ourselves too, and hash while writing so a
// multi-GiB download is read from the network exactly once.
#include "installer/http.h"

#include <curl/curl.h>
#include <strings.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <vector>

#include "installer/crypto.h"

namespace installer {
namespace {

struct SlistFree {
  void operator()(curl_slist* s) const { curl_slist_free_all(s); }
};
using SlistPtr = std::unique_ptr<curl_slist, SlistFree>;

SlistPtr make_slist(const Headers& headers) {
  curl_slist* list = nullptr;
  for (const auto& [k, v] : headers) {
    std::string line = v.empty() ? k + ";" : k + ": " + v;
    list = curl_slist_append(list, line.c_str());
  }
  // No "Expect: 100-continue" round trip for uploads.
  list = curl_slist_append(list, "Expect:");
  return SlistPtr(list);
}

struct HeaderSink {
  Headers* headers;
  int* status;
};

size_t on_header(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<HeaderSink*>(user);
  std::string line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) {
    line.pop_back();
  }
  if (line.rfind("HTTP/", 0) == 0) {
    sink->headers->clear();  // a new response (redirect, 100 Continue)
    auto sp = line.find(' ');
    *sink->status = sp == std::string::npos ? 0 : std::atoi(line.c_str() + sp + 1);
  } else if (auto colon = line.find(':'); colon != std::string::npos) {
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    sink->headers->emplace_back(line.substr(0, colon), v);
  }
  return size * n;
}

}  // namespace

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k.size() == name.size() && strncasecmp(k.data(), name.data(), k.size()) == 0) {
      return v;
    }
  }
  return {};
}

struct Http::Impl {
  struct Free {
    void operator()(CURL* c) const { curl_easy_cleanup(c); }
  };
  std::unique_ptr<CURL, Free> easy;
  long connect_timeout = 10;
  long stall_timeout = 60;
  char errbuf[CURL_ERROR_SIZE] = {};

  void reset_common(const std::string& url) {
    CURL* e = easy.get();
    curl_easy_reset(e);
    errbuf[0] = '\0';
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, connect_timeout);
    // Stall detection: less than 1 byte/s for stall_timeout seconds aborts.
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, stall_timeout);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "tusk/0.1.0");
  }

  std::string transport_error(CURLcode rc, const std::string& method, const std::string& url) {
    return method + " " + redact_url(url) + ": " + (errbuf[0] ? errbuf : curl_easy_strerror(rc));
  }
};

std::string redact_url(std::string_view url) {
  std::string out(url);
  std::size_t host = out.find("://");
  host = host == std::string::npos ? 0 : host + 3;
  std::size_t end = out.find_first_of("/?", host);
  std::size_t at = out.rfind('@', end == std::string::npos ? out.size() : end);
  if (at != std::string::npos && at >= host) out.replace(host, at - host, "***");
  if (std::size_t q = out.find('?'); q != std::string::npos)
    out.replace(q + 1, std::string::npos, "***");
  return out;
}

Http::Http(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Http::Http(Http&&) noexcept = default;
Http& Http::operator=(Http&&) noexcept = default;
Http::~Http() = default;

Result<Http> Http::create(long connect_timeout_s, long stall_timeout_s) {
  auto impl = std::make_unique<Impl>();
  impl->easy.reset(curl_easy_init());
  if (!impl->easy) {
    return fail(Errc::kNetwork, "libcurl initialisation failed");
  }
  impl->connect_timeout = connect_timeout_s;
  impl->stall_timeout = stall_timeout_s;
  return Http(std::move(impl));
}

Result<HttpResponse> Http::request(const std::string& method, const std::string& url,
                                   const Headers& headers, const std::string& body,
                                   std::size_t max_body) {
  impl_->reset_common(url);
  CURL* e = impl_->easy.get();
  HttpResponse resp;
  HeaderSink hs{&resp.headers, &resp.status};
  struct BodySink {
    std::string* body;
    std::size_t max;
    bool overflow = false;
  } bs{&resp.body, max_body};
  SlistPtr list = make_slist(headers);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &hs);
  curl_easy_setopt(
      e, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* u) -> size_t {
        auto* b = static_cast<BodySink*>(u);
        if (b->body->size() + s * n > b->max) {
          b->overflow = true;
          return 0;
        }
        b->body->append(d, s * n);
        return s * n;
      });
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &bs);
  if (method == "GET") {
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
  } else if (method == "HEAD") {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (method == "POST") {
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  } else {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (!body.empty()) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
    }
  }
  CURLcode rc = curl_easy_perform(e);
  if (bs.overflow) {
    return fail(Errc::kFormat, method + " " + redact_url(url) + ": response larger than " +
                                   std::to_string(max_body) + " bytes");
  }
  if (rc != CURLE_OK) {
    return fail(Errc::kNetwork, impl_->transport_error(rc, method, url));
  }
  long code = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  resp.status = static_cast<int>(code);
  return resp;
}

Result<Download> Http::download(const std::string& url, const std::string& path,
                                const std::function<void(std::uint64_t, std::uint64_t)>& progress,
                                bool resume, std::uint64_t max_bytes) {
  impl_->reset_common(url);
  CURL* e = impl_->easy.get();
  // Resuming: what the file already holds is hashed first (the MD5 is of the whole file), then
  // only the rest is asked for.
  std::uint64_t have = 0;
  Digest md5(Digest::Algo::kMd5);
  if (resume) {
    std::unique_ptr<FILE, int (*)(FILE*)> old(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (old) {
      std::vector<char> buf(1 << 20);
      for (std::size_t n; (n = std::fread(buf.data(), 1, buf.size(), old.get())) > 0;) {
        md5.update(buf.data(), n);
        have += n;
      }
      if (std::ferror(old.get())) {
        return fail(Errc::kIo, "cannot read " + path + " to resume it");
      }
    }
  }
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), have > 0 ? "ab" : "wb"),
                                          &std::fclose);
  if (!f) {
    return fail(Errc::kIo, "cannot create " + path);
  }
  Headers headers;
  int status = 0;
  HeaderSink hs{&headers, &status};
  struct Sink {
    FILE* f;
    Digest md5;
    Download d;
    const std::function<void(std::uint64_t, std::uint64_t)>* progress;
    std::uint64_t have;  // bytes on disk before this request (0: not resuming)
    std::uint64_t total = 0;
    bool write_error = false;
    bool bad_status = false;
    bool bad_range = false;
    bool too_large = false;
    std::uint64_t max_bytes;
    int* status;
    Headers* headers;
    bool started = false;
  } sink{f.get(), std::move(md5), {},    &progress, have,    0,       false,
         false,   false,          false, max_bytes, &status, &headers};
  sink.d.bytes = have;
  SlistPtr list = make_slist({});
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, &hs);
  if (have > 0) {
    curl_easy_setopt(e, CURLOPT_RESUME_FROM_LARGE, static_cast<curl_off_t>(have));
  }
  curl_easy_setopt(
      e, CURLOPT_WRITEFUNCTION, +[](char* d, size_t s, size_t n, void* u) -> size_t {
        auto* k = static_cast<Sink*>(u);
        if (!k->started) {
          k->started = true;
          if (*k->status >= 300) {
            k->bad_status = true;
            return 0;
          }
          std::string range;
          for (const auto& [name, value] : *k->headers) {
            if (strcasecmp(name.c_str(), "Content-Length") == 0) {
              k->d.content_length = std::strtoull(value.c_str(), nullptr, 10);
            } else if (strcasecmp(name.c_str(), "Content-Range") == 0) {
              range = value;
            }
          }
          if (k->have > 0 && *k->status == 206) {
            // "bytes <have>-<last>/<total>": anything else is not the rest of our file.
            const std::string want = "bytes " + std::to_string(k->have) + "-";
            if (range.rfind(want, 0) != 0) {
              k->bad_range = true;
              return 0;
            }
            if (k->d.content_length) {
              k->d.content_length = *k->d.content_length + k->have;
            }
          } else if (k->have > 0) {
            // The server sent the whole object (it ignores Range): start the file over.
            if (std::fflush(k->f) != 0 || ::ftruncate(::fileno(k->f), 0) != 0 ||
                std::fseek(k->f, 0, SEEK_SET) != 0) {
              k->write_error = true;
              return 0;
            }
            k->md5 = Digest(Digest::Algo::kMd5);
            k->d.bytes = 0;
            k->have = 0;
          }
          if (k->max_bytes > 0 && k->d.content_length && *k->d.content_length > k->max_bytes) {
            k->too_large = true;
            return 0;
          }
        }
        if (k->max_bytes > 0 && k->d.bytes + s * n > k->max_bytes) {
          k->too_large = true;
          return 0;
        }
        if (std::fwrite(d, 1, s * n, k->f) != s * n) {
          k->write_error = true;
          return 0;
        }
        k->md5.update(d, s * n);
        k->d.bytes += s * n;
        if (*k->progress) {
          (*k->progress)(k->d.bytes, k->d.content_length.value_or(0));
        }
        return s * n;
      });
  curl_easy_setopt(e, CURLOPT_WRITEDATA, &sink);
  CURLcode rc = curl_easy_perform(e);
  long code = 0;
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
  if (have > 0 && code == 416) {
    // "bytes */<total>": with total == have the file is complete already (a crash after the
    // download); anything else means the object changed under us: start over.
    for (const auto& [name, value] : headers) {
      if (strcasecmp(name.c_str(), "Content-Range") == 0 &&
          value == "bytes */" + std::to_string(have)) {
        sink.d.content_length = have;
        sink.d.resumed_at = have;
        sink.d.md5_hex = sink.md5.final_hex();
        return sink.d;
      }
    }
    f.reset();
    return download(url, path, progress, /*resume=*/false, max_bytes);
  }
  if (sink.too_large) {
    return fail(Errc::kChecksum, "GET " + redact_url(url) + ": larger than the " +
                                     std::to_string(max_bytes) + " bytes allowed; stopped");
  }
  if (sink.bad_range) {
    return fail(Errc::kNetwork, "GET " + redact_url(url) + ": asked to resume at byte " +
                                    std::to_string(have) + ", the server answered another range");
  }
  if (sink.bad_status || (rc == CURLE_OK && code >= 300)) {
    return fail(Errc::kNetwork, "GET " + redact_url(url) + ": HTTP " + std::to_string(code));
  }
  if (sink.write_error) {
    return fail(Errc::kIo, "write " + path + " failed (disk full?)");
  }
  if (rc == CURLE_PARTIAL_FILE) {
    return fail(Errc::kChecksum, "GET " + redact_url(url) + ": the connection closed after " +
                                     std::to_string(sink.d.bytes) + " bytes, before the " +
                                     "announced Content-Length");
  }
  if (rc != CURLE_OK) {
    return fail(Errc::kNetwork, impl_->transport_error(rc, "GET", url));
  }
  if (!sink.started) {  // empty body: headers were never examined above
    for (const auto& [name, value] : headers) {
      if (strcasecmp(name.c_str(), "Content-Length") == 0) {
        sink.d.content_length = std::strtoull(value.c_str(), nullptr, 10) + sink.have;
      }
    }
  }
  if (std::fflush(f.get()) != 0 || std::fclose(f.release()) != 0) {
    return fail(Errc::kIo, "write " + path + " failed (disk full?)");
  }
  if (sink.d.content_length && *sink.d.content_length != sink.d.bytes) {
    return fail(Errc::kChecksum, "GET " + redact_url(url) + ": received " +
                                     std::to_string(sink.d.bytes) + " bytes, Content-Length said " +
                                     std::to_string(*sink.d.content_length));
  }
  sink.d.resumed_at = have;
  sink.d.md5_hex = sink.md5.final_hex();
  return sink.d;
}

}  // namespace installer
