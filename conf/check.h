// TUSK_CHECK: an invariant check that stays on in every build (assert() is compiled out of the
// RelWithDebInfo builds that ship). For states that cannot happen, never for input: client,
// upstream, disk and configuration data get errors, not checks (STYLE.md habit 4).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace conf {

[[noreturn]] inline void check_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: invariant violated: %s\n", file, line, what);
  std::fflush(stderr);
  std::abort();
}

}  // namespace conf

#define TUSK_CHECK(cond) \
  ((cond) ? static_cast<void>(0) : ::conf::check_failed(#cond, __FILE__, __LINE__))
