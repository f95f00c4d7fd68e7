// A shared, read-or-write file descriptor with one owner (closed when the last holder lets go).
// Deliveries and fills hold it by shared_ptr so a body stays readable while anyone reads it,
// even after the cache unlinked or replaced it.
#pragma once

#include <unistd.h>

#include <memory>

namespace proxy {

class BodyFile {
 public:
  explicit BodyFile(int fd) : fd_(fd) {}
  ~BodyFile() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  int fd() const { return fd_; }
  BodyFile(const BodyFile&) = delete;
  BodyFile& operator=(const BodyFile&) = delete;

 private:
  int fd_;
};

using BodyFilePtr = std::shared_ptr<BodyFile>;

}  // namespace proxy
