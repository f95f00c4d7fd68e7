// Integrity of cached bodies (DESIGN.md: the cache owns integrity). S3 and Walrus give a
// single-part object the MD5 of its bytes as its ETag; a fill hashes the bytes as it writes them
// and the object is marked verified only when the two agree.
//
// OrderedDigest hashes an object whose bytes arrive out of order (fill.parallel ranged GETs at
// once, the chunk a client asked for first) in one pass and in order, without reading the file
// again in the common case: bytes given at the frontier are hashed at once; bytes ahead of it
// are held in memory while a process-wide budget allows and hashed when the frontier reaches
// them. Only what the budget refused is read back from the body file (the page cache: it was
// written moments ago), counted in reread_bytes(). Single-threaded: a fill's digest runs on
// the hasher thread (proxy/hasher.h).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

namespace cache {

// The lowercase hex MD5 a single-part ETag names: 32 hex digits, quoted or not, not weak and
// without a "-N" part suffix (a multipart upload's ETag is not the MD5 of the object). "" when
// the ETag is not one.
std::string md5_of_etag(std::string_view etag);

// Streaming MD5 (OpenSSL EVP). Move-only.
class Md5 {
 public:
  Md5();
  ~Md5();
  Md5(Md5&&) noexcept;
  Md5& operator=(Md5&&) noexcept;
  void update(const void* p, std::size_t n);
  std::string hex();  // lowercase; ends the digest

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// MD5 of [0, size) of an open file, read in 1 MiB pieces; `progress(bytes)` after each, which
// may return false to stop. "" on a read error, a short file, or a stop.
std::string md5_of_fd(int fd, std::uint64_t size,
                      const std::function<bool(std::uint64_t)>& progress = {});

class OrderedDigest {
 public:
  // Reads n bytes at off into buf; false on failure.
  using Reader = std::function<bool(std::uint64_t off, char* buf, std::size_t n)>;

  // `budget`: bytes all digests of the process may hold ahead of their frontier (shared; may
  // be null: nothing is buffered, everything ahead is read back).
  OrderedDigest(std::uint64_t size, std::atomic<std::int64_t>* budget);
  ~OrderedDigest();  // returns what it holds to the budget
  OrderedDigest(const OrderedDigest&) = delete;
  OrderedDigest& operator=(const OrderedDigest&) = delete;

  // Bytes [off, off + n) were just written.
  void feed(std::uint64_t off, const char* p, std::size_t n);
  // The same for bytes the caller has already charged to the budget: they are held without a
  // second charge, or hashed (or dropped) and their charge given back.
  void feed_reserved(std::uint64_t off, std::string&& bytes);
  // Every byte of [frontier, end) is written: hash up to `end`, from memory where held, else
  // through `read`. False when a read failed (the digest is then unusable).
  bool catch_up(std::uint64_t end, const Reader& read);

  std::uint64_t frontier() const { return frontier_; }
  bool complete() const { return frontier_ == size_; }
  std::string hex();  // once complete()
  std::uint64_t reread_bytes() const { return reread_; }
  std::uint64_t held_bytes() const { return held_; }

 private:
  void hash(const char* p, std::size_t n);
  void consume_held();

  std::uint64_t size_;
  std::atomic<std::int64_t>* budget_;
  Md5 md5_;
  std::uint64_t frontier_ = 0;
  std::map<std::uint64_t, std::string> ahead_;  // offset -> bytes written there, past frontier_
  std::uint64_t held_ = 0;
  std::uint64_t reread_ = 0;
};

}  // namespace cache
