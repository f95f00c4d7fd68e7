#include "cache/digest.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <vector>

#include "conf/check.h"

namespace cache {

std::string md5_of_etag(std::string_view etag) {
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"') {
    etag = etag.substr(1, etag.size() - 2);
  }
  if (etag.size() != 32) {
    return "";  // also "W/..." and "...-N"
  }
  std::string out(etag);
  for (char& c : out) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return "";
    }
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

struct Md5::Ctx {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Ctx() { EVP_MD_CTX_free(ctx); }
};

Md5::Md5() : ctx_(std::make_unique<Ctx>()) {
  TUSK_CHECK(ctx_->ctx != nullptr && EVP_DigestInit_ex(ctx_->ctx, EVP_md5(), nullptr) == 1);
}
Md5::~Md5() = default;
Md5::Md5(Md5&&) noexcept = default;
Md5& Md5::operator=(Md5&&) noexcept = default;

void Md5::update(const void* p, std::size_t n) { EVP_DigestUpdate(ctx_->ctx, p, n); }

std::string Md5::hex() {
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_->ctx, d, &n);
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < n; ++i) {
    out += kHex[d[i] >> 4];
    out += kHex[d[i] & 15];
  }
  return out;
}

std::string md5_of_fd(int fd, std::uint64_t size,
                      const std::function<bool(std::uint64_t)>& progress) {
  Md5 md5;
  std::vector<char> buf(1u << 20);
  for (std::uint64_t off = 0; off < size;) {
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - off));
    const ssize_t r = ::pread(fd, buf.data(), want, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      return "";
    }
    md5.update(buf.data(), static_cast<std::size_t>(r));
    off += static_cast<std::uint64_t>(r);
    if (progress && !progress(static_cast<std::uint64_t>(r))) {
      return "";
    }
  }
  return md5.hex();
}

OrderedDigest::OrderedDigest(std::uint64_t size, std::atomic<std::int64_t>* budget)
    : size_(size), budget_(budget) {}

OrderedDigest::~OrderedDigest() {
  if (budget_ != nullptr && held_ > 0) {
    budget_->fetch_add(static_cast<std::int64_t>(held_));
  }
}

void OrderedDigest::hash(const char* p, std::size_t n) {
  md5_.update(p, n);
  frontier_ += n;
}

void OrderedDigest::feed(std::uint64_t off, const char* p, std::size_t n) {
  if (off + n <= frontier_ || off + n > size_) {
    return;  // hashed already (or outside the object: a caller bug, ignored)
  }
  if (off < frontier_) {
    const std::uint64_t skip = frontier_ - off;
    p += skip;
    n -= static_cast<std::size_t>(skip);
    off = frontier_;
  }
  if (off == frontier_) {
    hash(p, n);
    consume_held();
    return;
  }
  // Ahead of the frontier: hold a copy if the budget allows, else it is read back later.
  if (budget_ == nullptr || budget_->fetch_sub(static_cast<std::int64_t>(n)) < static_cast<std::int64_t>(n)) {
    if (budget_ != nullptr) {
      budget_->fetch_add(static_cast<std::int64_t>(n));
    }
    return;
  }
  held_ += n;
  // Appending to the piece that ends here keeps one entry per run of bytes.
  if (auto it = ahead_.lower_bound(off); it != ahead_.begin()) {
    --it;
    if (it->first + it->second.size() == off) {
      it->second.append(p, n);
      return;
    }
  }
  ahead_.emplace(off, std::string(p, n));
}

void OrderedDigest::feed_reserved(std::uint64_t off, std::string&& bytes) {
  const auto give_back = [&](std::size_t n) {
    if (budget_ != nullptr) {
      budget_->fetch_add(static_cast<std::int64_t>(n));
    }
  };
  const std::size_t n = bytes.size();
  if (off + n <= frontier_ || off + n > size_) {
    give_back(n);
    return;
  }
  if (off <= frontier_) {
    const std::size_t skip = static_cast<std::size_t>(frontier_ - off);
    hash(bytes.data() + skip, n - skip);
    give_back(n);
    consume_held();
    return;
  }
  held_ += n;
  if (auto it = ahead_.lower_bound(off); it != ahead_.begin()) {
    --it;
    if (it->first + it->second.size() == off) {
      it->second.append(bytes);
      return;
    }
  }
  ahead_.emplace(off, std::move(bytes));
}

void OrderedDigest::consume_held() {
  while (!ahead_.empty()) {
    auto it = ahead_.begin();
    if (it->first > frontier_) {
      return;
    }
    const std::uint64_t end = it->first + it->second.size();
    if (end > frontier_) {
      const std::uint64_t skip = frontier_ - it->first;
      hash(it->second.data() + skip, static_cast<std::size_t>(end - frontier_));
    }
    held_ -= it->second.size();
    if (budget_ != nullptr) {
      budget_->fetch_add(static_cast<std::int64_t>(it->second.size()));
    }
    ahead_.erase(it);
  }
}

bool OrderedDigest::catch_up(std::uint64_t end, const Reader& read) {
  end = std::min(end, size_);
  std::vector<char> buf;
  while (frontier_ < end) {
    consume_held();
    if (frontier_ >= end) {
      break;
    }
    // Read back up to the next held piece (or `end`), at most 1 MiB at a time.
    std::uint64_t stop = end;
    if (!ahead_.empty()) {
      stop = std::min(stop, ahead_.begin()->first);
    }
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(stop - frontier_, 1u << 20));
    buf.resize(n);
    if (!read(frontier_, buf.data(), n)) {
      return false;
    }
    reread_ += n;
    hash(buf.data(), n);
  }
  consume_held();
  return true;
}

std::string OrderedDigest::hex() {
  TUSK_CHECK(complete());
  return md5_.hex();
}

}  // namespace cache
