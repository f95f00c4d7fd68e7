// What every `tusk` subcommand shares: error reporting and exit codes, the log line, the
// environment, and the credential options of the euca2ools era. A command family lives in its
// own installer/cli_*.cc and adds itself to the CLI11 app with an add_*_commands() function that
// returns its Commands; main.cc runs the one that was parsed.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "installer/credentials.h"
#include "installer/error.h"
#include "installer/install.h"
#include "installer/registry.h"

namespace installer {

// Prints "tusk: error: …" to stderr; exit code 2 for usage errors, 1 for the rest.
int report(const Error& e);
// One diagnostic line on stderr, flushed.
void log_line(const std::string& line);
std::string env_or(const EnvFn& env, const char* name, std::string fallback = {});
// Unix seconds as "2026-12-05T02:11:20Z"; 0 as "-".
std::string time_text(std::int64_t t);

struct CredArgs {
  CloudCredentials flags;
  std::string eucarc;
};
// -I/-S/--ec2-url/--s3-url (when `endpoints`), -c, --privatekey, --ec2cert, -u, --eucarc.
void add_cred_options(CLI::App* app, CredArgs& c, bool endpoints);
Result<CloudCredentials> resolve(const CredArgs& c, const EnvFn& env);

// The cloud side of install-image that other commands reuse (worker, serve, migrate-image):
// credentials, signatures, region, registry, bucket and GUID options. apply() fills `opt` from
// them and the environment (EUSTORE_URL, TUSK_REGISTRY, TUSK_SITE_GUID).
struct CloudArgs {
  CredArgs creds;
  std::string bucket, guid, registry, acl = "aws-exec-read", work_dir;
  std::string s3_sig = "v2", ec2_sig = "v2", region;
  bool trust_registry = false;
  void add(CLI::App* app, bool bucket_required);
  Result<void> apply(InstallOptions& opt, const EnvFn& env) const;
};

// A parsed subcommand's body. `app` is what CLI11 marks parsed().
struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
};

using AddCommands = std::vector<Command> (*)(CLI::App& app, const EnvFn& env);
std::vector<Command> add_queue_commands(CLI::App& app, const EnvFn& env);    // cli_queue.cc
std::vector<Command> add_intake_commands(CLI::App& app, const EnvFn& env);   // cli_intake.cc
std::vector<Command> add_serve_commands(CLI::App& app, const EnvFn& env);    // cli_serve.cc
std::vector<Command> add_migrate_commands(CLI::App& app, const EnvFn& env);  // cli_migrate.cc
std::vector<Command> add_presign_commands(CLI::App& app, const EnvFn& env);  // cli_presign.cc

}  // namespace installer
