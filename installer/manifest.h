// The EC2 image bundle manifest (EUSTORE.md §3.4–3.5): a plain struct, its one-line serialisation
// in the exact element order EC2 and Eucalyptus expect, the signed text (machine_configuration
// followed by image, byte for byte as serialised), and a namespace-agnostic parser for unbundle.
// Written by hand on purpose: element order and the absence of whitespace are part of the format.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "installer/error.h"

namespace installer {

enum class ImageType { kMachine, kKernel, kRamdisk };
const char* image_type_name(ImageType t);  // "machine", "kernel", "ramdisk"

struct ManifestPart {
  std::string filename;  // bare basename, "<prefix>.part.NN"
  std::string sha1;      // lowercase hex of the part bytes
};

struct Manifest {
  std::string bundler_name = "tusk";
  std::string bundler_version = "0.1.0";
  std::string bundler_release = "0";
  std::string architecture;  // i386 | x86_64 | armhf
  // Kernel bundle: kernel_id "true"; ramdisk bundle: ramdisk_id "true"; machine image: the
  // eki-/eri- ids to boot with, or empty (element omitted).
  std::string kernel_id;
  std::string ramdisk_id;
  std::string name;  // the bundle prefix
  std::string user;  // account id
  ImageType type = ImageType::kMachine;
  std::string digest_sha1;  // of the tar stream
  std::uint64_t size = 0;   // image bytes
  std::uint64_t bundled_size = 0;
  std::string ec2_encrypted_key;   // hex
  std::string user_encrypted_key;  // hex, may be empty (no user certificate)
  std::string ec2_encrypted_iv;
  std::string user_encrypted_iv;
  std::vector<ManifestPart> parts;
  std::string signature = "UNSIGNED";  // hex RSA-SHA1, or UNSIGNED without a private key
};

// "<machine_configuration>…</machine_configuration>" and "<image>…</image>", exactly as they
// appear in serialize(); their concatenation is what the signature covers.
std::string machine_configuration_xml(const Manifest& m);
std::string image_xml(const Manifest& m);
std::string signed_text(const Manifest& m);
// The whole document on one line: `<?xml version="1.0" encoding="UTF-8"?><manifest>…</manifest>`,
// no whitespace between elements, no trailing newline.
std::string serialize(const Manifest& m);

// Parses a manifest (any XML namespace, any whitespace). `signed_text` receives the exact
// substrings the signature covers, cut from `xml` as Eucalyptus does. Errors (kFormat): not XML,
// missing elements, non-numeric sizes, non-hex digests, part indices not 0..count-1.
struct ParsedManifest {
  Manifest manifest;
  std::string signed_text;
};
Result<ParsedManifest> parse_manifest(std::string_view xml);

}  // namespace installer
