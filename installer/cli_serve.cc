// `tusk serve`: option plumbing for the registration service (installer/serve.h). Flags override
// the optional YAML file's `serve:` section; the cloud options are install-image's (CloudArgs).
// Test mode needs no credentials or bucket; a real service needs both.
#include <cstdio>

#include "installer/cli.h"
#include "installer/serve.h"

namespace installer {
namespace {

struct ServeArgs {
  CloudArgs cloud;
  std::string config, listen, token_file, download_dir, download_space, kernel, ramdisk;
  std::string architecture = "x86_64";
  int parallel = 2;
  int drain_seconds = 60;
  int max_connections = 256;
  bool test_mode = false;
};

int serve(CLI::App* app, const ServeArgs& a, const EnvFn& env) {
  ServeOptions o;
  CloudArgs cloud = a.cloud;
  if (!a.config.empty()) {
    auto c = load_serve_config(a.config);
    if (!c) return report(c.error());
    if (c->listen) o.listen = *c->listen;
    if (c->token_file) o.token_file = *c->token_file;
    if (c->download_dir) o.download_dir = *c->download_dir;
    if (c->download_space) o.download_space = *c->download_space;
    if (c->parallel) o.parallel = *c->parallel;
    if (c->test_mode) o.test_mode = *c->test_mode;
    if (c->kernel) o.kernel = *c->kernel;
    if (c->ramdisk) o.ramdisk = *c->ramdisk;
    if (c->bucket && app->count("--bucket") == 0) cloud.bucket = *c->bucket;
  }
  auto given = [&](const char* flag) { return app->count(flag) > 0; };
  if (given("--listen")) o.listen = a.listen;
  if (given("--token-file")) o.token_file = a.token_file;
  if (given("--download-dir")) o.download_dir = a.download_dir;
  if (given("--download-space")) {
    auto n = parse_space(a.download_space);
    if (!n) return report(n.error());
    o.download_space = *n;
  }
  if (given("--parallel")) o.parallel = a.parallel;
  if (given("--test-mode")) o.test_mode = a.test_mode;
  if (given("--kernel")) o.kernel = a.kernel;
  if (given("--ramdisk")) o.ramdisk = a.ramdisk;
  o.architecture = a.architecture;
  o.drain_seconds = a.drain_seconds;
  o.max_connections = a.max_connections;
  if (o.listen.empty()) return report(Error{Errc::kUsage, "give --listen HOST:PORT"});
  if (o.token_file.empty()) return report(Error{Errc::kUsage, "give --token-file FILE"});

  InstallOptions base;
  if (o.test_mode) {
    base.registry_dir = cloud.registry.empty() ? default_registry_dir(env) : cloud.registry;
  } else {
    if (cloud.bucket.empty()) {
      return report(Error{Errc::kUsage, "give -b BUCKET (or serve.bucket), or --test-mode"});
    }
    if (auto r = cloud.apply(base, env); !r) return report(r.error());
  }
  return run_service(o, base, log_line);
}

}  // namespace

std::vector<Command> add_serve_commands(CLI::App& app, const EnvFn& env) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand(
      "serve",
      "the registration service: POST /images {\"url\",\"guid\"} registers an image once per "
      "GUID, GET /images/<guid> reports it (ImageProxy's replacement)");
  cmd->add_option("--listen", a->listen, "HOST:PORT to listen on (serve.listen)");
  cmd->add_option("--token-file", a->token_file,
                  "file holding the bearer token every call must carry (serve.token_file)");
  cmd->add_option("--config", a->config, "YAML file with a serve: section (flags override it)");
  cmd->add_option("--download-dir", a->download_dir,
                  "where downloads are kept (serve.download_dir; default <registry>/downloads)");
  cmd->add_option("--download-space", a->download_space,
                  "cap of the download folder, e.g. 20G (serve.download_space; default 10G)");
  cmd->add_option("--parallel", a->parallel, "registrations at once (serve.parallel)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_flag("--test-mode", a->test_mode,
                "answer stable ids derived from the GUID; download, upload and register nothing");
  cmd->add_option("--kernel", a->kernel, "EKI for single disk images without one (serve.kernel)");
  cmd->add_option("--ramdisk", a->ramdisk,
                  "ERI for single disk images without one (serve.ramdisk)");
  cmd->add_option("-a,--architecture", a->architecture, "when a request gives none")
      ->capture_default_str();
  cmd->add_option("--drain-timeout", a->drain_seconds,
                  "seconds running registrations get to finish on SIGTERM/SIGINT")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  cmd->add_option("--max-connections", a->max_connections,
                  "client connections served at once; more get 503")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  a->cloud.add(cmd, /*bucket_required=*/false);
  return {Command{cmd, [cmd, a, env] { return serve(cmd, *a, env); }}};
}

}  // namespace installer
