// The per-object metadata record kept in the LMDB index, and its versioned binary encoding.
// Pure: no I/O. A record whose version this build does not know decodes as "absent" (a miss),
// never as garbage. Knows nothing of HTTP beyond carrying opaque header pairs to replay.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cache {

// Version 2 added `key`; version 1 records (no key) still decode, with an empty key.
inline constexpr std::uint32_t kMetaVersion = 2;

struct Meta {
  std::uint64_t generation = 0;  // names the body file; a new fill of the key gets a new one
  std::uint64_t size = 0;        // object bytes (Content-Length of the full object)
  std::uint32_t chunk_size = 0;
  std::string etag;           // as sent by the origin, quotes included
  std::string last_modified;  // HTTP-date as sent by the origin; may be empty
  std::string content_type;
  std::int64_t stored_at = 0;    // unix seconds: when the origin response was received
  std::int64_t expires_at = 0;   // unix seconds: fresh until then
  std::int64_t accessed_at = 0;  // unix seconds, for LRU (batched)
  std::uint32_t flags = 0;       // kFlag* below
  std::vector<std::pair<std::string, std::string>> headers;  // end-to-end headers to replay
  std::vector<std::uint8_t> bitmap;  // bit i set: chunk i is durable on disk
  bool verified = false;             // whole body checked against an MD5 ETag
  std::string key;  // the cache key the record belongs to (set by Store::create; for listings)

  static constexpr std::uint32_t kFlagNoCache = 1;  // must revalidate before each use

  std::uint64_t chunk_count() const;
  bool has_chunk(std::uint64_t i) const;
  void set_chunk(std::uint64_t i);
  bool complete() const;  // every chunk durable
  // Bytes durable from offset `from` without a gap (for serving a fill in progress).
  std::uint64_t contiguous_from(std::uint64_t from) const;
};

std::string encode_meta(const Meta& m);
// nullopt: truncated, corrupt, or unknown version.
std::optional<Meta> decode_meta(std::string_view bytes);
// True when `bytes` start with a version above kMetaVersion: a record a newer build wrote. Such a
// record decodes as absent like damage does, but it is not damage (the index does not count it).
bool meta_is_newer(std::string_view bytes);

}  // namespace cache
