// Tricky: qemu-img runs on images from the internet. The format is probed once by `info` and
// then given to `convert` explicitly (-f), so a raw image whose first bytes look like a qcow2
// header cannot be reinterpreted halfway; the child has a deadline and a bounded output pipe.
#include "installer/source.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>

#include "installer/crypto.h"

extern char** environ;

namespace installer {

SourceKind kind_of_bytes(std::string_view h) {
  auto starts = [&](std::string_view magic) { return h.substr(0, magic.size()) == magic; };
  if (starts("\x1f\x8b") || starts("BZh") ||
      starts(std::string_view("\xfd"
                              "7zXZ\0",
                              6))) {
    return SourceKind::kTarball;
  }
  if (h.size() >= 262 && h.substr(257, 5) == "ustar") {
    return SourceKind::kTarball;
  }
  return SourceKind::kDisk;
}

Result<SourceKind> kind_of_file(const std::string& path) {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    return fail(Errc::kIo, "cannot read " + path + ": " + std::strerror(errno));
  }
  char buf[512];
  const std::size_t n = std::fread(buf, 1, sizeof buf, f.get());
  if (std::ferror(f.get())) {
    return fail(Errc::kIo, "read error on " + path);
  }
  return kind_of_bytes(std::string_view(buf, n));
}

Result<void> check_source(const std::string& path, std::optional<std::uint64_t> size,
                          const std::string& sha512_hex) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return fail(Errc::kIo, "cannot stat " + path + ": " + std::strerror(errno));
  }
  if (size && static_cast<std::uint64_t>(st.st_size) != *size) {
    return fail(Errc::kChecksum, "size is " + std::to_string(st.st_size) + " bytes, expected " +
                                     std::to_string(*size));
  }
  if (!sha512_hex.empty()) {
    auto got = file_digest_hex(path, Digest::Algo::kSha512);
    if (!got) {
      return conf::unexpected(got.error());
    }
    if (*got != sha512_hex) {
      return fail(Errc::kChecksum, "SHA-512 is " + got->substr(0, 16) + "…, expected " +
                                       sha512_hex.substr(0, 16) + "…");
    }
  }
  return {};
}

namespace {

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

struct SpawnActions {
  posix_spawn_file_actions_t a;
  SpawnActions() { posix_spawn_file_actions_init(&a); }
  ~SpawnActions() { posix_spawn_file_actions_destroy(&a); }
};

}  // namespace

Result<std::string> run_program(const std::vector<std::string>& argv, std::size_t max_output,
                                std::chrono::seconds timeout) {
  if (argv.empty()) {
    return fail(Errc::kUsage, "no program to run");
  }
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) {
    return fail(Errc::kIo, std::string("pipe: ") + std::strerror(errno));
  }
  Fd out_r{out[0]}, out_w{out[1]};
  if (::pipe2(err, O_CLOEXEC) != 0) {
    return fail(Errc::kIo, std::string("pipe: ") + std::strerror(errno));
  }
  Fd err_r{err[0]}, err_w{err[1]};
  SpawnActions fa;
  posix_spawn_file_actions_addopen(&fa.a, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa.a, out_w.fd, 1);
  posix_spawn_file_actions_adddup2(&fa.a, err_w.fd, 2);
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, argv[0].c_str(), &fa.a, nullptr, args.data(), environ);
  if (rc != 0) {
    return fail(Errc::kUsage, "cannot run " + argv[0] + ": " + std::strerror(rc) +
                                  (argv[0] == "qemu-img" ? " (install qemu-utils)" : ""));
  }
  ::close(std::exchange(out_w.fd, -1));
  ::close(std::exchange(err_w.fd, -1));
  std::string stdout_text, stderr_text;
  bool too_much = false, timed_out = false;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int open_fds = 2; open_fds > 0;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p[2] = {{out_r.fd, POLLIN, 0}, {err_r.fd, POLLIN, 0}};
    const int n = ::poll(p, 2, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (n < 0 && errno != EINTR) {
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || (p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
        continue;
      }
      char buf[4096];
      const ssize_t got = ::read(p[i].fd, buf, sizeof buf);
      if (got <= 0) {
        (i == 0 ? out_r : err_r).fd = (::close(p[i].fd), -1);
        --open_fds;
        continue;
      }
      std::string& into = i == 0 ? stdout_text : stderr_text;
      if (into.size() + static_cast<std::size_t>(got) > max_output) {
        too_much = true;
      } else {
        into.append(buf, static_cast<std::size_t>(got));
      }
    }
    if (too_much) {
      break;
    }
    if (out_r.fd < 0 && err_r.fd < 0) {
      break;
    }
    // poll() ignores negative fds, so a closed pipe needs no special case above.
  }
  if (timed_out || too_much) {
    ::kill(pid, SIGKILL);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    return fail(Errc::kIo,
                argv[0] + " took longer than " + std::to_string(timeout.count()) + " s: killed");
  }
  if (too_much) {
    return fail(Errc::kIo, argv[0] + " wrote more than " + std::to_string(max_output) + " bytes");
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string first = stderr_text.substr(0, stderr_text.find('\n'));
    return fail(Errc::kIo, argv[0] + (argv.size() > 1 ? " " + argv[1] : std::string()) +
                               " failed (" +
                               (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                                  : "signal " + std::to_string(WTERMSIG(status))) +
                               (first.empty() ? ")" : "): " + first));
  }
  return stdout_text;
}

Result<std::string> parse_qemu_info(std::string_view text) {
  auto j = nlohmann::json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("format") || !j["format"].is_string()) {
    return fail(Errc::kFormat, "qemu-img info gave no format");
  }
  std::string f = j["format"].get<std::string>();
  if (f.empty() || f.size() > 32 ||
      f.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_") != std::string::npos) {
    return fail(Errc::kFormat, "qemu-img info gave an odd format name");
  }
  return f;
}

Result<std::string> disk_format(const std::string& qemu_img, const std::string& path) {
  auto out =
      run_program({qemu_img, "info", "--output=json", path}, 1 << 20, std::chrono::seconds(60));
  if (!out) {
    return conf::unexpected(out.error());
  }
  return parse_qemu_info(*out);
}

Result<void> convert_to_raw(const std::string& qemu_img, const std::string& in,
                            const std::string& format, const std::string& out,
                            std::chrono::seconds timeout) {
  auto r = run_program({qemu_img, "convert", "-f", format, "-O", "raw", in, out}, 1 << 20, timeout);
  if (!r) {
    return conf::unexpected(r.error());
  }
  return {};
}

}  // namespace installer
