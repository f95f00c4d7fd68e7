// The install-image state machine, shared by the files that hold its steps (not a public
// header): install.cc (the driver, the registry, resume and cleanup), install_source.cc (getting
// the image onto disk: catalog, download, url, disk image, unpack) and install_publish.cc
// (bundle, upload, register, reuse). One Installer per run; one thread.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <optional>

#include "installer/bundle.h"
#include "installer/catalog.h"
#include "installer/crypto.h"
#include "installer/http.h"
#include "installer/install.h"
#include "installer/manifest.h"
#include "installer/progress.h"
#include "installer/registry.h"
#include "installer/source.h"
#include "installer/unpack.h"
#include "installer/work_dir.h"

namespace installer::install_detail {

namespace fs = std::filesystem;

// Returns the error of a Result (lvalue or temporary) from the enclosing step.
#define TUSK_TRY(expr)                                     \
  do {                                                     \
    auto&& tusk_try_r_ = (expr);                           \
    if (!tusk_try_r_) {                                    \
      return conf::unexpected(Error(tusk_try_r_.error())); \
    }                                                      \
  } while (0)

enum class Step {
  kLookup,    // registry: done → answer at once
  kLock,      // per-key flock; wait for a concurrent install
  kResume,    // re-read under the lock; clean up a crashed/failed attempt; claim the record
  kCatalog,   // -i: fetch the catalog entry
  kDownload,  // -i: download through the cache, check length and checksum
  kFetch,     // url: download (resumed when a partial file is there)
  kInspect,   // url / disk_image: size and SHA-512 as expected; tarball or disk image?
  kDisk,      // one disk image: to raw (qemu-img), the machine image alone
  kUnpack,    // extract, pick kernel/ramdisk/image
  kKernel,    // bundle + upload + register
  kRamdisk,
  kMachine,
  kCommit,  // record done
  kDone,
};

const char* step_name(Step s);
// Removes a crashed install's work folder (downloaded tarball, extracted images, parts:
// gigabytes). Only a folder this program made is removed: one named tusk-install-XXXXXX.
void remove_install_work_dir(const std::string& dir, const LogFn& log);
// The last path segment of a URL or path, without its query.
std::string basename_of(std::string_view p);

class Installer {
 public:
  Installer(const InstallOptions& opt, const InstallIo& io) : opt_(opt), io_(io) {}
  Result<InstallResult> run() {
    TUSK_TRY(validate());
    Step step = Step::kLookup;
    while (step != Step::kDone) {
      Result<Step> next = dispatch(step);
      if (!next) {
        Error e = std::move(next).error();
        e.message = std::string(step_name(step)) + ": " + e.message;
        abandon();
        return conf::unexpected(std::move(e));
      }
      step = *next;
    }
    return result_;
  }

 private:
  Result<Step> dispatch(Step s);
  void log(const std::string& line) const {
    if (io_.log) {
      io_.log(line);
    }
  }
  Result<void> validate();
  // --- steps --------------------------------------------------------------------------------
  Result<Step> lookup();
  Result<Http*> http();
  // Asks the cloud about recorded ids (§7: reuse only what is still there). Returns the ids of
  // `ids` that are unusable (deregistered, failed, unknown); none when the cloud cannot be
  // asked (a warning: the registry is then trusted, as with --trust-registry).
  std::vector<std::string> unusable(const std::vector<std::string>& ids);
  // A finished record answers only while its images are usable. When they are not, the ones
  // that still are (kernel, ramdisk) are kept for the reinstall.
  bool still_usable(const InstallRecord& r);
  // A finished record answers only for the content asked for (an image-list entry whose
  // checksum changed is installed again).
  bool content_matches(const InstallRecord& r) const {
    return opt_.content.empty() || r.content == opt_.content;
  }
  void progress(const char* step, std::uint64_t done = 0, std::uint64_t total = 0) const {
    if (io_.on_progress) {
      io_.on_progress(step, done, total);
    }
  }
  Step answer_from(const InstallRecord& r);
  Result<Step> lock();
  Result<Step> resume();
  // Where a record of other content is kept when this install replaces it.
  std::string history_key(const InstallRecord& old) const;
  Result<Step> catalog();
  Result<Step> download();
  // url: into the download folder (kept, and resumed there after a crash) or the work folder.
  Result<Step> fetch();
  Result<Step> inspect();
  // A single disk image: raw as it is, anything else converted; bundled as the machine image
  // with the kernel and ramdisk given (or none).
  Result<Step> disk();
  Result<Step> unpack();
  Result<void> load_keys();
  // Bundle, upload and register one image; records progress in the registry as it goes.
  Result<Step> artefact(ImageType type);
  // Records a registered (or reused) id: a resumed install never registers it again.
  Result<void> record_id(ImageType type, const std::string& id);
  // "eustore-<stem>…" → "eustore-<8 hex>-<stem>…", one random pad per install (euca2ools 3
  // --pad-name).
  std::string padded(const std::string& prefix);
  // EUSTORE.md §8.16: an image of this account registered from our manifest location is
  // reused when its manifest says it holds the same bytes; when the location or the Name is
  // taken otherwise, `prefix` becomes a padded one (nothing registered is ever overwritten).
  // Returns the reused id, or "" to bundle. Listing failures only disable the search.
  Result<std::string> find_registered(ImageType type, const Member& member, std::string& prefix);
  // "" when the manifest at <bucket>/<prefix>.manifest.xml describes exactly the bundle we would
  // make of `member` (tar digest, size, and the kernel/ramdisk it boots with); else the reason.
  Result<std::string> same_content(ImageType type, const Member& member, const std::string& prefix);
  Result<Step> commit();
  // After a failed step: delete what this attempt uploaded for unregistered images and mark the
  // record failed (registered ids are kept for the next attempt). Best effort.
  void abandon();

  const InstallOptions& opt_;
  const InstallIo& io_;
  std::string guid_, image_, source_, key_;
  Registry* registry_ = nullptr;  // opt_.registry, or own_registry_
  std::optional<Registry> own_registry_;
  std::string source_file_;   // url / disk_image: the file (downloaded or given)
  bool keep_source_ = false;  // in opt_.download_dir: never removed here
  KeyLock lock_;
  InstallRecord rec_;
  bool claimed_ = false;
  WorkDir work_;
  std::optional<Http> http_;
  S3Target s3_;
  Ec2Endpoint ec2_;
  bool bucket_checked_ = false;
  CatalogImage entry_;
  std::string image_url_, tarball_, name_, arch_, description_;
  Selection sel_;
  std::optional<Key> cloud_cert_, user_cert_, private_key_;
  std::string kernel_id_, ramdisk_id_, machine_id_;
  InstallResult result_;
  // The DescribeImages check of a finished record (asked once per run).
  std::string checked_emi_, usable_eki_, usable_eri_;
  bool checked_usable_ = false;
  // This account's images (§8.16), listed once before the first bundle.
  bool own_listed_ = false;
  std::vector<ImageInfo> own_;
  std::string pad_;
};

}  // namespace installer::install_detail
