// Image sources other than a catalog entry (issue 12): telling an eustore tarball from a single
// disk image by its first bytes, checking a file against an image list's size and SHA-512, and
// turning a qcow2/vmdk/… image into raw with qemu-img (Debian's qemu-utils; run as a child
// process with an argument vector, never a shell, its output bounded and its time limited).
// Blocking; any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "installer/error.h"
#include "installer/install.h"

namespace installer {

// kTarball for gzip, bzip2 or xz magic, or a ustar header at offset 257; kDisk otherwise
// (raw images have no magic). `head` is the file's first 512 bytes (fewer for a short file).
SourceKind kind_of_bytes(std::string_view head);
// kind_of_bytes() of the file's start. Errors: unreadable (kIo).
Result<SourceKind> kind_of_file(const std::string& path);

// Size first (cheap), then SHA-512 (one read), as given. Errors: kChecksum naming both values.
Result<void> check_source(const std::string& path, std::optional<std::uint64_t> size,
                          const std::string& sha512_hex);

// Runs argv[0] (searched in PATH) with stdin from /dev/null; stdout is returned (at most
// `max_output` bytes, more is an error), stderr's first line goes into the error. Errors: not
// found or not executable (kUsage, naming the program), non-zero exit or a signal (kFormat for
// qemu-img's "not an image" cases is up to the caller: here kIo with stderr), over `timeout`
// (kIo; the child is killed).
Result<std::string> run_program(const std::vector<std::string>& argv, std::size_t max_output,
                                std::chrono::seconds timeout);

// `qemu-img info --output=json` → "format" (raw, qcow2, vmdk, vdi, …). Errors as run_program;
// an answer that is not the JSON qemu-img writes is kFormat.
Result<std::string> disk_format(const std::string& qemu_img, const std::string& path);
// The "format" field of qemu-img's info JSON (pure; exposed for tests).
Result<std::string> parse_qemu_info(std::string_view json);

// `qemu-img convert -f <format> -O raw in out`. Errors as run_program.
Result<void> convert_to_raw(const std::string& qemu_img, const std::string& in,
                            const std::string& format, const std::string& out,
                            std::chrono::seconds timeout);

}  // namespace installer
