// A temporary work folder (<parent or $TMPDIR or /var/tmp>/<stem>-XXXXXX) removed with everything
// in it when its owner goes, unless kept. Install and migrate-image each hold one per run.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "installer/error.h"

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
    std::string base = parent;
    if (base.empty()) {
      const char* t = std::getenv("TMPDIR");
      base = t && *t ? t : "/var/tmp";
    }
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

 private:
  std::string path_;
  bool keep_ = false;
};

}  // namespace installer
