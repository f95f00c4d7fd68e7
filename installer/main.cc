// `tusk`: the command line. Subcommands describe-images, install-image, bundle-image, unbundle,
// images, cache (ls, purge, warm, verify, stats), presign and the families of installer/cli_*.cc,
// parsed with CLI11 (`--help` on each).
// Everything here is option plumbing: the work is in the installer library. Results go to stdout,
// progress and diagnostics to stderr.
#include <curl/curl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "installer/bundle.h"
#include "installer/cache_cmd.h"
#include "installer/catalog.h"
#include "installer/cli.h"
#include "installer/credentials.h"
#include "installer/http.h"
#include "installer/install.h"
#include "installer/progress.h"
#include "installer/registry.h"
#include "installer/remove.h"

namespace installer {
namespace {

Result<OutputFormat> parse_format(const std::string& f) {
  if (f == "table") return OutputFormat::kTable;
  if (f == "tsv") return OutputFormat::kTsv;
  if (f == "json") return OutputFormat::kJson;
  return fail(Errc::kUsage, "--format must be table, tsv or json");
}

// --- describe-images ----------------------------------------------------------------------

struct DescribeArgs {
  bool verbose = false;
  std::string url;
  std::string format = "table";
};

int describe_images(const DescribeArgs& a, const EnvFn& env) {
  auto fmt = parse_format(a.format);
  if (!fmt) return report(fmt.error());
  std::string base = a.url.empty() ? env_or(env, "EUSTORE_URL") : a.url;
  if (base.empty()) {
    return report(Error{Errc::kUsage, "no catalog URL: give -U URL or set EUSTORE_URL"});
  }
  base = normalize_base(base);
  auto http = Http::create();
  if (!http) return report(http.error());
  std::string url = base + "catalog.json";
  auto r = http->get(url);
  if (r && r->status == 404) {
    url = base + "catalog";
    r = http->get(url);
  }
  if (!r) return report(r.error());
  if (r->status != 200) {
    return report(Error{Errc::kNetwork, "GET " + url + ": HTTP " + std::to_string(r->status)});
  }
  auto cat = parse_catalog(r->body);
  if (!cat) return report(Error{cat.error().code, url + ": " + cat.error().message});
  for (const auto& w : cat->warnings) {
    std::fprintf(stderr, "tusk: warning: %s: %s\n", url.c_str(), w.c_str());
  }
  std::string out = format_images(*cat, *fmt, a.verbose);
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

// --- credentials shared by install-image and bundle-image -----------------------------------

// --- install-image ----------------------------------------------------------------------------

struct InstallArgs {
  InstallOptions opt;
  CredArgs creds;
  std::string kernel_type;  // deprecated -k
  std::string s3_sig = "v2", ec2_sig = "v2";
  std::string region;
  bool progress = true;
  bool no_progress = false;
};

int install(InstallArgs& a, const EnvFn& env) {
  auto creds = resolve(a.creds, env);
  if (!creds) return report(creds.error());
  a.opt.creds = *creds;
  if (!a.kernel_type.empty()) {
    std::fprintf(stderr, "tusk: warning: -k/--kernel-type is deprecated; use --hypervisor\n");
    if (a.opt.hypervisor.empty()) a.opt.hypervisor = a.kernel_type;
  }
  if (a.opt.eustore_url.empty()) a.opt.eustore_url = env_or(env, "EUSTORE_URL");
  if (a.opt.registry_dir.empty()) a.opt.registry_dir = default_registry_dir(env);
  if (a.opt.guid.empty()) a.opt.guid = env_or(env, "TUSK_SITE_GUID");
  if (a.s3_sig != "v2" && a.s3_sig != "v4")
    return report(Error{Errc::kUsage, "--s3-signature: v2 or v4"});
  if (a.ec2_sig != "v2" && a.ec2_sig != "v4")
    return report(Error{Errc::kUsage, "--ec2-signature: v2 or v4"});
  a.opt.s3_signature = a.s3_sig == "v4" ? conf::Signature::kV4 : conf::Signature::kV2;
  a.opt.ec2_signature = a.ec2_sig == "v4" ? Ec2Signature::kV4 : Ec2Signature::kV2;
  if (!a.region.empty()) {
    a.opt.s3_region = a.region;
    a.opt.ec2_region = a.region;
  }
  InstallIo io;
  io.log = log_line;
  io.tty = ::isatty(STDERR_FILENO) == 1;
  io.progress = a.no_progress ? nullptr : stderr;
  auto r = install_image(a.opt, io);
  if (!r) return report(r.error());
  if (!r->eki.empty()) std::printf("Kernel: %s\n", r->eki.c_str());
  if (!r->eri.empty()) std::printf("Ramdisk: %s\n", r->eri.c_str());
  std::printf("Installed image: %s\n", r->emi.c_str());
  return 0;
}

// --- bundle-image -------------------------------------------------------------------------------

struct BundleArgs {
  std::string image, dest = ".", prefix, type = "machine", arch = "x86_64", kernel, ramdisk;
  CredArgs creds;
};

int bundle(const BundleArgs& a, const EnvFn& env) {
  auto creds = resolve(a.creds, env);
  if (!creds) return report(creds.error());
  if (creds->cloud_cert.empty()) {
    return report(Error{Errc::kUsage,
                        "bundle-image needs the cloud certificate: --ec2cert or "
                        "EUCALYPTUS_CERT"});
  }
  auto cloud = Key::from_certificate_file(creds->cloud_cert);
  if (!cloud) return report(cloud.error());
  std::optional<Key> user_cert, pk;
  if (!creds->cert.empty()) {
    auto c = Key::from_certificate_file(creds->cert);
    if (!c) return report(c.error());
    user_cert.emplace(std::move(*c));
  }
  if (!creds->private_key.empty()) {
    auto k = Key::from_private_key_file(creds->private_key);
    if (!k) return report(k.error());
    pk.emplace(std::move(*k));
  }
  BundleOptions o;
  o.image_path = a.image;
  o.prefix = a.prefix.empty() ? a.image.substr(a.image.rfind('/') + 1) : a.prefix;
  o.dest_dir = a.dest;
  o.type = a.type == "kernel"    ? ImageType::kKernel
           : a.type == "ramdisk" ? ImageType::kRamdisk
                                 : ImageType::kMachine;
  o.architecture = a.arch;
  o.kernel_id = a.kernel;
  o.ramdisk_id = a.ramdisk;
  o.user = creds->user_id;
  o.cloud_cert = &*cloud;
  o.user_cert = user_cert ? &*user_cert : nullptr;
  o.private_key = pk ? &*pk : nullptr;
  Progress bar("Bundling image", ::isatty(STDERR_FILENO) == 1, stderr);
  o.progress = [&](std::uint64_t d, std::uint64_t t) { bar.update(d, t); };
  auto b = bundle_image(o);
  bar.finish();
  if (!b) return report(b.error());
  for (const auto& p : b->parts) {
    std::printf("Part: %s\n", p.filename.c_str());
  }
  std::printf("Generating manifest %s\n", b->manifest_path.c_str());
  return 0;
}

// --- unbundle -----------------------------------------------------------------------------------

struct UnbundleArgs {
  std::string manifest, key, src, dest = ".", cert;
};

int unbundle_cmd(const UnbundleArgs& a) {
  auto key = Key::from_private_key_file(a.key);
  if (!key) return report(key.error());
  std::optional<Key> cert;
  if (!a.cert.empty()) {
    auto c = Key::from_certificate_file(a.cert);
    if (!c) return report(c.error());
    cert.emplace(std::move(*c));
  }
  UnbundleOptions o;
  o.manifest_path = a.manifest;
  o.private_key = &*key;
  o.verify_cert = cert ? &*cert : nullptr;
  std::string mdir =
      a.manifest.find('/') == std::string::npos ? "." : a.manifest.substr(0, a.manifest.rfind('/'));
  o.source_dir = a.src.empty() ? mdir : a.src;
  o.dest_dir = a.dest;
  Progress bar("Unbundling", ::isatty(STDERR_FILENO) == 1, stderr);
  o.progress = [&](std::uint64_t d, std::uint64_t t) { bar.update(d, t); };
  auto u = unbundle(o);
  bar.finish();
  if (!u) return report(u.error());
  std::printf("Signature: %s\n", u->signature.c_str());
  std::printf("Unbundled %s (%llu bytes)\n", u->image_path.c_str(),
              static_cast<unsigned long long>(u->size));
  return 0;
}

// --- images -------------------------------------------------------------------------------------

struct ImagesArgs {
  std::string registry;
  std::string format = "table";
};

int images(const ImagesArgs& a, const EnvFn& env) {
  auto fmt = parse_format(a.format);
  if (!fmt) return report(fmt.error());
  auto reg = Registry::open(a.registry.empty() ? default_registry_dir(env) : a.registry);
  if (!reg) return report(reg.error());
  auto all = reg->list();
  if (!all) return report(all.error());
  if (*fmt == OutputFormat::kJson) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const auto& [key, r] : *all) {
      arr.push_back({{"image", r.image},
                     {"guid", r.guid},
                     {"state", install_state_name(r.state)},
                     {"eki", r.eki},
                     {"eri", r.eri},
                     {"emi", r.emi},
                     {"bucket", r.bucket},
                     {"source", r.source},
                     {"finished", time_text(r.finished)}});
    }
    std::printf("%s\n", arr.dump(2).c_str());
    return 0;
  }
  auto dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  for (const auto& [key, r] : *all) {
    if (*fmt == OutputFormat::kTsv) {
      std::printf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.image.c_str(), r.guid.c_str(),
                  install_state_name(r.state), r.eki.c_str(), r.eri.c_str(), r.emi.c_str(),
                  r.bucket.c_str(), time_text(r.finished).c_str());
    } else {
      std::printf("%-11s%-12s%-22s%-22s%-22s%s  %s\n", r.image.c_str(), install_state_name(r.state),
                  dash(r.eki).c_str(), dash(r.eri).c_str(), dash(r.emi).c_str(), r.bucket.c_str(),
                  r.guid.c_str());
    }
  }
  return 0;
}

struct RemoveArgs {
  CloudArgs cloud;  // its --guid selects the records
  bool all = false;
};

int images_remove(const RemoveArgs& a, const EnvFn& env) {
  if (a.cloud.guid.empty() == !a.all) {
    return report(Error{Errc::kUsage, "give exactly one of --guid G and --all"});
  }
  InstallOptions opt;
  if (auto r = a.cloud.apply(opt, env); !r) return report(r.error());
  if (opt.creds.ec2_url.empty() || opt.creds.s3_url.empty() || opt.creds.access_key.empty() ||
      opt.creds.secret_key.empty()) {
    return report(Error{Errc::kUsage,
                        "images remove needs EC2_URL, S3_URL, EC2_ACCESS_KEY and EC2_SECRET_KEY"});
  }
  auto r = remove_images(opt, a.cloud.guid, a.all, log_line);
  if (!r) return report(r.error());
  for (const auto& id : r->deregistered) std::printf("deregistered %s\n", id.c_str());
  for (const auto& key : r->removed_keys) std::printf("forgot %s\n", key.c_str());
  std::printf("%zu images deregistered, %zu objects deleted, %zu records removed\n",
              r->deregistered.size(), r->deleted.size(), r->removed_keys.size());
  for (const auto& e : r->errors) std::fprintf(stderr, "tusk: error: %s\n", e.c_str());
  return r->errors.empty() ? 0 : 1;
}

// --- cache --------------------------------------------------------------------------------------

struct CacheArgs {
  std::string admin, token_file;
  bool json = false;
  LsArgs ls;
  PurgeArgs purge;
  WarmArgs warm;
  VerifyArgs verify;
};

struct CacheVerbs {
  CLI::App *cache, *ls, *purge, *warm, *verify, *stats;
};

CacheVerbs add_cache_command(CLI::App& app, CacheArgs& a) {
  auto* cache = app.add_subcommand("cache", "inspect and manage tuskd's cache (its admin API)");
  cache->require_subcommand(1);
  cache->add_option(
      "--admin", a.admin,
      "admin API URL (TUSK_ADMIN_URL, default " + std::string(kDefaultAdminUrl) + ")");
  cache->add_option("--token-file", a.token_file,
                    "file holding the admin token (TUSK_ADMIN_TOKEN_FILE)");
  cache->add_flag("--json", a.json, "print the server's JSON answers");
  CacheVerbs v{};
  v.cache = cache;
  v.ls = cache->add_subcommand("ls", "list cached objects, every page");
  v.ls->add_option("PREFIX", a.ls.prefix, "public path prefix, e.g. /starter-emis/");
  v.ls->add_option("--limit", a.ls.limit, "stop after N objects")
      ->check(CLI::Validator(
          [](const std::string& s) {
            return std::strtoull(s.c_str(), nullptr, 10) == 0 ? "must be at least 1" : "";
          },
          "N>0"));
  v.purge = cache->add_subcommand("purge", "remove one object, or every object under a prefix");
  auto* path = v.purge->add_option("PATH", a.purge.path, "public path of the object");
  v.purge->add_option("--prefix", a.purge.prefix, "remove every object under this path prefix")
      ->excludes(path);
  v.warm = cache->add_subcommand("warm", "fill the cache from a catalog or a list of paths");
  auto* catalog = v.warm->add_option("--catalog", a.warm.catalog,
                                     "public path of a eustore catalog, e.g. /catalog.json");
  v.warm->add_option("PATH", a.warm.paths, "public paths of objects")->excludes(catalog);
  v.warm->add_flag("--no-wait", a.warm.no_wait, "print the job id and return");
  v.verify = cache->add_subcommand("verify", "check cached objects against their ETag MD5");
  v.verify->add_option("PREFIX", a.verify.prefix, "only objects under this public path prefix");
  v.verify->add_flag("--no-wait", a.verify.no_wait, "print the job id and return");
  v.stats = cache->add_subcommand("stats", "cache and traffic counters");
  for (auto* verb : {v.ls, v.purge, v.warm, v.verify, v.stats}) {
    verb->fallthrough();  // --admin, --token-file and --json after the verb too
  }
  return v;
}

int cache_cmd(const CacheArgs& a, const CacheVerbs& v, const EnvFn& env) {
  auto base = admin_base(a.admin, env);
  if (!base) return report(base.error());
  auto token = read_admin_token(a.token_file, env);
  if (!token) return report(token.error());
  auto http = Http::create();
  if (!http) return report(http.error());
  CacheContext c;
  c.base = *base;
  c.token = *token;
  c.json = a.json;
  c.transport = [&http](const std::string& method, const std::string& url, const Headers& h,
                        const std::string& body) { return http->request(method, url, h, body); };
  c.tty = ::isatty(STDERR_FILENO) == 1;
  c.sleep = [](std::chrono::milliseconds d) { std::this_thread::sleep_for(d); };
  c.now = [] { return static_cast<std::int64_t>(std::time(nullptr)); };
  Result<int> rc = v.ls->parsed()       ? cache_ls(c, a.ls)
                   : v.purge->parsed()  ? cache_purge(c, a.purge)
                   : v.warm->parsed()   ? cache_warm(c, a.warm)
                   : v.verify->parsed() ? cache_verify(c, a.verify)
                                        : cache_stats(c);
  return rc ? *rc : report(rc.error());
}

int run(int argc, char** argv) {
  const EnvFn env = process_environment();
  CLI::App app{
      "tusk: install images from a eustore catalog (through tuskd) onto a Eucalyptus or "
      "EC2-compatible cloud"};
  app.require_subcommand(1);

  DescribeArgs da;
  auto* describe = app.add_subcommand("describe-images", "list the images of the catalog");
  describe->add_flag("-v,--verbose", da.verbose, "add date, stamp, recipe and contact");
  describe->add_option("-U,--url", da.url, "catalog base URL (EUSTORE_URL)");
  describe->add_option("--format", da.format, "table (eustore 2.1), tsv (eustore 3.0) or json")
      ->check(CLI::IsMember({"table", "tsv", "json"}));

  InstallArgs ia;
  auto* inst = app.add_subcommand(
      "install-image", "download an image through the cache, bundle, upload and register it");
  auto* i_opt = inst->add_option("-i,--image-name", ia.opt.image_name, "catalog image name");
  auto* t_opt = inst->add_option("-t,--tarball", ia.opt.tarball, "local image tarball");
  i_opt->excludes(t_opt);
  inst->add_option("-b,--bucket", ia.opt.bucket, "bucket to upload the bundles to")->required();
  inst->add_option("--hypervisor", ia.opt.hypervisor, "kernel flavour: xen, kvm or universal")
      ->check(CLI::IsMember({"xen", "kvm", "universal"}));
  inst->add_option("-k,--kernel-type", ia.kernel_type, "deprecated alias of --hypervisor")
      ->check(CLI::IsMember({"xen", "kvm"}));
  inst->add_option("-a,--architecture", ia.opt.architecture, "i386, x86_64 or armhf");
  inst->add_option("-s,--description", ia.opt.description, "image description");
  inst->add_option("-d,--directory", ia.opt.work_dir, "where to create the work folder");
  inst->add_option("--kernel", ia.opt.kernel_id, "use this registered kernel (eki-...)");
  inst->add_option("--ramdisk", ia.opt.ramdisk_id, "use this registered ramdisk (eri-...)");
  inst->add_option("--guid", ia.opt.guid, "site GUID for the registry (TUSK_SITE_GUID)");
  inst->add_option("-U,--url", ia.opt.eustore_url, "catalog base URL (EUSTORE_URL)");
  inst->add_option("--acl", ia.opt.acl, "canned ACL of the uploaded objects")
      ->capture_default_str();
  inst->add_option("--registry", ia.opt.registry_dir,
                   "registry folder (TUSK_REGISTRY, ~/.local/share/tusk/registry)");
  inst->add_option("--s3-signature", ia.s3_sig, "v2 or v4")->capture_default_str();
  inst->add_option("--ec2-signature", ia.ec2_sig, "v2 (HmacSHA256) or v4")->capture_default_str();
  inst->add_option("--region", ia.region, "SigV4 region (default: eucalyptus)");
  inst->add_flag("--no-progress", ia.no_progress, "no progress display");
  inst->add_flag("--keep-work-dir", ia.opt.keep_work_dir, "keep the work folder");
  inst->add_flag("--trust-registry", ia.opt.trust_registry,
                 "answer from the registry without checking with DescribeImages that the "
                 "recorded images still exist");
  add_cred_options(inst, ia.creds, true);

  BundleArgs ba;
  auto* bundle_cmd = app.add_subcommand("bundle-image", "bundle one image file (EC2 format)");
  bundle_cmd->add_option("-i,--image", ba.image, "image file")->required();
  bundle_cmd->add_option("-d,--destination", ba.dest, "output folder")->capture_default_str();
  bundle_cmd->add_option("-p,--prefix", ba.prefix, "bundle name (default: the file's name)");
  bundle_cmd->add_option("--type", ba.type, "machine, kernel or ramdisk")
      ->check(CLI::IsMember({"machine", "kernel", "ramdisk"}))
      ->capture_default_str();
  bundle_cmd->add_option("-a,--architecture", ba.arch, "architecture")->capture_default_str();
  bundle_cmd->add_option("--kernel", ba.kernel, "kernel id for a machine image");
  bundle_cmd->add_option("--ramdisk", ba.ramdisk, "ramdisk id for a machine image");
  add_cred_options(bundle_cmd, ba.creds, false);

  UnbundleArgs ua;
  auto* unb = app.add_subcommand("unbundle", "decrypt and reassemble a bundle, checking digests");
  unb->add_option("-m,--manifest", ua.manifest, "manifest file")->required();
  unb->add_option("-k,--privatekey", ua.key, "private key (user's or cloud's)")->required();
  unb->add_option("-s,--source", ua.src, "folder holding the parts (default: the manifest's)");
  unb->add_option("-d,--destination", ua.dest, "output folder")->capture_default_str();
  unb->add_option("--cert", ua.cert, "check the manifest signature with this certificate");

  ImagesArgs ga;
  auto* imgs = app.add_subcommand("images", "list the registry of installed images");
  imgs->add_option("--registry", ga.registry, "registry folder");
  imgs->add_option("--format", ga.format, "table, tsv or json")
      ->check(CLI::IsMember({"table", "tsv", "json"}));
  RemoveArgs ra;
  auto* img_rm = imgs->add_subcommand(
      "remove", "deregister recorded images, delete their bundles and forget them");
  ra.cloud.add(img_rm, /*bucket_required=*/false);
  img_rm->get_option("--guid")->description(
      "the records of this GUID (a site's installs, a `tusk serve` image)");
  img_rm->add_flag("--all", ra.all, "every record")->excludes("--guid");

  CacheArgs ca;
  CacheVerbs cache_verbs = add_cache_command(app, ca);

  // The other ways images come in (issue 12), each family in its installer/cli_*.cc.
  std::vector<Command> more;
  // And `tusk presign` (cli_presign.cc): URLs for tuskd's `auth: presigned` routes.
  for (auto* add : {add_queue_commands, add_intake_commands, add_serve_commands,
                    add_migrate_commands, add_presign_commands}) {
    for (auto& c : add(app, env)) more.push_back(std::move(c));
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);    // prints the help or the message
    return rc == 0 ? 0 : 2;  // usage errors exit 2, whatever CLI11's own code
  }
  if (describe->parsed()) return describe_images(da, env);
  if (inst->parsed()) return install(ia, env);
  if (bundle_cmd->parsed()) return bundle(ba, env);
  if (unb->parsed()) return unbundle_cmd(ua);
  if (img_rm->parsed()) return images_remove(ra, env);
  if (imgs->parsed()) return images(ga, env);
  if (cache_verbs.cache->parsed()) return cache_cmd(ca, cache_verbs, env);
  for (const auto& c : more) {
    if (c.app->parsed()) return c.run();
  }
  return 2;
}

}  // namespace
}  // namespace installer

int main(int argc, char** argv) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int rc = installer::run(argc, argv);
  curl_global_cleanup();
  return rc;
}
