// Fuzz target: route matching of hostile paths (proxy/router.h): never an object key with a
// "." or ".." segment, a NUL or a backslash, whatever the (percent-encoded) target.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "conf/check.h"
#include "conf/config.h"
#include "proxy/router.h"

namespace {
const proxy::Router& router() {
  static const std::vector<conf::Route> routes = [] {
    std::vector<conf::Route> r(3);
    r[0].path = "/catalog.json";
    r[0].key = "catalog.json";
    r[1].prefix = "/images/";
    r[2].prefix = "/h/";
    r[2].host = "edge.example";
    r[2].key_prefix = "k/";
    for (auto& x : r) {
      x.upstream = "u";
      x.bucket = "b";
    }
    return r;
  }();
  static const proxy::Router router(routes);
  return router;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::size_t cut = in.find('\n');
  std::string_view host = cut == std::string_view::npos ? std::string_view() : in.substr(0, cut);
  std::string_view target = cut == std::string_view::npos ? in : in.substr(cut + 1);
  auto t = router().route(host, target);
  if (t) {
    const std::string& key = t->key;
    TUSK_CHECK(!key.empty() && key.find('\0') == std::string::npos);
    TUSK_CHECK(key.find('\\') == std::string::npos);
    const std::string slashed = "/" + key + "/";
    TUSK_CHECK(slashed.find("/../") == std::string::npos &&
               slashed.find("/./") == std::string::npos);
  }
  return 0;
}
