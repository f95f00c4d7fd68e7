// The install-image state machine. Each step does its I/O and says which step comes next; the
// driver loop runs them and, on failure, cleans up what the failed attempt uploaded. Tricky:
// object keys are written to the registry record BEFORE their upload starts, so a crash at any
// point leaves enough to clean up; registered ids are written right after registration, so a
// resumed install never registers the same kernel twice.
#include "installer/install.h"

#include "installer/install_steps.h"

namespace installer {
namespace install_detail {

void remove_install_work_dir(const std::string& dir, const LogFn& log) {
  if (dir.empty() || fs::path(dir).filename().string().rfind("tusk-install-", 0) != 0) {
    return;
  }
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    return;
  }
  const auto removed = fs::remove_all(dir, ec);
  if (!log) {
    return;
  }
  if (ec) {
    log("warning: could not remove the interrupted install's work folder " + dir + ": " +
        ec.message());
  } else {
    log("Removed the interrupted install's work folder " + dir + " (" + std::to_string(removed) +
        " files)");
  }
}

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

Result<Step> Installer::dispatch(Step s) {
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

Result<void> Installer::validate() {
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
Result<Step> Installer::lookup() {
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
  auto reg = use_registry(opt_.registry, opt_.registry_dir, own_registry_);
  TUSK_TRY(reg);
  registry_ = *reg;
  auto rec = registry_->get(key_);
  TUSK_TRY(rec);
  if (*rec && (*rec)->state == InstallState::kDone && content_matches(**rec) &&
      still_usable(**rec)) {
    return answer_from(**rec);
  }
  return Step::kLock;
}

Result<Http*> Installer::http() {
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
std::vector<std::string> Installer::unusable(const std::vector<std::string>& ids) {
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
    log("warning: cannot check the recorded images with DescribeImages (" + images.error().message +
        "); trusting the registry");
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
bool Installer::still_usable(const InstallRecord& r) {
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

Step Installer::answer_from(const InstallRecord& r) {
  log("Image " + image_ + " is already installed on " + guid_ + " (registry " + registry_->dir() +
      "): nothing to download");
  result_.eki = r.eki;
  result_.eri = r.eri;
  result_.emi = r.emi;
  result_.from_registry = true;
  return Step::kDone;
}

Result<Step> Installer::lock() {
  auto l = registry_->lock(key_, [&] {
    auto rec = registry_->get(key_);
    std::string who = rec && *rec ? " (pid " + std::to_string((*rec)->pid) + ")" : "";
    log("Waiting for another install of image " + image_ + who + " to finish");
  });
  TUSK_TRY(l);
  lock_ = std::move(*l);
  return Step::kResume;
}

std::string Installer::history_key(const InstallRecord& old) const {
  return key_ + "#" + sha1_hex(old.content).substr(0, 12);
}

Result<Step> Installer::resume() {
  auto rec = registry_->get(key_);
  TUSK_TRY(rec);
  if (*rec) {
    InstallRecord& old = **rec;
    // Other content than the record's (a changed image-list entry, a failed attempt at other
    // content): nothing of the old attempt is reused.
    const bool changed = !content_matches(old);
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
      log("Installing image " + image_ + " again: its content changed; what the earlier " +
          "install registered stays, recorded as " + history_key(old));
    } else if (old.state == InstallState::kDone) {
      log("Installing image " + image_ + " again: a recorded image is no longer usable");
    } else {
      log(std::string("Cleaning up an interrupted install of ") + image_ + " (" +
          install_state_name(old.state) + ", pid " + std::to_string(old.pid) + ")");
    }
    remove_install_work_dir(old.work_dir, io_.log);
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
      // What the old content registered keeps a record of its own, so `tusk images` shows it
      // and `tusk images remove` can still deregister it.
      if (!old.eki.empty() || !old.eri.empty() || !old.emi.empty()) {
        InstallRecord kept = old;
        kept.pending_keys.clear();  // deleted above
        kept.work_dir.clear();
        if (kept.state == InstallState::kInProgress) kept.state = InstallState::kFailed;
        TUSK_TRY(registry_->put(history_key(old), kept));
      }
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

Result<Step> Installer::commit() {
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
void Installer::abandon() {
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

}  // namespace install_detail

std::string install_name(std::string_view url_or_path) {
  std::string base = install_detail::basename_of(url_or_path);
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

Result<bool> clean_interrupted(const InstallOptions& opt, const std::string& key,
                               const LogFn& log) {
  std::optional<Registry> own;
  auto opened = use_registry(opt.registry, opt.registry_dir, own);
  if (!opened) return conf::unexpected(opened.error());
  Registry* reg = *opened;
  auto lock = reg->try_lock(key);
  if (!lock) return conf::unexpected(lock.error());
  if (!*lock) return false;  // an install holds it: alive
  auto rec = reg->get(key);
  if (!rec) return conf::unexpected(rec.error());
  if (!*rec || (*rec)->state != InstallState::kInProgress ||
      process_alive((*rec)->pid, (*rec)->pid_start)) {
    return false;
  }
  InstallRecord r = std::move(**rec);
  install_detail::remove_install_work_dir(r.work_dir, log);
  if (!r.pending_keys.empty()) {
    S3Target t = s3_target_of(opt);
    t.bucket = r.bucket.empty() ? opt.bucket : r.bucket;
    if (auto d = delete_objects(t, r.pending_keys); !d) {
      return conf::unexpected(d.error());  // the record stays as it was: cleaned next time
    }
    if (log) {
      log("Deleted " + std::to_string(r.pending_keys.size()) + " leftover objects from " +
          t.bucket);
    }
  }
  r.state = InstallState::kFailed;
  r.pending_keys.clear();
  r.work_dir.clear();
  r.finished = std::time(nullptr);
  if (auto p = reg->put(key, r); !p) return conf::unexpected(p.error());
  return true;
}

Result<InstallResult> install_image(const InstallOptions& opt, const InstallIo& io) {
  return install_detail::Installer(opt, io).run();
}

}  // namespace installer
