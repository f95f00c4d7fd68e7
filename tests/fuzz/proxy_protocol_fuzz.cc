// Fuzz target: the PROXY protocol header parser (proxy/proxy_protocol.h) on hostile first bytes
// of a connection: never reads past the header, never answers for more than the spec's limits,
// and more bytes never change a kDone or kInvalid answer.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

#include "conf/check.h"
#include "proxy/proxy_protocol.h"

namespace {

// Prefixes are re-parsed up to this length: past the v2 limit nothing can change.
constexpr std::size_t kMaxChecked = 600;

proxy::ProxyParse parse(std::string_view in, proxy::ProxyHeader* header, std::size_t* consumed) {
  std::string error;
  const proxy::ProxyParse r = proxy::parse_proxy_header(in, header, consumed, &error);
  TUSK_CHECK((r == proxy::ProxyParse::kInvalid) == !error.empty());
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  proxy::ProxyHeader header;
  std::size_t consumed = 0;
  const proxy::ProxyParse whole = parse(in, &header, &consumed);
  if (whole == proxy::ProxyParse::kDone) {
    TUSK_CHECK(consumed > 0 && consumed <= size);
    TUSK_CHECK(consumed <=
               (header.version == 1 ? proxy::kMaxProxyV1Header : proxy::kMaxProxyV2Header));
    TUSK_CHECK(header.source.has_value() || header.source_port == 0);
    TUSK_CHECK(!header.local || !header.source.has_value());
  }
  if (whole == proxy::ProxyParse::kNeedMore) {
    TUSK_CHECK(size < proxy::kMaxProxyV2Header);
  }
  // Every prefix: kNeedMore up to the answer, then the same answer (kDone: the same length).
  bool decided = false;
  for (std::size_t k = 0; k <= std::min(size, kMaxChecked); ++k) {
    proxy::ProxyHeader h;
    std::size_t c = 0;
    const proxy::ProxyParse r = parse(in.substr(0, k), &h, &c);
    if (r == proxy::ProxyParse::kNeedMore) {
      TUSK_CHECK(!decided);
      continue;
    }
    decided = true;
    TUSK_CHECK(r == whole);
    if (r == proxy::ProxyParse::kDone) {
      TUSK_CHECK(c == consumed && c <= k);
    }
  }
  return 0;
}
