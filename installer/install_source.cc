// The install steps that get the image onto disk: the catalog entry and its download through
// the cache (-i), an image URL (resumed into the download folder), a local or downloaded file's
// checks (size, SHA-512, tarball or disk image), a disk image to raw, and unpacking a tarball.
#include "installer/install_steps.h"

namespace installer::install_detail {

Result<Step> Installer::catalog() {
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

Result<Step> Installer::download() {
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
Result<Step> Installer::fetch() {
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
      /*resume=*/keep_source_, opt_.expect_size ? *opt_.expect_size : opt_.max_download);
  if (io_.progress) bar.finish();
  TUSK_TRY(d);
  log("Downloaded " + std::to_string(d->bytes) + " bytes" +
      (d->resumed_at > 0 ? " (resumed at byte " + std::to_string(d->resumed_at) + ")" : ""));
  return Step::kInspect;
}

Result<Step> Installer::inspect() {
  if (opt_.expect_size || !opt_.expect_sha512.empty()) {
    progress("checking");
    if (auto c = check_source(source_file_, opt_.expect_size, opt_.expect_sha512); !c) {
      if (keep_source_) {
        std::error_code ec;
        fs::remove(source_file_, ec);  // a bad download must not be resumed
      }
      return fail(c.error().code, source_ + ": " + c.error().message + "; nothing was registered");
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
Result<Step> Installer::disk() {
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
  kernel_id_ = !opt_.kernel_id.empty() ? opt_.kernel_id : opt_.disk_kernel_id;
  ramdisk_id_ = !opt_.ramdisk_id.empty() ? opt_.ramdisk_id : opt_.disk_ramdisk_id;
  if (kernel_id_.empty()) {
    log("note: no kernel given: the machine image is registered without one");
  }
  TUSK_TRY(load_keys());
  return Step::kKernel;
}

Result<Step> Installer::unpack() {
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

Result<void> Installer::load_keys() {
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

}  // namespace installer::install_detail
