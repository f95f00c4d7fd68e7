// The install steps that put the image on the cloud: bundle, upload and register each of kernel,
// ramdisk and machine image, recording progress so a crash is cleaned up and a resume never
// registers twice; and the reuse of an image this account registered from the same bundle.
#include "installer/install_steps.h"

namespace installer::install_detail {

// Bundle, upload and register one image; records progress in the registry as it goes.
Result<Step> Installer::artefact(ImageType type) {
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
Result<void> Installer::record_id(ImageType type, const std::string& id) {
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
std::string Installer::padded(const std::string& prefix) {
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
Result<std::string> Installer::find_registered(ImageType type, const Member& member,
                                               std::string& prefix) {
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
  log(std::string(at != nullptr ? "The manifest location " + location : "The name " + taker->name) +
      " is taken by " + taker->id + (why.empty() ? "" : " (" + why + ")") + ": registering this " +
      what + " as " + prefix);
  return std::string();
}

// "" when the manifest at <bucket>/<prefix>.manifest.xml describes exactly the bundle we would
// make of `member` (tar digest, size, and the kernel/ramdisk it boots with); else the reason.
Result<std::string> Installer::same_content(ImageType type, const Member& member,
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

}  // namespace installer::install_detail
