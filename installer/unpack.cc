// Tarball extraction and member selection. Tricky: member names come from the network, so each is
// normalised and checked before any file is created, and only regular files are ever written
// (no symlink can redirect a later write). Why basename matching in one folder instead of 3.0's
// "full path contains vmlinu": a machine image folder named e.g. "vmlinux-tools/" must not be
// mistaken for a kernel, and 2.1 matched basenames too.
#include "installer/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

namespace installer {
namespace {

struct ArchiveReadFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

std::string dirname_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? "" : p.substr(0, s + 1);
}
std::string basename_of(const std::string& p) {
  auto s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}
bool contains(const std::string& s, std::string_view needle) {
  return s.find(needle) != std::string::npos;
}
bool ramdisk_like(const std::string& base) {
  return contains(base, "initrd") || contains(base, "initramfs") || contains(base, "loader");
}

}  // namespace

Result<std::string> safe_member_path(std::string_view raw) {
  if (!raw.empty() && raw.front() == '/') {
    return fail(Errc::kUnsafe, "refusing absolute path in tarball: " + std::string(raw));
  }
  std::string out;
  std::size_t i = 0;
  while (i <= raw.size()) {
    std::size_t j = raw.find('/', i);
    if (j == std::string_view::npos) {
      j = raw.size();
    }
    std::string_view comp = raw.substr(i, j - i);
    if (comp == "..") {
      return fail(Errc::kUnsafe, "refusing path traversal in tarball: " + std::string(raw));
    }
    if (!comp.empty() && comp != ".") {
      if (!out.empty()) {
        out += '/';
      }
      out += comp;
    }
    i = j + 1;
  }
  return out;
}

Result<std::vector<Member>> extract_tarball(const std::string& tarball, const std::string& dest_dir,
                                            const ProgressFn& progress) {
  std::unique_ptr<archive, ArchiveReadFree> a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_tar(a.get());
  archive_read_support_format_gnutar(a.get());
  if (archive_read_open_filename(a.get(), tarball.c_str(), 1 << 20) != ARCHIVE_OK) {
    return fail(Errc::kFormat, tarball + ": " + archive_error_string(a.get()));
  }
  std::error_code ec;
  const std::uint64_t total = std::filesystem::file_size(tarball, ec);
  std::vector<Member> members;
  archive_entry* entry = nullptr;
  for (;;) {
    int rc = archive_read_next_header(a.get(), &entry);
    if (rc == ARCHIVE_EOF) {
      break;
    }
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      return fail(Errc::kFormat, tarball + ": " + archive_error_string(a.get()));
    }
    const char* raw = archive_entry_pathname(entry);
    auto path = safe_member_path(raw ? raw : "");
    if (!path) {
      return fail(path.error().code, tarball + ": " + path.error().message);
    }
    if (archive_entry_filetype(entry) != AE_IFREG || path->empty()) {
      continue;  // folders are created as needed; links and devices are never created
    }
    Member m;
    m.path = *path;
    m.file = dest_dir + "/" + m.path;
    m.size = static_cast<std::uint64_t>(archive_entry_size(entry));
    std::filesystem::create_directories(std::filesystem::path(m.file).parent_path(), ec);
    if (ec) {
      return fail(Errc::kIo, "create folder for " + m.file + ": " + ec.message());
    }
    // O_NOFOLLOW: a pre-existing symlink in dest_dir is not followed.
    int fd = ::open(m.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) {
      return fail(Errc::kIo, "create " + m.file + ": " + std::strerror(errno));
    }
    std::unique_ptr<int, void (*)(int*)> guard(&fd, [](int* p) { ::close(*p); });
    for (;;) {
      const void* block = nullptr;
      std::size_t len = 0;
      la_int64_t offset = 0;
      int r = archive_read_data_block(a.get(), &block, &len, &offset);
      if (r == ARCHIVE_EOF) {
        break;
      }
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        return fail(Errc::kFormat, tarball + ": " + m.path + ": " + archive_error_string(a.get()));
      }
      const char* p = static_cast<const char*>(block);
      std::size_t done = 0;
      while (done < len) {
        ssize_t w = ::pwrite(fd, p + done, len - done, offset + static_cast<off_t>(done));
        if (w < 0) {
          if (errno == EINTR) {
            continue;
          }
          return fail(Errc::kIo, "write " + m.file + ": " + std::strerror(errno));
        }
        done += static_cast<std::size_t>(w);
      }
      if (progress) {
        progress(static_cast<std::uint64_t>(archive_filter_bytes(a.get(), -1)), total);
      }
    }
    if (::ftruncate(fd, static_cast<off_t>(m.size)) != 0) {
      return fail(Errc::kIo, "truncate " + m.file + ": " + std::strerror(errno));
    }
    // The member's mtime, as tar -x keeps it: the bundle's tar header carries it, so the same
    // tarball always bundles to the same <digest> (how a reinstall recognises its own images).
    if (archive_entry_mtime_is_set(entry)) {
      const timespec times[2] = {{0, UTIME_OMIT},
                                 {archive_entry_mtime(entry), archive_entry_mtime_nsec(entry)}};
      if (::futimens(fd, times) != 0) {
        return fail(Errc::kIo, "set the time of " + m.file + ": " + std::strerror(errno));
      }
    }
    members.push_back(std::move(m));
  }
  return members;
}

Result<Selection> select_members(const std::vector<Member>& members, const SelectOptions& opt) {
  if (members.empty()) {
    return fail(Errc::kFormat, "the tarball holds no files");
  }
  // Longest common folder prefix of all members ("name/" for eustore tarballs).
  std::string root = dirname_of(members.front().path);
  for (const auto& m : members) {
    while (!root.empty() && m.path.rfind(root, 0) != 0) {
      root = dirname_of(root.substr(0, root.size() - 1));
    }
  }
  auto direct_children = [&](const std::string& dir) {
    std::vector<const Member*> out;
    for (const auto& m : members) {
      std::string base = basename_of(m.path);
      if (dirname_of(m.path) == dir && !base.empty() && base.front() != '.') {
        out.push_back(&m);
      }
    }
    return out;
  };
  auto kernel_in = [&](const std::string& dir) -> const Member* {
    for (const Member* m : direct_children(dir)) {
      if (contains(basename_of(m->path), "vmlinu")) {
        return m;
      }
    }
    return nullptr;
  };
  std::set<std::string> hv_dirs;  // "<hv>" for each <root><hv>-kernel/ folder
  for (const auto& m : members) {
    std::string d = dirname_of(m.path);
    if (d.size() > root.size() && d.rfind(root, 0) == 0) {
      std::string rest = d.substr(root.size());
      if (rest.size() > 8 && rest.find('/') == rest.size() - 1 &&
          rest.compare(rest.size() - 8, 8, "-kernel/") == 0) {
        hv_dirs.insert(rest.substr(0, rest.size() - 8));
      }
    }
  }
  auto list_hv = [&] {
    std::string s;
    for (const auto& h : hv_dirs) {
      s += (s.empty() ? "" : ", ") + h;
    }
    return s.empty() ? std::string("none") : s;
  };

  Selection sel;
  std::string hv = opt.hypervisor;
  const bool need_kernel_dir = opt.want_kernel || opt.want_ramdisk;
  if (hv.empty() && need_kernel_dir) {
    if (kernel_in(root) != nullptr) {
      hv = "universal";
    } else if (hv_dirs.size() == 1) {
      hv = *hv_dirs.begin();
      sel.notes.push_back("using the only kernel folder " + root + hv + "-kernel/");
    } else {
      return fail(Errc::kUsage,
                  "this image has hypervisor-specific kernels: choose one with --hypervisor "
                  "(kernel folders: " +
                      list_hv() + ")");
    }
  }
  if (hv == "universal" || hv.empty()) {
    sel.kernel_dir = root;
  } else {
    if (hv_dirs.count(hv) == 0) {
      return fail(Errc::kFormat, "no " + hv + "-kernel/ folder in the tarball (kernel folders: " +
                                     list_hv() + ")");
    }
    sel.kernel_dir = root + hv + "-kernel/";
  }
  if (opt.want_kernel) {
    const Member* k = kernel_in(sel.kernel_dir);
    if (k == nullptr) {
      return fail(Errc::kFormat,
                  "no kernel (a file named *vmlinu*) in " +
                      (sel.kernel_dir.empty() ? "the tarball's root" : sel.kernel_dir));
    }
    sel.kernel = *k;
  }
  if (opt.want_ramdisk) {
    for (const Member* m : direct_children(sel.kernel_dir)) {
      if (ramdisk_like(basename_of(m->path))) {
        sel.ramdisk = *m;
        break;
      }
    }
    if (!sel.ramdisk) {
      sel.notes.push_back(
          "no ramdisk (initrd*, initramfs*, *loader*) in " +
          (sel.kernel_dir.empty() ? std::string("the tarball's root") : sel.kernel_dir) +
          ": the image is registered without one");
    }
  }
  for (const auto& m : members) {
    std::string base = basename_of(m.path);
    bool used =
        (sel.kernel && sel.kernel->path == m.path) || (sel.ramdisk && sel.ramdisk->path == m.path);
    if (!used && base.size() > 4 && base.front() != '.' &&
        base.compare(base.size() - 4, 4, ".img") == 0 && !ramdisk_like(base)) {
      sel.image = m;
      return sel;
    }
  }
  return fail(Errc::kFormat, "no machine image (a file named *.img) in the tarball");
}

}  // namespace installer
