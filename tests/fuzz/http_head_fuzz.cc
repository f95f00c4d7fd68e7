// Fuzz target: the strict request head parser and chunked body decoder (proxy/http_head.h).
#include <cstdint>
#include <string>
#include <string_view>

#include "conf/check.h"
#include "proxy/http_head.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  proxy::HeadParse p = proxy::parse_request_head(in, proxy::HeadLimits{});
  if (p.state == proxy::HeadParse::State::kError) {
    const int s = p.error.status;
    TUSK_CHECK(s == 400 || s == 414 || s == 431 || s == 505);
  } else if (p.state == proxy::HeadParse::State::kDone) {
    TUSK_CHECK(p.consumed <= size && proxy::find_head_end(in) == p.consumed);
    proxy::ChunkedBody body(4096);
    std::string out;
    auto st = body.feed(in.substr(p.consumed), out);
    TUSK_CHECK(st.consumed <= size - p.consumed && out.size() <= 4096);
  }
  return 0;
}
