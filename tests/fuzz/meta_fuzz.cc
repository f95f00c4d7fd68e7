// Fuzz target: the on-disk metadata decoder (cache/meta.h): a corrupt or foreign LMDB record
// decodes to nullopt or to a record that encodes back to the same bytes.
#include <cstdint>
#include <string_view>

#include "cache/meta.h"
#include "conf/check.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto m = cache::decode_meta(in);
  if (m) {
    auto again = cache::decode_meta(cache::encode_meta(*m));
    TUSK_CHECK(again.has_value() && again->size == m->size && again->etag == m->etag);
  }
  return 0;
}
