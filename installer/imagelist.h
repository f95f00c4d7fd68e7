// Endorsed image lists (the HEPiX image-list format vmcatcher subscribes to, issue 12): parse the
// `hv:imagelist` JSON, verify the endorser's S/MIME signature with OpenSSL's CMS API, check the
// list against its signer and a given time, and diff it against what was registered before.
// Tricky: everything here is hostile input (sizes, depth, types, dates and DNs are all checked),
// and the only I/O is reading the CA directory in verify_signed_list; the rest is pure.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "installer/error.h"

namespace installer {

// Bounds on what parse_image_list and verify_signed_list accept.
inline constexpr std::size_t kMaxImageListBytes = 16u << 20;      // the JSON content
inline constexpr std::size_t kMaxSignedMessageBytes = 32u << 20;  // the S/MIME message (base64)
inline constexpr std::size_t kMaxImages = 10000;
inline constexpr std::size_t kMaxFieldBytes = 4096;  // every string field we read
inline constexpr std::size_t kMaxIdentifierBytes = 256;
inline constexpr int kMaxJsonDepth = 16;

struct ImageListImage {
  std::string identifier;  // dc:identifier (required): printable ASCII, no space or '/'
  std::string uri;         // hv:uri (required): http:// or https://
  std::uint64_t size = 0;  // hv:size (required): a JSON integer or a string of digits
  std::string sha512;      // sl:checksum:sha512 (required): 128 hex digits, stored lower-case
  // Optional ("" when absent).
  std::string title;        // dc:title
  std::string description;  // dc:description
  std::string format;       // hv:format, lower-cased, [a-z0-9]{1,16} (raw, qcow2, vmdk, ova...)
  std::string version;      // hv:version
  std::string arch;         // sl:arch
  std::string os;           // sl:os
  std::string osversion;    // sl:osversion
  std::string hypervisor;   // hv:hypervisor
  std::string comments;     // sl:comments
};

struct ImageList {
  std::string identifier;              // dc:identifier (required)
  std::string version;                 // hv:version (required)
  std::int64_t created = 0;            // dc:date:created (required), Unix seconds UTC
  std::int64_t expires = 0;            // dc:date:expires (required), Unix seconds UTC, >= created
  std::string endorser_dn;             // hv:endorser.hv:x509.hv:dn (required), as written
  std::string endorser_ca;             // hv:endorser.hv:x509.hv:ca (required), as written
  std::string title;                   // dc:title (optional)
  std::string description;             // dc:description (optional)
  std::string uri;                     // hv:uri (optional)
  std::vector<ImageListImage> images;  // list order; identifiers unique
};

// RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM); 'T' and 'Z' in either case;
// the fraction is dropped; second 60 (a leap second) counts as 59. Returns Unix seconds UTC.
// Errors (kFormat): anything else, including impossible dates (2023-02-29).
Result<std::int64_t> parse_rfc3339(std::string_view text);

// The `{"hv:imagelist": {...}}` document. Unknown keys are ignored. Errors (kFormat), each naming
// the field and, inside an image, its index as `hv:images[N]`: larger than kMaxImageListBytes,
// nested deeper than kMaxJsonDepth, not JSON, a required field missing, a wrong type, a string
// over kMaxFieldBytes, more than kMaxImages images, a bad checksum, size, URI, format or date, a
// duplicate image dc:identifier.
Result<ImageList> parse_image_list(std::string_view json);

// What a verified signed message carried.
struct SignedContent {
  std::string content;            // the signed bytes (the JSON), MIME text headers removed
  std::string signer_dn;          // OpenSSL one-line form, certificate order: /C=DE/O=X/CN=Y
  std::string signer_dn_rfc2253;  // RFC 2253, reversed order: CN=Y,O=X,C=DE
  std::string issuer_dn;          // the signer certificate's issuer, one-line form
  std::string issuer_dn_rfc2253;  // and in RFC 2253 form
};

// True when `expected` names `dn_oneline` / `dn_rfc2253` (the same certificate name in both
// forms): equal to either string exactly (case and spacing matter). The one-line form is what
// hv:dn and vmcatcher use; it is ambiguous when a value contains '/', so trust rests on the CA
// directory issuing names with care, as it does for vmcatcher.
bool dn_matches(std::string_view expected, std::string_view dn_oneline,
                std::string_view dn_rfc2253);

struct VerifyOptions {
  // Trust anchors (and intermediates): c_rehash-style hashed names (HASH.0, via OpenSSL's
  // X509_LOOKUP_hash_dir) and, in addition, every *.pem and *.crt file in it, each loaded.
  std::string ca_dir;
  // When not empty, the signer's subject DN must match it (dn_matches).
  std::string endorser_dn;
  // The time certificates are checked at (Unix seconds); the caller reads the clock.
  std::int64_t now = 0;
};

// Verifies an S/MIME message as fetched: multipart/signed (detached signature, what
// `openssl smime -sign` makes) or opaque application/pkcs7-mime, or a bare PEM or DER CMS
// SignedData. Exactly one signer; its certificate must be in the message and chain to the CA
// directory at `now` (purpose S/MIME signing). No CRL check yet.
// Errors: CA directory missing or holding no certificate (kIo); message too large, not S/MIME or
// CMS (kFormat); not signed, not exactly one signer, signature not matching the content
// (tampered), signer certificate absent, not chained to the CA directory, expired or not yet
// valid (kCrypto, the message says which); the signer is not `endorser_dn` (kUnsafe).
Result<SignedContent> verify_signed_list(std::string_view message, const VerifyOptions& opts);

// The list against its signature and the time (pure). Errors (kUnsafe): expired
// (dc:date:expires <= now); hv:dn does not match the signer; hv:ca does not match the signer's
// issuer (both by dn_matches).
Result<void> check_image_list(const ImageList& list, const SignedContent& signer, std::int64_t now);

// verify_signed_list, parse_image_list, check_image_list in that order; the first error.
Result<ImageList> load_endorsed_list(std::string_view message, const VerifyOptions& opts);

// What was registered for an image before, by dc:identifier.
struct ImageState {
  std::string sha512;
  std::uint64_t size = 0;
  std::string uri;
  bool operator==(const ImageState&) const = default;
};

struct ImageChange {
  enum class Kind { kNew, kChanged };
  Kind kind = Kind::kNew;
  ImageListImage image;
};

struct ImageListDiff {
  std::vector<ImageChange> changed;  // new, or sha512 / size / uri differ; list order
  std::vector<std::string> removed;  // in `previous`, not in the list; identifier order
};

// Pure. Title, version and the other descriptive fields do not count as a change.
ImageListDiff diff_image_list(const std::map<std::string, ImageState>& previous,
                              const ImageList& list);

}  // namespace installer
