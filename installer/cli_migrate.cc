// `tusk migrate-image`: option plumbing for installer/migrate.h. The source bucket's endpoint,
// keys, signature and region default to the cloud's own S3 settings (a bundle in this cloud's
// Walrus); the source keys may come from TUSK_SOURCE_ACCESS_KEY / TUSK_SOURCE_SECRET_KEY so that
// they stay off the command line. Output as install-image: ids on stdout, the rest on stderr.
#include <unistd.h>

#include "installer/cli.h"
#include "installer/migrate.h"

namespace installer {
namespace {

struct MigrateArgs {
  CloudArgs cloud;
  std::string manifest, source_key, source_cert;
  std::string source_url, source_access_key, source_secret_key, source_sig, source_region;
  std::string kernel, ramdisk, description;
  bool no_progress = false;
  bool keep_work_dir = false;
};

int migrate(const MigrateArgs& a, const EnvFn& env) {
  MigrateOptions o;
  if (auto r = a.cloud.apply(o.install, env); !r) {
    return report(r.error());
  }
  o.manifest = a.manifest;
  o.source_key = a.source_key;
  o.source_cert = a.source_cert;
  o.install.kernel_id = a.kernel;
  o.install.ramdisk_id = a.ramdisk;
  o.install.description = a.description;
  o.install.keep_work_dir = a.keep_work_dir;

  std::string access =
      a.source_access_key.empty() ? env_or(env, "TUSK_SOURCE_ACCESS_KEY") : a.source_access_key;
  std::string secret =
      a.source_secret_key.empty() ? env_or(env, "TUSK_SOURCE_SECRET_KEY") : a.source_secret_key;
  if (access.empty() != secret.empty()) {
    return report(Error{Errc::kUsage,
                        "give both --source-access-key-id and --source-secret-key, or neither "
                        "(then the cloud's keys are used)"});
  }
  const CloudCredentials& c = o.install.creds;
  conf::Upstream& src = o.source;
  src.name = "source";
  src.endpoint = a.source_url.empty() ? c.s3_url : a.source_url;
  while (!src.endpoint.empty() && src.endpoint.back() == '/') {
    src.endpoint.pop_back();
  }
  src.access_key = access.empty() ? c.access_key : access;
  src.secret_key = secret.empty() ? c.secret_key : secret;
  src.signature = a.source_sig.empty()   ? o.install.s3_signature
                  : a.source_sig == "v4" ? conf::Signature::kV4
                                         : conf::Signature::kV2;
  src.region = a.source_region.empty() ? o.install.s3_region : a.source_region;

  InstallIo io;
  io.log = log_line;
  io.tty = ::isatty(STDERR_FILENO) == 1;
  io.progress = a.no_progress ? nullptr : stderr;
  auto r = migrate_image(o, io);
  if (!r) {
    return report(r.error());
  }
  if (!r->eki.empty()) {
    std::printf("Kernel: %s\n", r->eki.c_str());
  }
  if (!r->eri.empty()) {
    std::printf("Ramdisk: %s\n", r->eri.c_str());
  }
  std::printf("Installed image: %s\n", r->emi.c_str());
  return 0;
}

}  // namespace

std::vector<Command> add_migrate_commands(CLI::App& app, const EnvFn& env) {
  auto a = std::make_shared<MigrateArgs>();
  auto* cmd = app.add_subcommand(
      "migrate-image",
      "an EC2 bundle in a bucket + its owner's private key -> an image registered here");
  cmd->add_option("--manifest", a->manifest, "the source bundle: BUCKET/PREFIX.manifest.xml")
      ->required();
  cmd->add_option("--source-key", a->source_key, "the bundle owner's private key (PEM)")
      ->required();
  cmd->add_option("--source-cert", a->source_cert,
                  "check the manifest signature with the owner's certificate");
  auto* g = "Source bucket (default: this cloud's S3_URL, keys and signature)";
  cmd->add_option("--source-url", a->source_url, "S3 or Walrus endpoint of the source")->group(g);
  cmd->add_option("--source-access-key-id", a->source_access_key,
                  "access key for the source (TUSK_SOURCE_ACCESS_KEY)")
      ->group(g);
  cmd->add_option("--source-secret-key", a->source_secret_key,
                  "secret key for the source (TUSK_SOURCE_SECRET_KEY)")
      ->group(g);
  cmd->add_option("--source-signature", a->source_sig, "v2 (Walrus) or v4 (S3)")
      ->check(CLI::IsMember({"v2", "v4"}))
      ->group(g);
  cmd->add_option("--source-region", a->source_region, "SigV4 region of the source")->group(g);
  cmd->add_option("--kernel", a->kernel,
                  "boot with this kernel (eki-...; default: the source manifest's, if it exists "
                  "here)");
  cmd->add_option("--ramdisk", a->ramdisk,
                  "boot with this ramdisk (eri-...; default: as --kernel)");
  cmd->add_option("-s,--description", a->description, "image description");
  cmd->add_flag("--no-progress", a->no_progress, "no progress display");
  cmd->add_flag("--keep-work-dir", a->keep_work_dir, "keep the work folders");
  a->cloud.add(cmd, true);
  return {Command{cmd, [a, env] { return migrate(*a, env); }}};
}

}  // namespace installer
