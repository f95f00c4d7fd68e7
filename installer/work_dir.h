// A temporary work folder (<parent or $TMPDIR or /var/tmp>/<stem>-XXXXXX) removed with everything
// in it when its owner goes, unless kept. Install and migrate-image each hold one per run. A
// folder made with owned_stem() names its process, so a later run can sweep the folders of
// processes that died (kill -9) without a record of them: sweep_dead().
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "installer/error.h"
#include "installer/registry.h"

namespace installer {

class WorkDir {
 public:
  WorkDir() = default;
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  ~WorkDir() {
    if (!path_.empty() && !keep_) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
  }
  // Errors: the folder cannot be made (kIo, naming the parent).
  Result<void> create(const std::string& parent, bool keep, const std::string& stem) {
    const std::string base = parent_of(parent);
    std::string templ = base + "/" + stem + "-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      return fail(Errc::kIo,
                  "cannot create a work folder under " + base + ": " + std::strerror(errno));
    }
    path_ = templ;
    keep_ = keep;
    return {};
  }
  const std::string& path() const { return path_; }

  // "<stem>-<pid>-<process start time>": the stem of a folder whose owner can be told dead.
  static std::string owned_stem(const std::string& stem) {
    const int pid = ::getpid();
    return stem + "-" + std::to_string(pid) + "-" + std::to_string(process_start_time(pid));
  }

  // Removes the folders <parent>/<stem>-<pid>-<start>-* whose process is gone; returns how many.
  static int sweep_dead(const std::string& parent, const std::string& stem) {
    const std::string base = parent_of(parent);
    int removed = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(base, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(stem + "-", 0) != 0 || !e.is_directory(ec)) continue;
      int pid = 0;
      unsigned long long start = 0;
      char rest[16] = {};
      if (std::sscanf(name.c_str() + stem.size(), "-%d-%llu-%15s", &pid, &start, rest) != 3 ||
          pid <= 0 || process_alive(pid, start)) {
        continue;
      }
      std::filesystem::remove_all(e.path(), ec);
      removed += ec ? 0 : 1;
    }
    return removed;
  }

 private:
  // `parent`, else $TMPDIR, else /var/tmp.
  static std::string parent_of(const std::string& parent) {
    if (!parent.empty()) {
      return parent;
    }
    const char* t = std::getenv("TMPDIR");
    return t && *t ? t : "/var/tmp";
  }

  std::string path_;
  bool keep_ = false;
};

}  // namespace installer
