// Runs a shell command and returns what it printed, for the tests that check our signing
// against botocore's (sign_test.cc, presign_test.cc). A non-zero exit appends
// "<exit status N>" so the assertion that compares the output shows it.
#pragma once

#include <cstdio>
#include <string>

namespace s3 {

inline std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    return out;
  }
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) {
    out.append(buf, n);
  }
  int status = pclose(p);
  if (status != 0) {
    out += "\n<exit status " + std::to_string(status) + ">";
  }
  return out;
}

}  // namespace s3
