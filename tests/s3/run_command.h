// Runs a shell command and returns what it printed, for the tests that check our signing
// against botocore's (sign_test.cc, presign_test.cc). A non-zero exit appends
// "<exit status N>" so the assertion that compares the output shows it.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

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

// The same, split into lines (a last line without '\n' is dropped: the helpers end every line).
inline std::vector<std::string> run_command_lines(const std::string& cmd, std::string* out) {
  *out = run_command(cmd);
  std::vector<std::string> lines;
  for (std::size_t start = 0, nl; (nl = out->find('\n', start)) != std::string::npos;
       start = nl + 1) {
    lines.push_back(out->substr(start, nl - start));
  }
  return lines;
}

}  // namespace s3
