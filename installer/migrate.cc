// The migrate-image walk: validate → manifest → key → registry → kernel → parts → unbundle →
// install, one function per step and a driver loop that prefixes a failure with its step. The
// pure parts (manifest location, record key, limits, kernel choice) come first. Tricky: parts
// are GETs into memory bounded by kMaxSourcePartBytes (one part at a time), written only after
// their SHA-1 matched; the owner's key is tried on the manifest's encrypted key before any part
// is downloaded, so a wrong key costs one small GET.
#include "installer/migrate.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <vector>

#include "installer/bundle.h"
#include "installer/crypto.h"
#include "installer/http.h"
#include "installer/progress.h"
#include "installer/registry.h"
#include "installer/source.h"
#include "installer/work_dir.h"
#include "s3/client.h"
#include "s3/printable.h"

namespace installer {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kManifestSuffix = ".manifest.xml";

bool name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

bool is_true(std::string_view v) { return v == "true" || v == "yes"; }

}  // namespace

Result<ManifestLocation> parse_manifest_location(std::string_view text) {
  const std::string shown(text);
  if (!text.empty() && text.front() == '/') {
    text.remove_prefix(1);
  }
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) {
    return fail(Errc::kUsage, "--manifest '" + shown + "': expected BUCKET/PREFIX.manifest.xml");
  }
  ManifestLocation loc;
  loc.bucket = std::string(text.substr(0, slash));
  loc.key = std::string(text.substr(slash + 1));
  for (char c : loc.bucket) {
    if (!name_char(c)) {
      return fail(Errc::kUsage, "--manifest '" + shown +
                                    "': the bucket may hold letters, digits, '.', '-', '_' only");
    }
  }
  if (loc.bucket.empty()) {
    return fail(Errc::kUsage, "--manifest '" + shown + "': the bucket name is empty");
  }
  if (loc.key.size() <= kManifestSuffix.size() ||
      loc.key.compare(loc.key.size() - kManifestSuffix.size(), kManifestSuffix.size(),
                      kManifestSuffix) != 0) {
    return fail(Errc::kUsage, "--manifest '" + shown + "': the key must be PREFIX.manifest.xml");
  }
  loc.prefix = loc.key.substr(0, loc.key.size() - kManifestSuffix.size());
  std::string_view rest = loc.prefix;
  while (true) {
    const auto end = rest.find('/');
    const std::string_view seg = rest.substr(0, end);
    if (seg.empty() || seg == "." || seg == "..") {
      return fail(Errc::kUsage, "--manifest '" + shown + "': empty, '.' or '..' path segment");
    }
    for (char c : seg) {
      if (!name_char(c)) {
        return fail(Errc::kUsage, "--manifest '" + shown +
                                      "': keys may hold letters, digits, '.', '-', '_', '/' only");
      }
    }
    if (end == std::string_view::npos) {
      loc.name = std::string(seg);
      break;
    }
    rest.remove_prefix(end + 1);
  }
  loc.key_dir = loc.prefix.substr(0, loc.prefix.size() - loc.name.size());
  return loc;
}

std::string migrate_record_key(std::string_view source_endpoint, const ManifestLocation& loc,
                               std::string_view guid) {
  while (!source_endpoint.empty() && source_endpoint.back() == '/') {
    source_endpoint.remove_suffix(1);
  }
  return "migrate:" + std::string(source_endpoint) + "/" + loc.bucket + "/" + loc.prefix + "@" +
         std::string(guid);
}

Result<void> check_source_manifest(const Manifest& m) {
  if (m.type != ImageType::kMachine || is_true(m.kernel_id) || is_true(m.ramdisk_id)) {
    const bool kernel = m.type == ImageType::kKernel || is_true(m.kernel_id);
    return fail(Errc::kUsage, std::string("the bundle is a ") + (kernel ? "kernel" : "ramdisk") +
                                  " image; migrate-image migrates machine images (install a "
                                  "kernel or ramdisk with install-image, then pass --kernel / "
                                  "--ramdisk)");
  }
  if (m.parts.empty()) {
    return fail(Errc::kFormat, "the manifest lists no parts");
  }
  if (m.parts.size() > kMaxSourceParts) {
    return fail(Errc::kFormat, "the manifest lists " + std::to_string(m.parts.size()) +
                                   " parts, more than the " + std::to_string(kMaxSourceParts) +
                                   " accepted");
  }
  if (m.bundled_size > kMaxSourcePartBytes * m.parts.size()) {  // no overflow: parts <= 1e5
    return fail(Errc::kFormat, "bundled_size " + std::to_string(m.bundled_size) + " over " +
                                   std::to_string(m.parts.size()) + " parts: parts over " +
                                   std::to_string(kMaxSourcePartBytes) + " bytes are refused");
  }
  std::set<std::string_view> names;
  for (const auto& p : m.parts) {
    if (!names.insert(p.filename).second) {
      return fail(Errc::kFormat, "part file name " + p.filename + " is listed twice");
    }
  }
  return {};
}

BootImageChoice choose_boot_image(ImageType kind, std::string_view given,
                                  std::string_view from_manifest, const ImageInfo* here) {
  const std::string what = kind == ImageType::kRamdisk ? "ramdisk" : "kernel";
  const std::string flag = "--" + what;
  if (!given.empty()) {
    return {std::string(given), what + " " + std::string(given) + " (" + flag + ")"};
  }
  if (from_manifest.empty()) {
    return {};
  }
  const std::string id(from_manifest);
  const std::string without = ": registering without a " + what + " (give " + flag + ")";
  if (!is_image_id(id)) {
    return {{},
            "the source manifest's " + what + " '" + s3::printable(id, 64) +
                "' is not an image id" + without};
  }
  if (here == nullptr) {
    return {{}, "the source manifest's " + what + " " + id + " does not exist here" + without};
  }
  if (!here->type.empty() && here->type != what) {
    return {{},
            "the source manifest's " + what + " " + id + " is a " + here->type + " image here" +
                without};
  }
  if (!is_usable_state(here->state)) {
    return {{},
            "the source manifest's " + what + " " + id + " is " + here->state + " here" + without};
  }
  return {id, what + " " + id + " (from the source manifest; registered here)"};
}

namespace {

enum class Step { kManifest, kKey, kRegistry, kKernel, kParts, kUnbundle, kInstall, kDone };

const char* step_name(Step s) {
  static constexpr const char* kNames[] = {"manifest", "key",      "registry", "kernel",
                                           "parts",    "unbundle", "install",  "done"};
  return kNames[static_cast<int>(s)];
}

Result<void> write_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    return fail(Errc::kIo, "cannot write " + path);
  }
  return {};
}

class Migrator {
 public:
  Migrator(const MigrateOptions& opt, const InstallIo& io) : opt_(opt), io_(io) {}

  Result<InstallResult> run() {
    if (auto v = validate(); !v) {
      return conf::unexpected(v.error());
    }
    Step step = Step::kManifest;
    while (step != Step::kDone) {
      Result<Step> next = dispatch(step);
      if (!next) {
        Error e = std::move(next).error();
        e.message = std::string(step_name(step)) + ": " + e.message;
        return conf::unexpected(std::move(e));
      }
      step = *next;
    }
    return result_;
  }

 private:
  Result<Step> dispatch(Step s) {
    switch (s) {
      case Step::kManifest:
        return manifest();
      case Step::kKey:
        return key();
      case Step::kRegistry:
        return registry();
      case Step::kKernel:
        return kernel();
      case Step::kParts:
        return parts();
      case Step::kUnbundle:
        return unbundle_parts();
      case Step::kInstall:
        return install();
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

  // Everything that can be refused without the network, so that a typo costs nothing.
  Result<void> validate() {
    auto loc = parse_manifest_location(opt_.manifest);
    if (!loc) {
      return conf::unexpected(loc.error());
    }
    loc_ = std::move(*loc);
    const InstallOptions& in = opt_.install;
    const CloudCredentials& c = in.creds;
    if (opt_.source.endpoint.empty()) {
      return fail(Errc::kUsage, "no source endpoint: give --source-url (or S3_URL)");
    }
    if (opt_.source.signature != conf::Signature::kNone &&
        (opt_.source.access_key.empty() || opt_.source.secret_key.empty())) {
      return fail(Errc::kUsage,
                  "no source credentials: give --source-access-key-id and "
                  "--source-secret-key (or the cloud's EC2_ACCESS_KEY/SECRET_KEY)");
    }
    if (in.bucket.empty()) {
      return fail(Errc::kUsage, "-b BUCKET is required");
    }
    if (c.ec2_url.empty() || c.access_key.empty() || c.secret_key.empty() || c.user_id.empty() ||
        c.cloud_cert.empty() || c.s3_url.empty()) {
      return fail(Errc::kUsage,
                  "the cloud's EC2_URL, S3_URL, EC2_ACCESS_KEY, EC2_SECRET_KEY, EC2_USER_ID and "
                  "EUCALYPTUS_CERT are all needed (environment, --eucarc or flags)");
    }
    for (const auto& [id, flag] :
         {std::pair{&in.kernel_id, "--kernel"}, std::pair{&in.ramdisk_id, "--ramdisk"}}) {
      if (!id->empty() && !is_image_id(*id)) {
        return fail(Errc::kUsage, std::string(flag) + ": '" + *id + "' is not an image id");
      }
    }
    if (opt_.source_key.empty()) {
      return fail(Errc::kUsage, "--source-key: the bundle owner's private key is required");
    }
    auto k = Key::from_private_key_file(opt_.source_key);
    if (!k) {
      return conf::unexpected(k.error());
    }
    owner_key_.emplace(std::move(*k));
    if (!opt_.source_cert.empty()) {
      auto cert = Key::from_certificate_file(opt_.source_cert);
      if (!cert) {
        return conf::unexpected(cert.error());
      }
      owner_cert_.emplace(std::move(*cert));
    }
    guid_ = site_guid(in);
    key_ = migrate_record_key(opt_.source.endpoint, loc_, guid_);
    ec2_ = ec2_endpoint_of(in);
    auto h = Http::create(10, 60);
    if (!h) {
      return conf::unexpected(h.error());
    }
    http_.emplace(std::move(*h));
    return {};
  }

  // One signed GET of a source object into memory, at most `max` bytes; nullopt for a 404.
  Result<std::optional<std::string>> get_source(const std::string& key, std::size_t max) {
    s3::Request req;
    req.method = s3::Method::kGet;
    req.bucket = loc_.bucket;
    req.key = key;
    const s3::SignedRequest s = s3::sign_request(opt_.source, req, std::time(nullptr));
    const std::string what = "GET " + loc_.bucket + "/" + key;
    auto r = http_->request("GET", s.url, s.headers, {}, max);
    if (!r) {
      return fail(r.error().code, what + ": " + r.error().message);
    }
    if (r->status == 200) {
      return std::optional<std::string>(std::move(r->body));
    }
    const s3::XmlError x = s3::parse_error_xml(r->body);
    if (r->status == 404 && x.code != "NoSuchBucket") {
      return std::optional<std::string>();
    }
    std::string msg = what + ": HTTP " + std::to_string(r->status);
    if (!x.code.empty()) {
      msg += " " + s3::printable(x.code, 64);
    }
    if (!x.message.empty()) {
      msg += " (" + s3::printable(x.message) + ")";
    }
    if (r->status == 403) {
      msg += "; check --source-access-key-id/--source-secret-key and --source-signature";
    }
    return fail(Errc::kRemote, msg);
  }

  // --- steps --------------------------------------------------------------------------------

  Result<Step> manifest() {
    log("Fetching manifest " + loc_.bucket + "/" + loc_.key + " from " + opt_.source.endpoint);
    auto body = get_source(loc_.key, kMaxSourceManifestBytes);
    if (!body) {
      return conf::unexpected(body.error());
    }
    if (!*body) {
      return fail(Errc::kIo,
                  loc_.bucket + "/" + loc_.key + " does not exist at " + opt_.source.endpoint);
    }
    manifest_xml_ = std::move(**body);
    auto parsed = parse_manifest(manifest_xml_);
    if (!parsed) {
      return fail(parsed.error().code, loc_.key + ": " + parsed.error().message);
    }
    manifest_ = std::move(parsed->manifest);
    if (auto ok = check_source_manifest(manifest_); !ok) {
      return fail(ok.error().code, loc_.key + ": " + ok.error().message);
    }
    return Step::kKey;
  }

  // The owner's key must open the bundle's AES key, checked before any part is downloaded.
  // unbundle() decides again which pair it opens; this only refuses a key that opens neither.
  Result<Step> key() {
    std::string why;
    for (const std::string* hex : {&manifest_.user_encrypted_key, &manifest_.ec2_encrypted_key}) {
      auto raw = from_hex(*hex);
      if (!raw || raw->empty()) {
        continue;
      }
      auto plain = owner_key_->decrypt_pkcs1(*raw);
      if (plain && plain->size() == 32 && from_hex(*plain)) {
        return Step::kRegistry;
      }
      why = plain ? "the decrypted key is not 32 hex characters" : plain.error().message;
    }
    return fail(Errc::kCrypto, opt_.source_key + " does not open the AES key of " + loc_.bucket +
                                   "/" + loc_.key + " (" + (why.empty() ? "no key" : why) +
                                   "): is it the bundle owner's private key?");
  }

  // A finished migration of this bundle (same image digest) whose images still exist answers
  // at once. Anything else goes on; install_image() then resumes or redoes what the record says.
  Result<Step> registry() {
    auto reg = Registry::open(opt_.install.registry_dir);
    if (!reg) {
      return conf::unexpected(reg.error());
    }
    registry_.emplace(std::move(*reg));
    auto rec = registry_->get(key_);
    if (!rec) {
      return conf::unexpected(rec.error());
    }
    if (!*rec || (*rec)->state != InstallState::kDone || (*rec)->emi.empty()) {
      return Step::kKernel;
    }
    const InstallRecord& r = **rec;
    if (r.content != manifest_.digest_sha1) {
      log("The bundle changed since it was migrated (image digest " + manifest_.digest_sha1 +
          ", recorded " + r.content + "): migrating it again");
      return Step::kKernel;
    }
    if (!opt_.install.trust_registry) {
      std::vector<std::string> ids;
      for (const auto* id : {&r.eki, &r.eri, &r.emi}) {
        if (!id->empty()) {
          ids.push_back(*id);
        }
      }
      auto seen = describe_images(*http_, ec2_, ids);
      if (!seen) {
        log("warning: cannot check the recorded images (" + seen.error().message +
            "): trusting the registry");
      } else {
        for (const auto& id : ids) {
          const ImageInfo* info = find(*seen, id);
          if (info == nullptr || !is_usable_state(info->state)) {
            log("Recorded image " + id + " is " + (info ? info->state : "unknown") +
                " here: migrating again");
            return Step::kKernel;
          }
        }
      }
    }
    result_.eki = r.eki;
    result_.eri = r.eri;
    result_.emi = r.emi;
    result_.from_registry = true;
    log("Already migrated (registry " + key_ + "): " + r.emi);
    return Step::kDone;
  }

  static const ImageInfo* find(const std::vector<ImageInfo>& images, std::string_view id) {
    for (const auto& i : images) {
      if (i.id == id) {
        return &i;
      }
    }
    return nullptr;
  }

  Result<Step> kernel() {
    const InstallOptions& in = opt_.install;
    std::vector<std::string> ask;
    if (in.kernel_id.empty() && is_image_id(manifest_.kernel_id)) {
      ask.push_back(manifest_.kernel_id);
    }
    if (in.ramdisk_id.empty() && is_image_id(manifest_.ramdisk_id)) {
      ask.push_back(manifest_.ramdisk_id);
    }
    std::vector<ImageInfo> here;
    if (!ask.empty()) {
      auto d = describe_images(*http_, ec2_, ask);
      if (!d) {
        return conf::unexpected(d.error());
      }
      here = std::move(*d);
    }
    const auto k = choose_boot_image(ImageType::kKernel, in.kernel_id, manifest_.kernel_id,
                                     find(here, manifest_.kernel_id));
    const auto r = choose_boot_image(ImageType::kRamdisk, in.ramdisk_id, manifest_.ramdisk_id,
                                     find(here, manifest_.ramdisk_id));
    for (const auto* c : {&k, &r}) {
      if (!c->note.empty()) {
        log(c->note);
      }
    }
    kernel_id_ = k.id;
    ramdisk_id_ = r.id;
    return Step::kParts;
  }

  Result<void> check_space() const {
    struct statvfs st {};
    if (::statvfs(work_.path().c_str(), &st) != 0) {
      return fail(Errc::kIo, "statvfs " + work_.path() + ": " + std::strerror(errno));
    }
    const auto free = static_cast<unsigned __int128>(st.f_bavail) * st.f_frsize;
    const auto need = static_cast<unsigned __int128>(manifest_.bundled_size) + manifest_.size;
    if (free < need) {
      return fail(Errc::kIo, "the parts and the image need " +
                                 human_bytes(manifest_.bundled_size + manifest_.size) + ", " +
                                 work_.path() + " has " +
                                 human_bytes(static_cast<std::uint64_t>(free)) + " free");
    }
    return {};
  }

  Result<Step> parts() {
    // A migration killed outright left its parts and image: their owner is gone, so they go.
    if (int swept = WorkDir::sweep_dead(opt_.install.work_dir, "tusk-migrate"); swept > 0) {
      log("Removed " + std::to_string(swept) + " work folder(s) of interrupted migrations");
    }
    if (auto w = work_.create(opt_.install.work_dir, opt_.install.keep_work_dir,
                              WorkDir::owned_stem("tusk-migrate"));
        !w) {
      return conf::unexpected(w.error());
    }
    if (auto s = check_space(); !s) {
      return conf::unexpected(s.error());
    }
    parts_dir_ = work_.path() + "/parts";
    std::error_code ec;
    fs::create_directory(parts_dir_, ec);
    if (ec) {
      return fail(Errc::kIo, "mkdir " + parts_dir_ + ": " + ec.message());
    }
    manifest_path_ = parts_dir_ + "/" + loc_.name + std::string(kManifestSuffix);
    if (auto w = write_file(manifest_path_, manifest_xml_); !w) {
      return conf::unexpected(w.error());
    }
    const std::size_t n = manifest_.parts.size();
    log("Downloading " + std::to_string(n) + " part" + (n == 1 ? "" : "s") + " (" +
        human_bytes(manifest_.bundled_size) + ")");
    std::optional<Progress> bar;
    if (io_.progress != nullptr) {
      bar.emplace("Downloading parts", io_.tty, io_.progress);
    }
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const ManifestPart& p = manifest_.parts[i];
      const std::string which =
          "part " + p.filename + " (" + std::to_string(i + 1) + " of " + std::to_string(n) + ")";
      auto body = get_source(loc_.key_dir + p.filename, kMaxSourcePartBytes);
      if (!body) {
        return fail(body.error().code, which + ": " + body.error().message);
      }
      if (!*body) {
        return fail(Errc::kIo, which + " is missing: no object " + loc_.bucket + "/" +
                                   loc_.key_dir + p.filename);
      }
      const std::string got = sha1_hex(**body);
      if (got != p.sha1) {
        return fail(Errc::kChecksum, which + " has SHA-1 " + got + ", the manifest says " + p.sha1);
      }
      total += (*body)->size();
      if (total > manifest_.bundled_size) {
        return fail(Errc::kChecksum, which +
                                         ": the parts hold more than the manifest's "
                                         "bundled_size " +
                                         std::to_string(manifest_.bundled_size));
      }
      if (auto w = write_file(parts_dir_ + "/" + p.filename, **body); !w) {
        return conf::unexpected(w.error());
      }
      if (bar) {
        bar->update(total, manifest_.bundled_size);
      }
      if (io_.on_progress) {
        io_.on_progress("parts", total, manifest_.bundled_size);
      }
    }
    if (bar) {
      bar->finish();
    }
    if (total != manifest_.bundled_size) {
      return fail(Errc::kChecksum, "the parts hold " + std::to_string(total) +
                                       " bytes, the manifest's bundled_size is " +
                                       std::to_string(manifest_.bundled_size));
    }
    return Step::kUnbundle;
  }

  Result<Step> unbundle_parts() {
    const std::string image_dir = work_.path() + "/image";
    std::error_code ec;
    fs::create_directory(image_dir, ec);
    if (ec) {
      return fail(Errc::kIo, "mkdir " + image_dir + ": " + ec.message());
    }
    log("Unbundling with " + opt_.source_key);
    UnbundleOptions u;
    u.manifest_path = manifest_path_;
    u.private_key = &*owner_key_;
    u.verify_cert = owner_cert_ ? &*owner_cert_ : nullptr;
    u.source_dir = parts_dir_;
    u.dest_dir = image_dir;
    std::optional<Progress> bar;
    if (io_.progress != nullptr) {
      bar.emplace("Unbundling", io_.tty, io_.progress);
    }
    u.progress = [&](std::uint64_t done, std::uint64_t total) {
      if (bar) {
        bar->update(done, total);
      }
      if (io_.on_progress) {
        io_.on_progress("unbundle", done, total);
      }
    };
    auto r = unbundle(u);
    if (bar) {
      bar->finish();
    }
    if (!r) {
      return conf::unexpected(r.error());
    }
    image_path_ = r->image_path;
    log("Unbundled " + fs::path(image_path_).filename().string() + " (" + human_bytes(r->size) +
        "), manifest signature " + r->signature);
    fs::remove_all(parts_dir_, ec);  // the install's own bundle needs the room
    // An EC2 bundle holds the disk the cloud boots, byte for byte: never converted here.
    auto format = disk_format(opt_.install.qemu_img, image_path_);
    if (!format) {
      return conf::unexpected(format.error());
    }
    if (*format != "raw") {
      return fail(Errc::kFormat, "the image is " + *format +
                                     " (qemu-img), not a raw disk: an EC2 bundle must hold the "
                                     "disk as booted; nothing was converted or registered");
    }
    return Step::kInstall;
  }

  Result<Step> install() {
    InstallOptions o = opt_.install;
    o.image_name.clear();
    o.tarball.clear();
    o.url.clear();
    o.disk_image = image_path_;
    o.kind = SourceKind::kDisk;
    o.expect_format = "raw";  // checked above; install_image must not convert either
    o.expect_size = manifest_.size;
    o.record_key = key_;
    o.content = manifest_.digest_sha1;
    o.name = loc_.name;
    o.guid = guid_;
    o.kernel_id = kernel_id_;
    o.ramdisk_id = ramdisk_id_;
    o.architecture = manifest_.architecture.empty() ? "i386" : manifest_.architecture;
    if (manifest_.architecture.empty()) {
      log("The source manifest names no architecture: i386, as the cloud assumes");
    }
    if (o.description.empty()) {
      o.description = "migrated from " + loc_.bucket + "/" + loc_.key;
    }
    o.registry = &*registry_;
    auto r = install_image(o, io_);
    if (!r) {
      return conf::unexpected(r.error());
    }
    result_ = std::move(*r);
    return Step::kDone;
  }

  const MigrateOptions& opt_;
  const InstallIo& io_;
  ManifestLocation loc_;
  std::string guid_, key_;
  Ec2Endpoint ec2_;
  std::optional<Http> http_;
  std::optional<Key> owner_key_, owner_cert_;
  std::optional<Registry> registry_;
  std::string manifest_xml_;
  Manifest manifest_;
  std::string kernel_id_, ramdisk_id_;
  WorkDir work_;  // parts/ (manifest + parts) and image/ (the unbundled image)
  std::string parts_dir_, manifest_path_, image_path_;
  InstallResult result_;
};

}  // namespace

Result<InstallResult> migrate_image(const MigrateOptions& opt, const InstallIo& io) {
  return Migrator(opt, io).run();
}

}  // namespace installer
