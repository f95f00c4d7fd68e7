// migrate-image (issue 12): an EC2 bundle in a bucket (S3 or Walrus) plus its owner's private key
// → a registered EMI on this cloud, in one call. Steps: fetch the manifest (signed GET), answer
// from the registry when this bundle was migrated already, choose kernel/ramdisk, download the
// parts (one at a time, each checked against its manifest digest), unbundle with the owner's key
// (bundle.h checks every digest again), then install_image() bundles the raw image again for this
// cloud, uploads and registers it. Tricky: the registry key names the source bundle, not a file,
// so a second run needs only the manifest to answer; everything downloaded lives in one work
// folder that is removed on every way out.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "conf/config.h"
#include "installer/ec2.h"
#include "installer/error.h"
#include "installer/install.h"
#include "installer/manifest.h"

namespace installer {

// Bounds on what a source may make us hold or write. A manifest of kMaxParts parts is about
// 15 MB; a part is 10 MiB in every bundler known, the cap leaves room for others.
inline constexpr std::size_t kMaxSourceManifestBytes = 16u << 20;
inline constexpr std::size_t kMaxSourceParts = 100000;
inline constexpr std::uint64_t kMaxSourcePartBytes = 64ull << 20;

// Where a bundle manifest sits: "BUCKET/PREFIX.manifest.xml", PREFIX possibly under folders
// ("BUCKET/dir/img.manifest.xml"); the parts sit beside the manifest.
struct ManifestLocation {
  std::string bucket;   // "BUCKET"
  std::string key;      // "dir/img.manifest.xml"
  std::string key_dir;  // "dir/" ("" at the bucket's top): the parts' key prefix
  std::string prefix;   // "dir/img"
  std::string name;     // "img": the bundle name here (prefix's last segment)
};

// Pure. One leading '/' is ignored. Errors (kUsage): no '/', an empty or unsafe bucket name
// (letters, digits, '.', '-', '_'), a key not ending in ".manifest.xml", an empty name, empty,
// "." or ".." key segments, or characters other than letters, digits and "._-/" (EUSTORE.md
// §8.11).
Result<ManifestLocation> parse_manifest_location(std::string_view text);

// "migrate:<endpoint without trailing '/'>/<bucket>/<prefix>@<guid>". Pure.
std::string migrate_record_key(std::string_view source_endpoint, const ManifestLocation& loc,
                               std::string_view guid);

// Pure checks of a parsed source manifest before anything is downloaded. Errors (kFormat): no
// parts, more than kMaxSourceParts, a bundled_size no set of parts within kMaxSourcePartBytes can
// make, part file names that repeat. Errors (kUsage): a kernel or ramdisk bundle (kernel_id or
// ramdisk_id "true", or <type> kernel/ramdisk): only machine images are migrated.
Result<void> check_source_manifest(const Manifest& m);

// Which kernel (or ramdisk) the migrated image boots with. `given`: --kernel/--ramdisk;
// `from_manifest`: the source manifest's <kernel_id>/<ramdisk_id>; `here`: what DescribeImages
// says about that id on this cloud (nullptr: unknown here). `note` is a log line for the user
// ("" when there is nothing to say). Pure.
struct BootImageChoice {
  std::string id;  // "" = register without
  std::string note;
};
BootImageChoice choose_boot_image(ImageType kind, std::string_view given,
                                  std::string_view from_manifest, const ImageInfo* here);

struct MigrateOptions {
  std::string manifest;     // "BUCKET/PREFIX.manifest.xml" in the source
  std::string source_key;   // the owner's private key (PEM): opens user_encrypted_key/iv
  std::string source_cert;  // optional: check the manifest signature with this certificate
  // The source's endpoint, keys, signature (v2 | v4) and region; only these fields are used.
  conf::Upstream source;
  // The cloud side, as install-image takes it (credentials, bucket, registry, guid, work_dir,
  // kernel_id/ramdisk_id as given, acl, signatures). The source fields (disk_image, kind,
  // record_key, content, name, architecture, expect_*) are filled here; any value given for
  // them is replaced. An empty description becomes "migrated from BUCKET/KEY".
  InstallOptions install;
};

// Runs the steps above. Blocking; one thread; opens the registry itself (passes it to
// install_image, one LMDB environment per process). The work folder ("tusk-migrate-XXXXXX"
// under install.work_dir, else $TMPDIR, else /var/tmp) is removed before returning, on success
// and on failure, unless install.keep_work_dir.
// Errors carry the step as the message's start ("manifest: ", "registry: ", "kernel: ",
// "parts: ", "unbundle: ", "install: ") and keep their Errc: a missing manifest or part (kIo,
// naming it), a part whose SHA-1 or size is wrong (kChecksum, naming it), a source that refuses
// the keys (kRemote), a key that opens neither encrypted key (kCrypto, OpenSSL's words), not
// enough free space for the parts and the image (kIo), an image qemu-img does not call raw
// (kFormat: a bundle holds the disk as booted, it is never converted), install_image()'s own
// errors.
// On failure nothing is registered or uploaded by this call (install_image cleans up its side).
Result<InstallResult> migrate_image(const MigrateOptions& opt, const InstallIo& io);

}  // namespace installer
