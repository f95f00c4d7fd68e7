// Meta's chunk arithmetic and its versioned binary encoding (little-endian, length-prefixed).
// Tricky: decode_meta reads bytes from disk, so it trusts nothing: every length is checked against
// what is left before anything is allocated, and a bitmap that does not match size/chunk_size
// (wrong length or bits set past the last chunk) makes the whole record absent.
#include "cache/meta.h"

#include <algorithm>
#include <cstring>

#include "conf/check.h"

namespace cache {
namespace {

std::uint64_t bitmap_bytes(std::uint64_t chunks) { return (chunks + 7) / 8; }

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(std::uint32_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void i64(std::int64_t v) { le(static_cast<std::uint64_t>(v), 8); }
  void bytes(std::string_view s) {
    // A field longer than 4 GiB cannot come from HTTP headers; the store never builds one.
    TUSK_CHECK(s.size() <= UINT32_MAX);
    u32(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
  }
  std::string take() { return std::move(out_); }

 private:
  void le(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) {
      out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
  }
  std::string out_;
};

// Every read fails once the input is exhausted; callers check ok() only where it matters.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool u8(std::uint8_t& v) {
    std::uint64_t x = 0;
    if (!le(x, 1)) {
      return false;
    }
    v = static_cast<std::uint8_t>(x);
    return true;
  }
  bool u32(std::uint32_t& v) {
    std::uint64_t x = 0;
    if (!le(x, 4)) {
      return false;
    }
    v = static_cast<std::uint32_t>(x);
    return true;
  }
  bool u64(std::uint64_t& v) { return le(v, 8); }
  bool i64(std::int64_t& v) {
    std::uint64_t x = 0;
    if (!le(x, 8)) {
      return false;
    }
    v = static_cast<std::int64_t>(x);
    return true;
  }
  bool view(std::string_view& v) {
    std::uint32_t n = 0;
    if (!u32(n) || n > in_.size()) {
      return false;
    }
    v = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  bool str(std::string& s) {
    std::string_view v;
    if (!view(v)) {
      return false;
    }
    s.assign(v);
    return true;
  }
  std::size_t left() const { return in_.size(); }

 private:
  bool le(std::uint64_t& v, std::size_t n) {
    if (in_.size() < n) {
      return false;
    }
    v = 0;
    for (std::size_t i = 0; i < n; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(in_[i])) << (8 * i);
    }
    in_.remove_prefix(n);
    return true;
  }
  std::string_view in_;
};

}  // namespace

std::uint64_t Meta::chunk_count() const {
  if (size == 0 || chunk_size == 0) {
    return 0;
  }
  return (size + chunk_size - 1) / chunk_size;
}

bool Meta::has_chunk(std::uint64_t i) const {
  if (i >= chunk_count() || i / 8 >= bitmap.size()) {
    return false;
  }
  return (bitmap[i / 8] >> (i % 8)) & 1;
}

void Meta::set_chunk(std::uint64_t i) {
  // Callers (the store) range-check against chunk_count() before; out of range is a bug.
  TUSK_CHECK(i < chunk_count());
  const std::uint64_t need = bitmap_bytes(chunk_count());
  if (bitmap.size() < need) {
    bitmap.resize(need, 0);
  }
  bitmap[i / 8] |= static_cast<std::uint8_t>(1u << (i % 8));
}

bool Meta::complete() const {
  if (size == 0) {
    return true;
  }
  if (chunk_size == 0) {
    return false;  // malformed: never claim a body we cannot locate
  }
  return contiguous_from(0) == size;
}

std::uint64_t Meta::contiguous_from(std::uint64_t from) const {
  if (from >= size || chunk_size == 0) {
    return 0;
  }
  const std::uint64_t chunks = chunk_count();
  std::uint64_t i = from / chunk_size;
  while (i < chunks) {
    // Whole 0xff bytes skip eight chunks at once: a 1 TiB object with small chunks has a bitmap
    // of tens of MiB and this runs on every read of a fill in progress.
    if (i % 8 == 0 && i / 8 < bitmap.size() && bitmap[i / 8] == 0xff && i + 8 <= chunks) {
      i += 8;
      continue;
    }
    if (!has_chunk(i)) {
      break;
    }
    ++i;
  }
  const std::uint64_t end = std::min<std::uint64_t>(size, i * chunk_size);
  return end > from ? end - from : 0;
}

std::string encode_meta(const Meta& m) {
  Writer w;
  w.u32(kMetaVersion);
  w.u64(m.generation);
  w.u64(m.size);
  w.u32(m.chunk_size);
  w.bytes(m.etag);
  w.bytes(m.last_modified);
  w.bytes(m.content_type);
  w.i64(m.stored_at);
  w.i64(m.expires_at);
  w.i64(m.accessed_at);
  w.u32(m.flags);
  w.u32(static_cast<std::uint32_t>(m.headers.size()));
  for (const auto& [name, value] : m.headers) {
    w.bytes(name);
    w.bytes(value);
  }
  // The bitmap is always written at its exact length so decode can insist on it.
  std::string bits(bitmap_bytes(m.chunk_count()), '\0');
  std::copy_n(m.bitmap.begin(), std::min(bits.size(), m.bitmap.size()), bits.begin());
  w.bytes(bits);
  w.u8(m.verified ? 1 : 0);
  w.bytes(m.key);
  return w.take();
}

bool meta_is_newer(std::string_view bytes) {
  Reader r(bytes);
  std::uint32_t version = 0;
  return r.u32(version) && version > kMetaVersion;
}

std::optional<Meta> decode_meta(std::string_view bytes) {
  Reader r(bytes);
  Meta m;
  std::uint32_t version = 0;
  if (!r.u32(version) || version < 1 || version > kMetaVersion) {
    return std::nullopt;
  }
  if (!r.u64(m.generation) || !r.u64(m.size) || !r.u32(m.chunk_size) || !r.str(m.etag) ||
      !r.str(m.last_modified) || !r.str(m.content_type) || !r.i64(m.stored_at) ||
      !r.i64(m.expires_at) || !r.i64(m.accessed_at) || !r.u32(m.flags)) {
    return std::nullopt;
  }
  std::uint32_t header_count = 0;
  // Each pair takes at least two length prefixes: refuse counts the input cannot hold before
  // reserving memory for them.
  if (!r.u32(header_count) || header_count > r.left() / 8) {
    return std::nullopt;
  }
  m.headers.reserve(header_count);
  for (std::uint32_t i = 0; i < header_count; ++i) {
    std::string name;
    std::string value;
    if (!r.str(name) || !r.str(value)) {
      return std::nullopt;
    }
    m.headers.emplace_back(std::move(name), std::move(value));
  }
  if (m.size > 0 && m.chunk_size == 0) {
    return std::nullopt;
  }
  std::string_view bits;
  if (!r.view(bits) || bits.size() != bitmap_bytes(m.chunk_count())) {
    return std::nullopt;
  }
  const std::uint64_t tail_bits = m.chunk_count() % 8;
  if (tail_bits != 0 && (static_cast<unsigned char>(bits.back()) >> tail_bits) != 0) {
    return std::nullopt;  // bits past the last chunk: not something encode_meta writes
  }
  // resize + memcpy: assign() from chars copies byte by byte (4x slower on a 1 TiB bitmap).
  m.bitmap.resize(bits.size());
  if (!bits.empty()) {
    std::memcpy(m.bitmap.data(), bits.data(), bits.size());
  }
  std::uint8_t verified = 0;
  if (!r.u8(verified) || verified > 1) {
    return std::nullopt;
  }
  if (version >= 2 && !r.str(m.key)) {
    return std::nullopt;
  }
  if (r.left() != 0) {
    return std::nullopt;
  }
  m.verified = verified == 1;
  return m;
}

}  // namespace cache
