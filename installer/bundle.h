// EC2 image bundles (EUSTORE.md §3): bundle_image() turns an image file into encrypted 10 MiB
// parts plus a signed one-line manifest; unbundle() reverses it, checking every part digest, the
// tar digest and the sizes. Both stream in one pass with bounded buffers (a few MiB whatever the
// image size), so a multi-GiB image never sits in memory. Blocking; any thread; no shared state.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <string>
#include <vector>

#include "installer/crypto.h"
#include "installer/error.h"
#include "installer/manifest.h"

namespace installer {

inline constexpr std::uint64_t kPartSize = 10ull * 1024 * 1024;  // 10 MiB (§3.1 step 5)

// Called with (bytes of the image processed, image size) now and then.
using ProgressFn = std::function<void(std::uint64_t done, std::uint64_t total)>;

struct BundleOptions {
  std::string image_path;  // regular file to bundle (read once, sequentially)
  std::string prefix;      // bundle prefix: tar member name, manifest <name>, part file names
  std::string dest_dir;    // existing directory; parts and manifest are written here
  ImageType type = ImageType::kMachine;
  std::string architecture = "x86_64";
  std::string kernel_id;                // machine images only: eki-… to boot with (optional)
  std::string ramdisk_id;               // machine images only: eri-… (optional)
  std::string user;                     // account id for <image><user>
  const Key* cloud_cert = nullptr;      // required: ec2_encrypted_key/iv
  const Key* user_cert = nullptr;       // optional: user_encrypted_key/iv (empty without)
  const Key* private_key = nullptr;     // optional: RSA-SHA1 signature (UNSIGNED without)
  std::uint64_t part_size = kPartSize;  // tests only; the format says 10 MiB
  ProgressFn progress;
};

struct BundledPart {
  std::string path;      // dest_dir/filename
  std::string filename;  // "<prefix>.part.NN"
  std::uint64_t size = 0;
  std::string sha1;    // hex, as in the manifest
  std::string sha256;  // hex, for SigV4 payload signing at upload
};

struct Bundle {
  Manifest manifest;
  std::string manifest_path;  // dest_dir/<prefix>.manifest.xml
  std::string manifest_xml;   // its exact content
  std::vector<BundledPart> parts;
};

// The tar header block(s) of the bundle's single member (GNU format: a ././@LongLink record first
// for names over 100 bytes; sizes of 8 GiB and more in GNU base-256). Exposed for tests.
std::string tar_member_header(const std::string& name, std::uint64_t size, std::time_t mtime);

// Errors: missing cloud certificate (kUsage), unreadable image or unwritable dest (kIo), crypto
// failures (kCrypto). When the ciphertext is an exact multiple of part_size no empty trailing
// part is written (EUSTORE.md §8.12). On error, files already written stay in dest_dir.
Result<Bundle> bundle_image(const BundleOptions& opt);

// The manifest's <image><digest> and <size> that bundle_image() would write for this file and
// prefix, computed by hashing the tar stream only (no gzip, no encryption): how an install tells
// that an image already registered from <prefix>.manifest.xml holds the same bytes.
struct TarDigest {
  std::string sha1;  // hex
  std::uint64_t size = 0;
};
Result<TarDigest> tar_digest(const std::string& image_path, const std::string& prefix);

struct UnbundleOptions {
  std::string manifest_path;
  const Key* private_key = nullptr;  // user key (user_encrypted_*) or cloud key (ec2_encrypted_*)
  const Key* verify_cert = nullptr;  // optional: check the signature with this certificate
  std::string source_dir;            // where the parts are
  std::string dest_dir;              // where the image is written (named after the tar member)
  ProgressFn progress;
};

struct Unbundled {
  std::string image_path;
  std::uint64_t size = 0;
  // "verified" (signature checked), "unsigned", or "not checked" (decrypted with the cloud key
  // and no certificate given).
  std::string signature;
};

// Errors: malformed manifest (kFormat), missing part (kIo), a part digest, the total size, the
// tar digest or the image size differs (kChecksum), wrong key or bad signature (kCrypto), a tar
// member that is not a single regular file with a plain name (kUnsafe/kFormat). On any error the
// partially written image is removed. Zero-byte parts (euca2ools writes one) are accepted.
Result<Unbundled> unbundle(const UnbundleOptions& opt);

}  // namespace installer
