// The install-image state machine. Each step does its I/O and says which step comes next; the
// driver loop runs them and, on failure, cleans up what the failed attempt uploaded. Tricky:
// object keys are written to the registry record BEFORE their upload starts, so a crash at any
// point leaves enough to clean up; registered ids are written right after registration, so a
// resumed install never registers the same kernel twice.
#include "installer/install.h"

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
#include "installer/manifest.h"
#include "installer/progress.h"
#include "installer/registry.h"
#include "installer/source.h"
#include "installer/unpack.h"
#include "installer/work_dir.h"

namespace installer {
namespace {

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

const char* step_name(Step s) {
  switch (s) {
    case Step::kLookup:
      return "registry lookup";
    case Step::kLock:
      return "lock";
    case Step::kResume:
      return "resume";
    case Step::kCatalog:
      return "catalog";
    case Step::kDownload:
      return "download";
    case Step::kFetch:
      return "fetch";
    case Step::kInspect:
      return "inspect";
    case Step::kDisk:
      return "disk image";
    case Step::kUnpack:
      return "unpack";
    case Step::kKernel:
      return "kernel";
    case Step::kRamdisk:
      return "ramdisk";
    case Step::kMachine:
      return "machine image";
    case Step::kCommit:
      return "commit";
    case Step::kDone:
      return "done";
  }
  return "?";
}

std::string basename_of(std::string_view p) {
  auto q = p.find('?');
  p = p.substr(0, q);
  auto s = p.rfind('/');
  return std::string(s == std::string_view::npos ? p : p.substr(s + 1));
}

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
  Result<Step> dispatch(Step s) {
    switch (s) {
      case Step::kLookup:
        return lookup();
      case Step::kLock:
        return lock();
      case Step::kResume:
        return resume();
      case Step::kCatalog:
        return catalog();
      case Step::kDownload:
        return download();
      case Step::kFetch:
        return fetch();
      case Step::kInspect:
        return inspect();
      case Step::kDisk:
        return disk();
      case Step::kUnpack:
        return unpack();
      case Step::kKernel:
        return artefact(ImageType::kKernel);
      case Step::kRamdisk:
        return artefact(ImageType::kRamdisk);
      case Step::kMachine:
        return artefact(ImageType::kMachine);
      case Step::kCommit:
        return commit();
      case Step::kDone:
        break;
    }
    return Step::kDone;
  }

  void log(const std::string& line) const {
    if (io_.log) {
      io_.log(line);
    }
  }

  Result<void> validate() {
    const int sources = !opt_.image_name.empty() + !opt_.tarball.empty() + !opt_.url.empty() +
                        !opt_.disk_image.empty();
    if (sources != 1) {
      return fail(Errc::kUsage, "give exactly one of -i NAME and -t TARBALL");
    }
    if (!opt_.url.empty() && opt_.url.rfind("http://", 0) != 0 &&
        opt_.url.rfind("https://", 0) != 0) {
      return fail(Errc::kUsage, "the image URL must be http:// or https://");
    }
    if (!opt_.expect_sha512.empty() &&
        (opt_.expect_sha512.size() != 128 ||
         opt_.expect_sha512.find_first_not_of("0123456789abcdef") != std::string::npos)) {
      return fail(Errc::kUsage, "the expected SHA-512 must be 128 lowercase hex digits");
    }
    if (opt_.bucket.empty() ||
        opt_.bucket.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789.-_") != std::string::npos) {
      return fail(Errc::kUsage, "-b BUCKET is required: letters, digits, '.', '-', '_' only");
    }
    if (!opt_.hypervisor.empty() && opt_.hypervisor != "xen" && opt_.hypervisor != "kvm" &&
        opt_.hypervisor != "universal") {
      return fail(Errc::kUsage, "--hypervisor must be xen, kvm or universal");
    }
    if (!opt_.kernel_id.empty() && !is_image_id(opt_.kernel_id)) {
      return fail(Errc::kUsage, "--kernel: '" + opt_.kernel_id + "' is not an image id");
    }
    if (!opt_.ramdisk_id.empty() && !is_image_id(opt_.ramdisk_id)) {
      return fail(Errc::kUsage, "--ramdisk: '" + opt_.ramdisk_id + "' is not an image id");
    }
    if (!opt_.tarball.empty() && opt_.architecture.empty()) {
      return fail(Errc::kUsage, "-t needs -a ARCH (i386, x86_64 or armhf)");
    }
    if (!opt_.image_name.empty() && opt_.eustore_url.empty()) {
      return fail(Errc::kUsage, "-i needs the catalog's base URL: -U URL or EUSTORE_URL");
    }
    const CloudCredentials& c = opt_.creds;
    std::string missing;
    for (auto [value, name] :
         {std::pair{&c.ec2_url, "EC2_URL (--ec2-url)"}, std::pair{&c.s3_url, "S3_URL (--s3-url)"},
          std::pair{&c.access_key, "EC2_ACCESS_KEY (-I)"},
          std::pair{&c.secret_key, "EC2_SECRET_KEY (-S)"},
          std::pair{&c.cloud_cert, "EUCALYPTUS_CERT (--ec2cert)"},
          std::pair{&c.user_id, "EC2_USER_ID (-u)"}}) {
      if (value->empty()) {
        missing += missing.empty() ? name : std::string(", ") + name;
      }
    }
    if (!missing.empty()) {
      return fail(Errc::kUsage, "missing credentials: " + missing +
                                    " (set them in the environment, an eucarc file or flags)");
    }
    guid_ = site_guid(opt_);
    s3_ = s3_target_of(opt_);
    ec2_ = ec2_endpoint_of(opt_);
    return {};
  }

  // --- steps --------------------------------------------------------------------------------

  Result<Step> lookup() {
    if (!opt_.image_name.empty()) {
      image_ = opt_.image_name;
      source_ = normalize_base(opt_.eustore_url) + " #" + image_;
    } else if (!opt_.tarball.empty()) {
      auto name = eustore_name_of_file(opt_.tarball);
      TUSK_TRY(name);
      image_ = *name;
      source_ = fs::absolute(opt_.tarball).string();
    } else {
      // url / disk_image: named after the file; the key is the source unless the caller names
      // one (a serve GUID, an image-list identifier).
      source_ = !opt_.url.empty() ? opt_.url : fs::absolute(opt_.disk_image).string();
      image_ = basename_of(source_);
      if (image_.empty()) {
        image_ = "image";
      }
    }
    key_ = !opt_.record_key.empty()                      ? opt_.record_key
           : opt_.url.empty() && opt_.disk_image.empty() ? registry_key(image_, guid_)
           : !opt_.url.empty()                           ? "url:" + source_ + "@" + guid_
                                                         : "file:" + source_ + "@" + guid_;
    if (opt_.registry != nullptr) {
      registry_ = opt_.registry;
    } else {
      auto reg = Registry::open(opt_.registry_dir);
      TUSK_TRY(reg);
      own_registry_.emplace(std::move(*reg));
      registry_ = &*own_registry_;
    }
    auto rec = registry_->get(key_);
    TUSK_TRY(rec);
    if (*rec && (*rec)->state == InstallState::kDone && content_matches(**rec) &&
        still_usable(**rec)) {
      return answer_from(**rec);
    }
    return Step::kLock;
  }

  Result<Http*> http() {
    if (!http_) {
      auto h = Http::create();
      TUSK_TRY(h);
      http_.emplace(std::move(*h));
    }
    return &*http_;
  }

  // Asks the cloud about recorded ids (§7: reuse only what is still there). Returns the ids of
  // `ids` that are unusable (deregistered, failed, unknown); none when the cloud cannot be
  // asked (a warning: the registry is then trusted, as with --trust-registry).
  std::vector<std::string> unusable(const std::vector<std::string>& ids) {
    std::vector<std::string> asked;
    for (const auto& id : ids) {
      if (!id.empty()) {
        asked.push_back(id);
      }
    }
    if (asked.empty() || opt_.trust_registry) {
      return {};
    }
    auto h = http();
    auto images = h ? describe_images(**h, ec2_, asked)
                    : Result<std::vector<ImageInfo>>(conf::unexpected(h.error()));
    if (!images) {
      log("warning: cannot check the recorded images with DescribeImages (" +
          images.error().message + "); trusting the registry");
      return {};
    }
    std::vector<std::string> gone;
    for (const auto& id : asked) {
      auto it = std::find_if(images->begin(), images->end(),
                             [&](const ImageInfo& i) { return i.id == id; });
      if (it == images->end() || !is_usable_state(it->state)) {
        log("Recorded image " + id + " is " +
            (it == images->end() ? std::string("no longer known to the cloud")
                                 : "in state '" + it->state + "'") +
            ": it will not be reused");
        gone.push_back(id);
      }
    }
    return gone;
  }

  // A finished record answers only while its images are usable. When they are not, the ones
  // that still are (kernel, ramdisk) are kept for the reinstall.
  bool still_usable(const InstallRecord& r) {
    if (checked_emi_ == r.emi && !r.emi.empty()) {
      return checked_usable_;  // asked already in this run (lookup, then again under the lock)
    }
    const auto gone = unusable({r.eki, r.eri, r.emi});
    auto kept = [&](const std::string& id) {
      return std::find(gone.begin(), gone.end(), id) == gone.end() ? id : std::string();
    };
    checked_emi_ = r.emi;
    checked_usable_ = gone.empty();
    usable_eki_ = kept(r.eki);
    usable_eri_ = kept(r.eri);
    return checked_usable_;
  }

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

  Step answer_from(const InstallRecord& r) {
    log("Image " + image_ + " is already installed on " + guid_ + " (registry " + registry_->dir() +
        "): nothing to download");
    result_.eki = r.eki;
    result_.eri = r.eri;
    result_.emi = r.emi;
    result_.from_registry = true;
    return Step::kDone;
  }

  Result<Step> lock() {
    auto l = registry_->lock(key_, [&] {
      auto rec = registry_->get(key_);
      std::string who = rec && *rec ? " (pid " + std::to_string((*rec)->pid) + ")" : "";
      log("Waiting for another install of image " + image_ + who + " to finish");
    });
    TUSK_TRY(l);
    lock_ = std::move(*l);
    return Step::kResume;
  }

  Result<Step> resume() {
    auto rec = registry_->get(key_);
    TUSK_TRY(rec);
    if (*rec) {
      InstallRecord& old = **rec;
      const bool changed = old.state == InstallState::kDone && !content_matches(old);
      if (old.state == InstallState::kDone && !changed && still_usable(old)) {
        return answer_from(old);
      }
      if (old.state == InstallState::kInProgress && old.pid != ::getpid() &&
          process_alive(old.pid, old.pid_start)) {
        return fail(Errc::kBusy, "image " + image_ + " is being installed by pid " +
                                     std::to_string(old.pid) +
                                     ", which holds no lock here (registry on a shared file "
                                     "system?); try again when it has finished");
      }
      if (changed) {
        log("Installing image " + image_ + " again: its content changed (" + old.content + " → " +
            opt_.content + "); the earlier registration stays as it is");
      } else if (old.state == InstallState::kDone) {
        log("Installing image " + image_ + " again: a recorded image is no longer usable");
      } else {
        log(std::string("Cleaning up an interrupted install of ") + image_ + " (" +
            install_state_name(old.state) + ", pid " + std::to_string(old.pid) + ")");
      }
      remove_stale_work_dir(old.work_dir);
      if (!old.pending_keys.empty()) {
        S3Target t = s3_;
        t.bucket = old.bucket.empty() ? s3_.bucket : old.bucket;
        if (auto d = delete_objects(t, old.pending_keys); !d) {
          log("warning: could not delete every leftover object: " + d.error().message);
        } else {
          log("Deleted " + std::to_string(old.pending_keys.size()) + " leftover objects from " +
              t.bucket);
        }
      }
      if (changed) {
        // New content may come with another kernel: nothing of the old install is reused.
      } else if (old.state == InstallState::kDone) {
        rec_.eki = usable_eki_;
        rec_.eri = usable_eri_;
      } else {
        const auto gone = unusable({old.eki, old.eri});
        rec_.eki = std::find(gone.begin(), gone.end(), old.eki) == gone.end() ? old.eki : "";
        rec_.eri = std::find(gone.begin(), gone.end(), old.eri) == gone.end() ? old.eri : "";
      }
      if (!rec_.eki.empty() || !rec_.eri.empty()) {
        log("Reusing what the earlier install registered:" +
            (rec_.eki.empty() ? std::string() : " kernel " + rec_.eki) +
            (rec_.eri.empty() ? std::string() : " ramdisk " + rec_.eri));
      }
    }
    rec_.state = InstallState::kInProgress;
    rec_.pid = ::getpid();
    rec_.pid_start = process_start_time(rec_.pid);
    rec_.started = std::time(nullptr);
    rec_.image = image_;
    rec_.guid = guid_;
    rec_.source = source_;
    rec_.content = opt_.content;
    rec_.bucket = opt_.bucket;
    rec_.pending_keys.clear();
    TUSK_TRY(registry_->put(key_, rec_));
    claimed_ = true;
    TUSK_TRY(work_.create(opt_.work_dir, opt_.keep_work_dir, "tusk-install"));
    if (opt_.keep_work_dir) {
      log("Work folder (kept): " + work_.path());
    } else {
      rec_.work_dir = work_.path();  // a crash leaves it: the next attempt removes it
      TUSK_TRY(registry_->put(key_, rec_));
    }
    TUSK_TRY(http());
    if (!opt_.url.empty()) {
      return Step::kFetch;
    }
    if (!opt_.disk_image.empty()) {
      source_file_ = opt_.disk_image;
      return Step::kInspect;
    }
    return opt_.image_name.empty() ? Step::kUnpack : Step::kCatalog;
  }

  // A crashed install's work folder (downloaded tarball, extracted images, parts: gigabytes).
  // Only a folder this program made is removed: one named tusk-install-XXXXXX.
  void remove_stale_work_dir(const std::string& dir) {
    if (dir.empty() || fs::path(dir).filename().string().rfind("tusk-install-", 0) != 0) {
      return;
    }
    std::error_code ec;
    if (!fs::exists(dir, ec)) {
      return;
    }
    const auto removed = fs::remove_all(dir, ec);
    if (ec) {
      log("warning: could not remove the interrupted install's work folder " + dir + ": " +
          ec.message());
    } else {
      log("Removed the interrupted install's work folder " + dir + " (" + std::to_string(removed) +
          " files)");
    }
  }

  Result<Step> catalog() {
    const std::string base = normalize_base(opt_.eustore_url);
    std::string url = base + "catalog.json";
    auto r = http_->get(url);
    TUSK_TRY(r);
    if (r->status == 404) {
      url = base + "catalog";
      r = http_->get(url);
      TUSK_TRY(r);
    }
    if (r->status != 200) {
      return fail(Errc::kNetwork, "GET " + url + ": HTTP " + std::to_string(r->status));
    }
    auto cat = parse_catalog(r->body);
    if (!cat) {
      return fail(cat.error().code, url + ": " + cat.error().message);
    }
    const CatalogImage* img = find_image(*cat, image_);
    if (img == nullptr) {
      return fail(Errc::kUsage,
                  "no image named " + image_ + " in " + url + " (tusk describe-images lists them)");
    }
    if (img->url.empty()) {
      return fail(Errc::kFormat, url + ": image " + image_ + " has no \"url\"");
    }
    entry_ = *img;
    image_url_ = resolve_url(base, img->url);
    return Step::kDownload;
  }

  Result<Step> download() {
    log("Downloading image: " + (entry_.description.empty() ? image_ : entry_.description));
    tarball_ = work_.path() + "/" + basename_of(image_url_);
    if (basename_of(image_url_).empty()) {
      tarball_ = work_.path() + "/image.tgz";
    }
    Progress bar("Downloading image", io_.tty, io_.progress ? io_.progress : stderr);
    auto d = http_->download(image_url_, tarball_, [&](std::uint64_t done, std::uint64_t total) {
      if (io_.progress) bar.update(done, total);
    });
    if (io_.progress) bar.finish();
    TUSK_TRY(d);
    if (!d->content_length) {
      log("warning: " + image_url_ + " came without Content-Length");
    }
    std::string got = eustore_name_from_md5(d->md5_hex);
    if (got != image_) {
      return fail(Errc::kChecksum, "downloaded file is incomplete or corrupt (checksum: " + got +
                                       ", expected: " + image_ + "); nothing was registered");
    }
    log("Checked image: " + std::to_string(d->bytes) + " bytes, checksum " + got);
    return Step::kUnpack;
  }

  // url: into the download folder (kept, and resumed there after a crash) or the work folder.
  Result<Step> fetch() {
    std::string file = basename_of(opt_.url);
    if (file.empty() || file == "." || file == "..") {
      file = "image";
    }
    if (!opt_.download_dir.empty()) {
      std::error_code ec;
      fs::create_directories(opt_.download_dir, ec);
      if (ec) {
        return fail(Errc::kIo, "create " + opt_.download_dir + ": " + ec.message());
      }
      // One file per URL: two URLs ending in the same name never share a download.
      source_file_ = opt_.download_dir + "/" + sha1_hex(opt_.url).substr(0, 16) + "-" + file;
      keep_source_ = true;
    } else {
      source_file_ = work_.path() + "/" + file;
    }
    log("Downloading " + opt_.url);
    progress("downloading");
    Progress bar("Downloading image", io_.tty, io_.progress ? io_.progress : stderr);
    auto d = http_->download(
        opt_.url, source_file_,
        [&](std::uint64_t done, std::uint64_t total) {
          if (io_.progress) bar.update(done, total);
          progress("downloading", done, total);
        },
        /*resume=*/keep_source_);
    if (io_.progress) bar.finish();
    TUSK_TRY(d);
    log("Downloaded " + std::to_string(d->bytes) + " bytes" +
        (d->resumed_at > 0 ? " (resumed at byte " + std::to_string(d->resumed_at) + ")" : ""));
    return Step::kInspect;
  }

  Result<Step> inspect() {
    if (opt_.expect_size || !opt_.expect_sha512.empty()) {
      progress("checking");
      if (auto c = check_source(source_file_, opt_.expect_size, opt_.expect_sha512); !c) {
        if (keep_source_) {
          std::error_code ec;
          fs::remove(source_file_, ec);  // a bad download must not be resumed
        }
        return fail(c.error().code,
                    source_ + ": " + c.error().message + "; nothing was registered");
      }
      log("Checked " + source_ + ":" +
          (opt_.expect_size ? " " + std::to_string(*opt_.expect_size) + " bytes" : "") +
          (opt_.expect_sha512.empty() ? "" : " SHA-512 matches"));
    }
    SourceKind kind = opt_.kind;
    if (kind == SourceKind::kAuto) {
      auto k = kind_of_file(source_file_);
      TUSK_TRY(k);
      kind = *k;
    }
    name_ = opt_.name.empty() ? install_name(source_) : opt_.name;
    if (kind == SourceKind::kTarball) {
      tarball_ = source_file_;
      return Step::kUnpack;
    }
    return Step::kDisk;
  }

  // A single disk image: raw as it is, anything else converted; bundled as the machine image
  // with the kernel and ramdisk given (or none).
  Result<Step> disk() {
    arch_ = opt_.architecture.empty() ? "x86_64" : opt_.architecture;
    description_ = opt_.description;
    progress("converting");
    auto format = disk_format(opt_.qemu_img, source_file_);
    TUSK_TRY(format);
    if (!opt_.expect_format.empty() && opt_.expect_format != *format) {
      return fail(Errc::kFormat, source_ + " is a " + *format + " image, the list says " +
                                     opt_.expect_format + "; nothing was registered");
    }
    std::string raw = source_file_;
    if (*format != "raw") {
      raw = work_.path() + "/" + name_ + ".img";
      log("Converting the " + *format + " image to raw");
      TUSK_TRY(convert_to_raw(opt_.qemu_img, source_file_, *format, raw, std::chrono::hours(2)));
    }
    std::error_code ec;
    const auto size = fs::file_size(raw, ec);
    if (ec) {
      return fail(Errc::kIo, "stat " + raw + ": " + ec.message());
    }
    sel_ = Selection{};
    sel_.image = Member{basename_of(raw), raw, size};
    kernel_id_ = opt_.kernel_id;
    ramdisk_id_ = opt_.ramdisk_id;
    if (kernel_id_.empty()) {
      log("note: no kernel given: the machine image is registered without one");
    }
    TUSK_TRY(load_keys());
    return Step::kKernel;
  }

  Result<Step> unpack() {
    const std::string tarball = !tarball_.empty() ? tarball_ : opt_.tarball;
    if (name_.empty()) {
      name_ = install_name(opt_.tarball.empty() ? image_url_ : opt_.tarball);
    }
    arch_ = opt_.architecture.empty() ? entry_.architecture : opt_.architecture;
    if (arch_.empty()) {
      return fail(Errc::kUsage, "the catalog gives no architecture for this image: use -a ARCH");
    }
    description_ = opt_.description.empty() ? entry_.description : opt_.description;
    log("Unbundling image");
    const std::string dest = work_.path() + "/unpacked";
    Progress bar("Extracting image", io_.tty, io_.progress ? io_.progress : stderr);
    auto members = extract_tarball(tarball, dest, [&](std::uint64_t done, std::uint64_t total) {
      if (io_.progress) bar.update(done, total);
    });
    if (io_.progress) bar.finish();
    TUSK_TRY(members);
    if (!tarball_.empty() && !keep_source_ && tarball_ != opt_.disk_image) {
      std::error_code ec;
      fs::remove(tarball_, ec);  // the parts need the room more
    }
    SelectOptions so;
    so.hypervisor = opt_.hypervisor;
    if (!opt_.image_name.empty() && is_single_kernel(entry_)) {
      if (!opt_.hypervisor.empty() && opt_.hypervisor != "universal") {
        log("note: the catalog marks this image single-kernel; ignoring --hypervisor " +
            opt_.hypervisor);
      }
      so.hypervisor = "universal";
    }
    kernel_id_ = !opt_.kernel_id.empty() ? opt_.kernel_id : rec_.eki;
    ramdisk_id_ = !opt_.ramdisk_id.empty() ? opt_.ramdisk_id : rec_.eri;
    so.want_kernel = kernel_id_.empty();
    so.want_ramdisk = ramdisk_id_.empty();
    auto sel = select_members(*members, so);
    TUSK_TRY(sel);
    for (const auto& n : sel->notes) {
      log("note: " + n);
    }
    sel_ = std::move(*sel);
    TUSK_TRY(load_keys());
    return Step::kKernel;
  }

  Result<void> load_keys() {
    auto cloud = Key::from_certificate_file(opt_.creds.cloud_cert);
    TUSK_TRY(cloud);
    cloud_cert_.emplace(std::move(*cloud));
    if (!opt_.creds.cert.empty()) {
      auto c = Key::from_certificate_file(opt_.creds.cert);
      TUSK_TRY(c);
      user_cert_.emplace(std::move(*c));
    } else {
      log("warning: no user certificate (EC2_CERT): the bundles cannot be unbundled by you later");
    }
    if (!opt_.creds.private_key.empty()) {
      auto k = Key::from_private_key_file(opt_.creds.private_key);
      TUSK_TRY(k);
      private_key_.emplace(std::move(*k));
    } else {
      log("warning: no private key (EC2_PRIVATE_KEY): manifests are UNSIGNED");
    }
    return {};
  }

  // Bundle, upload and register one image; records progress in the registry as it goes.
  Result<Step> artefact(ImageType type) {
    const Member* member = nullptr;
    std::string* id = nullptr;
    std::string suffix;
    Step next = Step::kCommit;
    switch (type) {
      case ImageType::kKernel:
        member = sel_.kernel ? &*sel_.kernel : nullptr;
        id = &kernel_id_;
        suffix = "-kernel";
        next = Step::kRamdisk;
        break;
      case ImageType::kRamdisk:
        member = sel_.ramdisk ? &*sel_.ramdisk : nullptr;
        id = &ramdisk_id_;
        suffix = "-ramdisk";
        next = Step::kMachine;
        break;
      case ImageType::kMachine:
        member = &sel_.image;
        id = &machine_id_;
        next = Step::kCommit;
        break;
    }
    const char* what = image_type_name(type);
    if (!id->empty()) {
      log(std::string("Using ") + what + " " + *id);
      return next;
    }
    if (member == nullptr) {
      return next;  // no ramdisk in this tarball (noted at unpack)
    }
    std::string prefix = name_ + suffix;
    auto existing = find_registered(type, *member, prefix);
    TUSK_TRY(existing);
    if (!existing->empty()) {
      *id = *existing;
      TUSK_TRY(record_id(type, *id));
      return next;
    }
    log(std::string("Bundling ") + what + ": " + member->path);
    const std::string dir = work_.path() + "/bundle-" + what;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) {
      return fail(Errc::kIo, "create " + dir + ": " + ec.message());
    }
    BundleOptions bo;
    bo.image_path = member->file;
    bo.prefix = prefix;
    bo.dest_dir = dir;
    bo.type = type;
    bo.architecture = arch_;
    if (type == ImageType::kMachine) {
      bo.kernel_id = kernel_id_;
      bo.ramdisk_id = ramdisk_id_;
    }
    bo.user = opt_.creds.user_id;
    bo.cloud_cert = &*cloud_cert_;
    bo.user_cert = user_cert_ ? &*user_cert_ : nullptr;
    bo.private_key = private_key_ ? &*private_key_ : nullptr;
    Progress bar(std::string("Bundling ") + what, io_.tty, io_.progress ? io_.progress : stderr);
    if (io_.progress) {
      bo.progress = [&](std::uint64_t done, std::uint64_t total) { bar.update(done, total); };
    }
    auto bundle = bundle_image(bo);
    if (io_.progress) bar.finish();
    TUSK_TRY(bundle);
    log("Generating manifest " + bundle->manifest_path);
    if (member->file.rfind(work_.path() + "/", 0) == 0) {
      fs::remove(member->file, ec);  // bundled: the disk space is needed more elsewhere
    }

    // Keys are recorded before the first byte is uploaded: a crash after this point is cleaned.
    rec_.pending_keys = bundle_keys(*bundle);
    TUSK_TRY(registry_->put(key_, rec_));
    if (!bucket_checked_) {
      TUSK_TRY(ensure_bucket(s3_, [&](const std::string& l) { log(l); }));
      bucket_checked_ = true;
    }
    auto location = upload_bundle(s3_, *bundle, [&](const std::string& l) { log(l); });
    TUSK_TRY(location);
    fs::remove_all(dir, ec);

    RegisterParams rp;
    rp.image_location = *location;
    rp.name = prefix;
    rp.description = description_;
    rp.architecture = arch_;
    if (type == ImageType::kMachine) {
      rp.kernel_id = kernel_id_;
      rp.ramdisk_id = ramdisk_id_;
    }
    auto registered = register_image(*http_, ec2_, rp);
    if (!registered &&
        registered.error().message.find(" InvalidAMIName.Duplicate") != std::string::npos) {
      // Someone took the Name since we listed the images: keep the upload, pad the Name.
      rp.name = padded(prefix);
      log("The name " + prefix + " is taken: registering as " + rp.name);
      registered = register_image(*http_, ec2_, rp);
    }
    TUSK_TRY(registered);
    *id = *registered;
    log(std::string("Registered ") + what + " image " + *id);
    TUSK_TRY(record_id(type, *id));
    return next;
  }

  // Records a registered (or reused) id: a resumed install never registers it again.
  Result<void> record_id(ImageType type, const std::string& id) {
    switch (type) {
      case ImageType::kKernel:
        rec_.eki = id;
        break;
      case ImageType::kRamdisk:
        rec_.eri = id;
        break;
      case ImageType::kMachine:
        rec_.emi = id;
        break;
    }
    rec_.pending_keys.clear();
    return registry_->put(key_, rec_);
  }

  // "eustore-<stem>…" → "eustore-<8 hex>-<stem>…", one random pad per install (euca2ools 3
  // --pad-name).
  std::string padded(const std::string& prefix) {
    if (pad_.empty()) {
      auto bytes = random_bytes(4);
      pad_ = bytes ? to_hex(*bytes) : std::to_string(::getpid());
    }
    const std::string stem = "eustore-";
    if (prefix.rfind(stem, 0) == 0) {
      return stem + pad_ + "-" + prefix.substr(stem.size());
    }
    return pad_ + "-" + prefix;
  }

  // EUSTORE.md §8.16: an image of this account registered from our manifest location is
  // reused when its manifest says it holds the same bytes; when the location or the Name is
  // taken otherwise, `prefix` becomes a padded one (nothing registered is ever overwritten).
  // Returns the reused id, or "" to bundle. Listing failures only disable the search.
  Result<std::string> find_registered(ImageType type, const Member& member, std::string& prefix) {
    const char* what = image_type_name(type);
    if (!own_listed_) {
      own_listed_ = true;
      auto h = http();
      TUSK_TRY(h);
      auto list = describe_images(**h, ec2_, {});
      if (!list) {
        log("warning: cannot list this account's images (" + list.error().message +
            "): not looking for earlier registrations");
      } else {
        own_ = std::move(*list);
      }
    }
    auto strip = [](std::string_view l) {
      const auto p = l.find_first_not_of('/');
      return p == std::string_view::npos ? std::string_view() : l.substr(p);
    };
    const std::string location = s3_.bucket + "/" + prefix + ".manifest.xml";
    const ImageInfo* at = nullptr;
    const ImageInfo* named = nullptr;
    for (const auto& i : own_) {
      if (i.state == "deregistered" || i.location.empty()) {
        continue;
      }
      if (strip(i.location) == location) {
        at = &i;
      }
      if (i.name == prefix) {
        named = &i;
      }
    }
    if (at == nullptr && named == nullptr) {
      return std::string();
    }
    std::string why;
    if (at != nullptr && is_usable_state(at->state)) {
      auto same = same_content(type, member, prefix);
      TUSK_TRY(same);
      if (same->empty()) {
        log(std::string("Found ") + what + " image " + at->id + " registered from " + location +
            " with the same content: reusing it");
        return at->id;
      }
      why = *same;
    } else if (at != nullptr) {
      why = "it is in state '" + at->state + "'";
    }
    const ImageInfo* taker = at != nullptr ? at : named;
    prefix = padded(prefix);
    log(std::string(at != nullptr ? "The manifest location " + location
                                  : "The name " + taker->name) +
        " is taken by " + taker->id + (why.empty() ? "" : " (" + why + ")") +
        ": registering this " + what + " as " + prefix);
    return std::string();
  }

  // "" when the manifest at <bucket>/<prefix>.manifest.xml describes exactly the bundle we would
  // make of `member` (tar digest, size, and the kernel/ramdisk it boots with); else the reason.
  Result<std::string> same_content(ImageType type, const Member& member,
                                   const std::string& prefix) {
    auto text = get_object(s3_, prefix + ".manifest.xml");
    if (!text) {
      return "its manifest cannot be read: " + text.error().message;
    }
    if (!*text) {
      return std::string("its manifest is gone");
    }
    auto parsed = parse_manifest(**text);
    if (!parsed) {
      return "its manifest is not valid: " + parsed.error().message;
    }
    const Manifest& m = parsed->manifest;
    auto ours = tar_digest(member.file, prefix);
    TUSK_TRY(ours);
    if (m.digest_sha1 != ours->sha1 || m.size != ours->size) {
      return std::string("other content");
    }
    const bool boots_same = type == ImageType::kKernel ? m.kernel_id == "true"
                            : type == ImageType::kRamdisk
                                ? m.ramdisk_id == "true"
                                : m.kernel_id == kernel_id_ && m.ramdisk_id == ramdisk_id_;
    if (!boots_same) {
      return std::string("another kernel or ramdisk");
    }
    return std::string();
  }

  Result<Step> commit() {
    rec_.state = InstallState::kDone;
    rec_.work_dir.clear();
    rec_.finished = std::time(nullptr);
    rec_.eki = kernel_id_;
    rec_.eri = ramdisk_id_;
    rec_.emi = machine_id_;
    TUSK_TRY(registry_->put(key_, rec_));
    result_.eki = kernel_id_;
    result_.eri = ramdisk_id_;
    result_.emi = machine_id_;
    return Step::kDone;
  }

  // After a failed step: delete what this attempt uploaded for unregistered images and mark the
  // record failed (registered ids are kept for the next attempt). Best effort.
  void abandon() {
    if (!claimed_ || !registry_) {
      return;
    }
    if (!rec_.pending_keys.empty()) {
      if (auto d = delete_objects(s3_, rec_.pending_keys); d) {
        rec_.pending_keys.clear();
      } else {
        log("warning: cleanup failed: " + d.error().message + " (the next attempt retries it)");
      }
    }
    rec_.state = InstallState::kFailed;
    rec_.work_dir.clear();  // the WorkDir removes it on the way out
    rec_.finished = std::time(nullptr);
    if (auto p = registry_->put(key_, rec_); !p) {
      log("warning: " + p.error().message);
    }
  }

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

}  // namespace

std::string install_name(std::string_view url_or_path) {
  std::string base = basename_of(url_or_path);
  if (auto dot = base.rfind('.'); dot != std::string::npos && dot > 0) {
    base.resize(dot);
  }
  // '.' -> '_' as euca2ools 3.0 does; anything else outside [A-Za-z0-9_-] too, because object
  // keys must stay in the set every S3 implementation signs alike (EUSTORE.md §8.11).
  for (char& c : base) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_') {
      c = '_';
    }
  }
  return "eustore-" + base;
}

S3Target s3_target_of(const InstallOptions& opt) {
  S3Target t;
  t.upstream.name = "s3";
  t.upstream.endpoint = opt.creds.s3_url;
  while (!t.upstream.endpoint.empty() && t.upstream.endpoint.back() == '/') {
    t.upstream.endpoint.pop_back();
  }
  t.upstream.signature = opt.s3_signature;
  t.upstream.region = opt.s3_region;
  t.upstream.access_key = opt.creds.access_key;
  t.upstream.secret_key = opt.creds.secret_key;
  t.upstream.retries = 1;
  t.upstream.stall_timeout = std::chrono::milliseconds(120000);
  t.bucket = opt.bucket;
  t.acl = opt.acl;
  return t;
}

Ec2Endpoint ec2_endpoint_of(const InstallOptions& opt) {
  Ec2Endpoint ep;
  ep.url = opt.creds.ec2_url;
  ep.access_key = opt.creds.access_key;
  ep.secret_key = opt.creds.secret_key;
  ep.signature = opt.ec2_signature;
  ep.region = opt.ec2_region;
  return ep;
}

std::string site_guid(const InstallOptions& opt) {
  return opt.guid.empty() ? opt.creds.user_id + "@" + opt.creds.ec2_url : opt.guid;
}

Result<InstallResult> install_image(const InstallOptions& opt, const InstallIo& io) {
  return Installer(opt, io).run();
}

}  // namespace installer
