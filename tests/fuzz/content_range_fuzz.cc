// Fuzz target: upstream Content-Range parsing (proxy/fill.h): any bytes an upstream sends give
// nullopt or a range whose ends are ordered and, in the RFC form ("bytes a-b/n"), within n.
// Walrus' unit-less total is untrusted by design (the fill sizes such objects with a HEAD).
#include <cstdint>
#include <string_view>

#include "conf/check.h"
#include "proxy/fill.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto cr = proxy::parse_content_range(std::string_view(reinterpret_cast<const char*>(data), size));
  if (cr) {
    TUSK_CHECK(cr->first <= cr->last);
    TUSK_CHECK(!cr->unit || !cr->total || cr->last < *cr->total);
  }
  return 0;
}
