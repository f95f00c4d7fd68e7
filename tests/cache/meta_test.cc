// Tests of cache/meta.cc: chunk arithmetic and the versioned encoding, table-driven.
// The decoder reads disk data, so every malformed input (each truncation, trailing bytes, a
// bitmap that disagrees with size/chunk_size, an unknown version) must come back as nullopt.
#include "cache/meta.h"

#include <gtest/gtest.h>

#include <cstring>

namespace cache {
namespace {

Meta sample() {
  Meta m;
  m.generation = 42;
  m.size = 20;
  m.chunk_size = 8;  // 3 chunks, the last one short
  m.etag = "\"d41d8cd98f00b204e9800998ecf8427e\"";
  m.last_modified = "Wed, 21 Oct 2015 07:28:00 GMT";
  m.content_type = "application/octet-stream";
  m.stored_at = 1700000000;
  m.expires_at = 1700003600;
  m.accessed_at = -5;
  m.flags = Meta::kFlagNoCache;
  m.headers = {{"Cache-Control", "max-age=3600"}, {"x-amz-meta-sha", ""}};
  m.bitmap = {0b101};
  m.verified = true;
  return m;
}

void expect_same(const Meta& a, const Meta& b) {
  EXPECT_EQ(a.generation, b.generation);
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(a.chunk_size, b.chunk_size);
  EXPECT_EQ(a.etag, b.etag);
  EXPECT_EQ(a.last_modified, b.last_modified);
  EXPECT_EQ(a.content_type, b.content_type);
  EXPECT_EQ(a.stored_at, b.stored_at);
  EXPECT_EQ(a.expires_at, b.expires_at);
  EXPECT_EQ(a.accessed_at, b.accessed_at);
  EXPECT_EQ(a.flags, b.flags);
  EXPECT_EQ(a.headers, b.headers);
  EXPECT_EQ(a.bitmap, b.bitmap);
  EXPECT_EQ(a.verified, b.verified);
}

TEST(MetaTest, ChunkArithmetic) {
  struct Case {
    std::uint64_t size;
    std::uint32_t chunk_size;
    std::vector<std::uint8_t> bitmap;
    std::uint64_t chunks;
    bool complete;
    std::uint64_t from;
    std::uint64_t contiguous;
  };
  const Case cases[] = {
      {0, 8, {}, 0, true, 0, 0},
      {0, 0, {}, 0, true, 0, 0},
      {1, 8, {0}, 1, false, 0, 0},
      {1, 8, {1}, 1, true, 0, 1},
      {8, 8, {1}, 1, true, 3, 5},
      {9, 8, {1}, 2, false, 0, 8},
      {9, 8, {3}, 2, true, 0, 9},
      {20, 8, {0b011}, 3, false, 0, 16},
      {20, 8, {0b011}, 3, false, 10, 6},
      {20, 8, {0b101}, 3, false, 0, 8},
      {20, 8, {0b101}, 3, false, 8, 0},
      {20, 8, {0b101}, 3, false, 17, 3},  // last, short chunk: clamped to size
      {20, 8, {0b111}, 3, true, 19, 1},
      {20, 8, {0b111}, 3, true, 20, 0},  // at the end
      {20, 8, {0b111}, 3, true, 99, 0},  // past the end
      {20, 8, {}, 3, false, 0, 0},       // no bitmap yet: nothing durable
      {20, 0, {0xff}, 0, false, 0, 0},   // malformed chunk size: never complete
      // 17 chunks: exercises the whole-byte skip then the per-bit tail.
      {17 * 4, 4, {0xff, 0xff, 1}, 17, true, 0, 17 * 4},
      {17 * 4, 4, {0xff, 0x7f, 1}, 17, false, 1, 15 * 4 - 1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(testing::Message()
                 << "size=" << c.size << " chunk=" << c.chunk_size << " from=" << c.from);
    Meta m;
    m.size = c.size;
    m.chunk_size = c.chunk_size;
    m.bitmap = c.bitmap;
    EXPECT_EQ(m.chunk_count(), c.chunks);
    EXPECT_EQ(m.complete(), c.complete);
    EXPECT_EQ(m.contiguous_from(c.from), c.contiguous);
  }
}

TEST(MetaTest, SetChunkGrowsAnEmptyBitmap) {
  Meta m;
  m.size = 100;
  m.chunk_size = 10;
  EXPECT_FALSE(m.has_chunk(9));
  m.set_chunk(9);
  EXPECT_EQ(m.bitmap.size(), 2u);
  EXPECT_TRUE(m.has_chunk(9));
  EXPECT_FALSE(m.has_chunk(8));
  EXPECT_FALSE(m.has_chunk(10));  // past the end reads as absent
  for (std::uint64_t i = 0; i < 9; ++i) {
    m.set_chunk(i);
  }
  EXPECT_TRUE(m.complete());
}

TEST(MetaTest, RoundTrip) {
  Meta empty;
  const Meta cases[] = {sample(), empty};
  for (const auto& m : cases) {
    const auto decoded = decode_meta(encode_meta(m));
    ASSERT_TRUE(decoded.has_value());
    expect_same(*decoded, m);
  }
}

TEST(MetaTest, StartsWithLittleEndianVersion) {
  const std::string enc = encode_meta(sample());
  ASSERT_GE(enc.size(), 4u);
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<std::uint32_t>(static_cast<unsigned char>(enc[i])) << (8 * i);
  }
  EXPECT_EQ(v, kMetaVersion);
}

TEST(MetaTest, EveryTruncationFails) {
  const std::string enc = encode_meta(sample());
  for (std::size_t n = 0; n < enc.size(); ++n) {
    EXPECT_FALSE(decode_meta(std::string_view(enc).substr(0, n)).has_value()) << "length " << n;
  }
}

TEST(MetaTest, KeyRoundTripsAndVersionOneRecordsStillDecode) {
  Meta m = sample();
  m.key = "http://ep\nbucket\nkey with spaces";
  auto back = decode_meta(encode_meta(m));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->key, m.key);
  // A version 1 record (before the key): version 1 and no key field at the end.
  m.key.clear();
  std::string v1 = encode_meta(m);
  v1[0] = 1;
  v1.resize(v1.size() - 4);  // the empty key's length prefix
  auto old = decode_meta(v1);
  ASSERT_TRUE(old.has_value());
  EXPECT_EQ(old->key, "");
  EXPECT_EQ(old->size, m.size);
  EXPECT_EQ(old->bitmap, m.bitmap);
  // A version 2 record must carry its key.
  std::string cut = encode_meta(m);
  cut.resize(cut.size() - 4);
  EXPECT_FALSE(decode_meta(cut).has_value());
}

TEST(MetaTest, MalformedInputsFail) {
  const std::string good = encode_meta(sample());
  // Offsets of fixed fields in the encoding: version(4) generation(8) size(8) chunk_size(4).
  const std::size_t kSizeAt = 12;
  const std::size_t kChunkSizeAt = 20;
  auto with = [&](std::size_t at, std::string_view bytes) {
    std::string s = good;
    s.replace(at, bytes.size(), bytes);
    return s;
  };
  struct Case {
    const char* name;
    std::string bytes;
    bool newer = false;  // a newer build's record: absent, but not damage
  };
  const Case cases[] = {
      {"empty", ""},
      {"trailing garbage", good + "x"},
      {"unknown version 3", with(0, std::string("\x03\0\0\0", 4)), true},
      {"version 0", with(0, std::string("\0\0\0\0", 4))},
      {"unknown version big", with(0, "\xff\xff\xff\xff"), true},
      // The sample's bitmap is one byte 0b101 for 3 chunks of 8. Size 72 needs 9 chunks (two
      // bytes), size 0 needs none, size 16 has 2 chunks so bit 2 is past the end.
      {"bitmap too short for size", with(kSizeAt, std::string("\x48\0\0\0\0\0\0\0", 8))},
      {"bitmap too long for size", with(kSizeAt, std::string(8, '\0'))},
      {"bits past the last chunk", with(kSizeAt, std::string("\x10\0\0\0\0\0\0\0", 8))},
      {"chunk size 0 with bytes", with(kChunkSizeAt, std::string("\0\0\0\0", 4))},
      {"key longer than the record", good.substr(0, good.size() - 1) + "\x7f"},
      {"verified not a bool", with(good.size() - 5, "\x02")},
  };
  for (const auto& c : cases) {
    EXPECT_FALSE(decode_meta(c.bytes).has_value()) << c.name;
    EXPECT_EQ(meta_is_newer(c.bytes), c.newer) << c.name;
  }
  EXPECT_TRUE(decode_meta(good).has_value());
  EXPECT_FALSE(meta_is_newer(good));
}

TEST(MetaTest, HugeCountsFailWithoutAllocating) {
  Meta m;  // no headers: patch the header count (right before the bitmap) to 2^32-1
  std::string enc = encode_meta(m);
  // Tail: header count(4) bitmap length(4) verified(1).
  enc.replace(enc.size() - 9, 4, "\xff\xff\xff\xff");
  EXPECT_FALSE(decode_meta(enc).has_value());
  std::string enc2 = encode_meta(m);
  enc2.replace(enc2.size() - 5, 4, "\xff\xff\xff\xff");  // bitmap length
  EXPECT_FALSE(decode_meta(enc2).has_value());
}

TEST(MetaTest, OneTebibyteObject) {
  Meta m;
  m.size = std::uint64_t{1} << 40;
  m.chunk_size = 8u << 20;
  ASSERT_EQ(m.chunk_count(), 131072u);
  for (std::uint64_t i = 0; i < m.chunk_count(); ++i) {
    if (i != 100000) {
      m.set_chunk(i);
    }
  }
  EXPECT_EQ(m.bitmap.size(), 16384u);
  EXPECT_FALSE(m.complete());
  EXPECT_EQ(m.contiguous_from(0), std::uint64_t{100000} * m.chunk_size);
  EXPECT_EQ(m.contiguous_from(100001 * std::uint64_t{m.chunk_size} + 5),
            m.size - 100001 * std::uint64_t{m.chunk_size} - 5);

  auto decoded = decode_meta(encode_meta(m));
  ASSERT_TRUE(decoded.has_value());
  expect_same(*decoded, m);
  decoded->set_chunk(100000);
  EXPECT_TRUE(decoded->complete());
  EXPECT_EQ(decoded->contiguous_from(0), m.size);
}

}  // namespace
}  // namespace cache
