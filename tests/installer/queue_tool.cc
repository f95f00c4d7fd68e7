// A test helper for tests/integration/test_queue.py: drives installer/queue.h from the outside
// (publishing and taking are not `tusk queue` verbs; the real publisher is `tusk subscribe sync`
// and the real taker `tusk worker`).
//   installer_queue_tool URL REGISTRY put BODY...           publish each body, in order
//   installer_queue_tool URL REGISTRY take-hold             take one, print it, wait to be killed
//   installer_queue_tool URL REGISTRY take-ack              take one, print it, ack it
//   installer_queue_tool URL REGISTRY take-wait-ack         take one, print it, ack it after a
//                                                           line on stdin (the test meddles first)
//   installer_queue_tool URL REGISTRY take-retry MS ERROR   take one, retry it after MS
//   installer_queue_tool URL REGISTRY take-park ERROR       take one, park it
// URL "" is the embedded queue in REGISTRY/queue. Exit 0 done, 1 error, 2 usage, 3 nothing came.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "installer/queue.h"

namespace {

int error(const installer::Error& e) {
  std::fprintf(stderr, "queue_tool: error: %s\n", e.message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(
        stderr,
        "usage: %s URL REGISTRY put|take-hold|take-ack|take-wait-ack|take-retry|take-park\n",
        argv[0]);
    return 2;
  }
  const std::string verb = argv[3];
  auto q = installer::open_queue(argv[1], argv[2]);
  if (!q) return error(q.error());
  if (verb == "put") {
    for (int i = 4; i < argc; ++i) {
      if (auto r = (*q)->publish(argv[i]); !r) return error(r.error());
    }
    return 0;
  }
  auto d = (*q)->take(std::chrono::seconds(5));
  if (!d) return error(d.error());
  if (!*d) return 3;
  std::printf("%s\n", (*d)->body.c_str());
  std::fflush(stdout);
  installer::Result<void> r;
  if (verb == "take-hold") {
    for (;;) ::pause();  // until killed: the lease must outlive nothing but this process
  } else if (verb == "take-ack") {
    r = (*q)->ack(**d);
  } else if (verb == "take-wait-ack") {
    char line[16];
    if (std::fgets(line, sizeof line, stdin) == nullptr) return 2;
    r = (*q)->ack(**d);
  } else if (verb == "take-retry" && argc == 6) {
    r = (*q)->retry(**d, std::chrono::milliseconds(std::atoll(argv[4])), argv[5]);
  } else if (verb == "take-park" && argc == 5) {
    r = (*q)->park(**d, argv[4]);
  } else {
    std::fprintf(stderr, "queue_tool: unknown verb or arguments\n");
    return 2;
  }
  return r ? 0 : error(r.error());
}
