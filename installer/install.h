// install-image: the whole life of one install as a walk through named steps (lookup in the
// registry, lock, resume/cleanup, catalog, download + verify, unpack, kernel, ramdisk, machine,
// commit), one function per step and a driver loop (see install.cc). Idempotent per
// (tarball checksum, site GUID): a finished install answers from the registry without any network
// transfer; a concurrent one waits; a crashed one is cleaned up and resumed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>

#include "conf/config.h"
#include "installer/credentials.h"
#include "installer/ec2.h"
#include "installer/error.h"
#include "installer/upload.h"

namespace installer {

class Registry;

// What a url or disk_image source holds: an eustore tarball (kernel, ramdisk and image inside) or
// one disk image (raw, qcow2, vmdk, …: converted to raw with qemu-img, bundled as the machine
// image alone). kAuto looks at the first bytes (gzip, bzip2, xz or tar → tarball).
enum class SourceKind { kAuto, kTarball, kDisk };

struct InstallOptions {
  std::string image_name;  // -i: catalog name (exclusive with tarball)
  std::string tarball;     // -t: local .tgz
  // Other sources (issue 12): exactly one of image_name, tarball, url and disk_image is given.
  std::string url;         // any http(s) URL; downloaded with resume and progress
  std::string disk_image;  // a local file (a tarball or one disk image, see `kind`)
  SourceKind kind = SourceKind::kAuto;
  std::string expect_sha512;  // lowercase hex: the source must match (else kChecksum)
  std::optional<std::uint64_t> expect_size;  // bytes: the source must match
  std::string expect_format;                 // raw | qcow2 | vmdk …: a disk image must be this
  // The registry key ("" = "<eustore name>@<guid>" for -i/-t, "url:<url>@<guid>" otherwise)
  // and the content a finished record must hold to be the answer ("" = any): a finished record
  // with other content is installed again (a changed image-list entry); callers that must refuse
  // instead (tusk serve's 409) compare before they call.
  std::string record_key;
  std::string content;
  std::string name;  // bundle name prefix ("" = install_name(source))
  // url: download into this folder and keep the file (a crashed download resumes there) rather
  // than into the work folder. The caller bounds the folder's size.
  std::string download_dir;
  // url: the most bytes a download may bring (0 = no bound but expect_size's): a larger
  // Content-Length is refused before the body, a longer body is cut off (kChecksum).
  std::uint64_t max_download = 0;
  std::string qemu_img = "qemu-img";
  std::string bucket;        // -b
  std::string hypervisor;    // xen | kvm | universal | "" (catalog / layout decides)
  std::string architecture;  // -a, else the catalog's
  std::string description;   // -s, else the catalog's
  std::string work_dir;      // -d: parent of the temporary work folder ("" = $TMPDIR or /var/tmp)
  std::string kernel_id;     // --kernel EKI: use instead of bundling the tarball's kernel
  std::string ramdisk_id;    // --ramdisk ERI
  // For a single disk image only, when kernel_id / ramdisk_id are empty: what it boots with
  // (a tarball brings its own kernel and ramdisk, which these never replace).
  std::string disk_kernel_id, disk_ramdisk_id;
  std::string guid;         // site GUID ("" = <EC2_USER_ID>@<EC2_URL>)
  std::string eustore_url;  // catalog base (tuskd), -U / EUSTORE_URL
  std::string acl = "aws-exec-read";
  std::string registry_dir;
  Registry* registry = nullptr;  // an open registry to use (one LMDB env per process), else
                                 // registry_dir is opened
  bool keep_work_dir = false;
  bool trust_registry = false;  // skip the DescribeImages check of recorded ids
  CloudCredentials creds;
  conf::Signature s3_signature = conf::Signature::kV2;
  std::string s3_region = "eucalyptus";
  Ec2Signature ec2_signature = Ec2Signature::kV2;
  std::string ec2_region = "eucalyptus";
};

struct InstallIo {
  LogFn log;                      // one human-readable line per event (stderr in the CLI)
  std::FILE* progress = nullptr;  // where progress is drawn (nullptr: none)
  bool tty = false;               // bar (true) or a line per 10 % (false)
  // Called as the install moves on: the step's name, and bytes done/total while it transfers
  // (total 0 when unknown). From the installing thread.
  std::function<void(const char* step, std::uint64_t done, std::uint64_t total)> on_progress;
};

struct InstallResult {
  std::string eki, eri, emi;
  bool from_registry = false;  // answered from the registry, nothing transferred
};

// Recorded ids are checked with DescribeImages before they are answered or reused: a
// deregistered image is installed again (its still usable kernel/ramdisk are kept). Before an
// image is bundled, the account's images are searched for one registered from the same
// ImageLocation (EUSTORE.md §8.16); when its manifest says it holds the same bytes (tar digest
// and size) it is reused, when it holds others, or its Name is taken, the new one is registered
// under a padded name ("eustore-<8 hex>-…", euca2ools' --pad-name) so nothing is overwritten.
//
// Errors carry the step that failed in their message. On failure nothing half-done is left
// registered as done: uploaded objects of unregistered images are deleted (best effort) and the
// registry record says "failed" (the next attempt reuses already registered kernel/ramdisk ids).
Result<InstallResult> install_image(const InstallOptions& opt, const InstallIo& io);

// The S3 target (endpoint, keys, signature, bucket, ACL), the EC2 endpoint and the site GUID
// ("<EC2_USER_ID>@<EC2_URL>" unless given) an install of `opt` uses; for the commands that
// work on what installs made (images remove, worker).
S3Target s3_target_of(const InstallOptions& opt);
Ec2Endpoint ec2_endpoint_of(const InstallOptions& opt);
std::string site_guid(const InstallOptions& opt);

// After an install that died (its record in progress, its process gone): deletes what it had
// uploaded for images not yet registered, removes its work folder and marks the record failed
// (registered ids stay for the next attempt, which would do the same itself). Returns false,
// touching nothing, when the record is not such a one or its lock is held. Errors: registry or
// S3 failures (the record then stays as it was).
Result<bool> clean_interrupted(const InstallOptions& opt, const std::string& key, const LogFn& log);

// "eustore-<basename minus last extension, '.' -> '_'>" (EUSTORE.md §2.4, 3.0 naming).
std::string install_name(std::string_view url_or_path);

}  // namespace installer
