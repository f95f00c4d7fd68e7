// Unpacking a eustore image tarball (EUSTORE.md §2.3): extract_tarball() writes the regular files
// of a .tgz with libarchive (refusing absolute paths and ".." components, never creating links or
// devices), and select_members() is the pure rule that picks kernel, ramdisk and machine image
// out of the member list for single-kernel and hypervisor-specific layouts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "installer/bundle.h"
#include "installer/error.h"

namespace installer {

struct Member {
  std::string path;  // normalised relative path inside the tarball ("./" and "//" removed)
  std::string file;  // where it was extracted (empty in pure tests)
  std::uint64_t size = 0;
};

// Extracts every regular file of `tarball` (any compression libarchive knows) below `dest_dir`,
// in tar order. Errors: unreadable or corrupt archive (kFormat), an absolute member path or one
// with a ".." component (kUnsafe, nothing further is extracted), write failures (kIo). Links,
// devices and directories are skipped. `progress(done, total)` counts compressed bytes read.
Result<std::vector<Member>> extract_tarball(const std::string& tarball, const std::string& dest_dir,
                                            const ProgressFn& progress = {});

// Normalises a member path; errors (kUnsafe) for absolute paths and ".." components.
Result<std::string> safe_member_path(std::string_view raw);

struct SelectOptions {
  // "xen", "kvm", "universal" (kernel and ramdisk at the tarball's root), or "" to detect:
  // universal when a kernel sits at the root, otherwise an error naming the <hv>-kernel/ folders.
  std::string hypervisor;
  bool want_kernel = true;   // false with --kernel EKI
  bool want_ramdisk = true;  // false with --ramdisk ERI
};

struct Selection {
  std::optional<Member> kernel;
  std::optional<Member> ramdisk;
  Member image;
  std::string kernel_dir;          // the folder searched, "" for the archive root
  std::vector<std::string> notes;  // e.g. "no ramdisk found in kvm-kernel/: registering without"
};

// Rules (a mix of eustore 2.1 and 3.0, see the .cc): the root is the longest common folder of all
// members; the kernel folder is the root (universal) or <root><hv>-kernel/; in tar order, the
// first direct child of that folder whose name contains "vmlinu" is the kernel and the first
// whose name contains "initrd", "initramfs" or "loader" the ramdisk (names starting with "." are
// ignored); the machine image is the first "*.img" anywhere that is neither of those nor named
// like a ramdisk. Errors (kFormat): no kernel when one is wanted, no machine image, unknown or
// undetectable hypervisor folder.
Result<Selection> select_members(const std::vector<Member>& members, const SelectOptions& opt);

}  // namespace installer
