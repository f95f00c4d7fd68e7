// Progress rendering: a terminal bar redrawn at most ten times a second, or a plain line per 10 %
// (and a final one) when the output is not a terminal.
#include "installer/progress.h"

namespace installer {

std::string human_bytes(std::uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  }
  return buf;
}

Progress::Progress(std::string label, bool tty, std::FILE* out, Clock clock)
    : label_(std::move(label)), tty_(tty), out_(out), clock_(std::move(clock)) {
  if (!clock_) {
    clock_ = [] { return std::chrono::steady_clock::now(); };
  }
}

void Progress::update(std::uint64_t done, std::uint64_t total) {
  done_ = done;
  total_ = total;
  if (finished_) {
    return;
  }
  if (tty_) {
    auto now = clock_();
    if (drawn_ && now - last_ < std::chrono::milliseconds(100) && done < total) {
      return;
    }
    last_ = now;
    drawn_ = true;
    constexpr int kWidth = 30;
    if (total > 0) {
      int filled = static_cast<int>(kWidth * std::min(done, total) / total);
      std::fprintf(out_, "\r%s [%s%s] %3d%%  %s / %s ", label_.c_str(),
                   std::string(filled, '#').c_str(), std::string(kWidth - filled, ' ').c_str(),
                   static_cast<int>(100 * std::min(done, total) / total), human_bytes(done).c_str(),
                   human_bytes(total).c_str());
    } else {
      std::fprintf(out_, "\r%s %s ", label_.c_str(), human_bytes(done).c_str());
    }
    std::fflush(out_);
    return;
  }
  if (total == 0) {
    return;  // unknown size: only the final line
  }
  int decile = static_cast<int>(10 * std::min(done, total) / total);
  if (decile > last_decile_ && decile < 10) {
    last_decile_ = decile;
    std::fprintf(out_, "%s: %d%% (%s of %s)\n", label_.c_str(), decile * 10,
                 human_bytes(done).c_str(), human_bytes(total).c_str());
    std::fflush(out_);
  }
}

void Progress::finish() {
  if (finished_) {
    return;
  }
  finished_ = true;
  if (tty_) {
    if (drawn_) {
      std::fputc('\n', out_);
    }
  } else {
    std::fprintf(out_, "%s: done (%s)\n", label_.c_str(), human_bytes(done_).c_str());
  }
  std::fflush(out_);
}

}  // namespace installer
