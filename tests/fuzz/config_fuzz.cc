// Fuzz target: the configuration loader (conf/config.h): any YAML gives a Config or an error
// with a place, never a crash, an exception or a hang.
#include <cstdint>
#include <string_view>

#include "conf/check.h"
#include "conf/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) {
    return 0;  // yaml-cpp recursion depth grows with nesting; bounded inputs keep runs fast
  }
  auto no_env = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  auto c = conf::load_string(std::string_view(reinterpret_cast<const char*>(data), size),
                             "fuzz.yaml", no_env, "/nonexistent");
  if (!c) {
    TUSK_CHECK(!c.error().message.empty());
  }
  return 0;
}
