// Progress for long steps: a redrawn bar on a terminal, a plain line every 10 % otherwise (logs,
// CI), written to the stream it is given (stderr by the CLI, so stdout stays machine-readable).
// One Progress per step; not thread-safe. The clock is passed in for tests.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>

namespace installer {

class Progress {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;
  Progress(std::string label, bool tty, std::FILE* out, Clock clock = nullptr);
  // total 0: unknown size (bytes only).
  void update(std::uint64_t done, std::uint64_t total);
  // Completes the bar (or prints the final line) once.
  void finish();

 private:
  std::string label_;
  bool tty_;
  std::FILE* out_;
  Clock clock_;
  std::chrono::steady_clock::time_point last_{};
  int last_decile_ = -1;
  std::uint64_t done_ = 0, total_ = 0;
  bool finished_ = false;
  bool drawn_ = false;
};

std::string human_bytes(std::uint64_t n);  // "12.3 MiB"

}  // namespace installer
