#include "installer/cli.h"

#include <cstdio>
#include <ctime>
#include <map>

namespace installer {

int report(const Error& e) {
  std::fprintf(stderr, "tusk: error: %s\n", e.message.c_str());
  return e.code == Errc::kUsage ? 2 : 1;
}

void log_line(const std::string& line) {
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

std::string env_or(const EnvFn& env, const char* name, std::string fallback) {
  auto v = env(name);
  return v && !v->empty() ? *v : fallback;
}

std::string time_text(std::int64_t t) {
  if (t == 0) return "-";
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

void add_cred_options(CLI::App* app, CredArgs& c, bool endpoints) {
  auto* g = "Credentials (default: the euca2ools environment variables)";
  if (endpoints) {
    app->add_option("-I,--access-key-id", c.flags.access_key, "access key (EC2_ACCESS_KEY)")
        ->group(g);
    app->add_option("-S,--secret-key", c.flags.secret_key, "secret key (EC2_SECRET_KEY)")->group(g);
    app->add_option("--ec2-url", c.flags.ec2_url, "EC2 endpoint (EC2_URL)")->group(g);
    app->add_option("--s3-url", c.flags.s3_url, "S3/Walrus endpoint (S3_URL)")->group(g);
  }
  app->add_option("-c,--cert", c.flags.cert, "user certificate (EC2_CERT)")->group(g);
  app->add_option("--privatekey", c.flags.private_key, "user private key (EC2_PRIVATE_KEY)")
      ->group(g);
  app->add_option("--ec2cert", c.flags.cloud_cert, "cloud certificate (EUCALYPTUS_CERT)")->group(g);
  app->add_option("-u,--user", c.flags.user_id, "account id (EC2_USER_ID)")->group(g);
  app->add_option("--eucarc", c.eucarc, "read credentials from this eucarc file (not executed)")
      ->group(g);
}

Result<CloudCredentials> resolve(const CredArgs& c, const EnvFn& env) {
  std::map<std::string, std::string> rc;
  if (!c.eucarc.empty()) {
    auto parsed = parse_eucarc(c.eucarc);
    if (!parsed) return conf::unexpected(parsed.error());
    rc = std::move(*parsed);
  }
  return resolve_credentials(c.flags, rc, env);
}

void CloudArgs::add(CLI::App* app, bool bucket_required) {
  auto* b = app->add_option("-b,--bucket", bucket, "bucket to upload the bundles to");
  if (bucket_required) b->required();
  app->add_option("--guid", guid, "site GUID for the registry (TUSK_SITE_GUID)");
  app->add_option("--registry", registry,
                  "registry folder (TUSK_REGISTRY, ~/.local/share/tusk/registry)");
  app->add_option("--acl", acl, "canned ACL of the uploaded objects")->capture_default_str();
  app->add_option("-d,--directory", work_dir, "where to create work folders");
  app->add_option("--s3-signature", s3_sig, "v2 or v4")
      ->check(CLI::IsMember({"v2", "v4"}))
      ->capture_default_str();
  app->add_option("--ec2-signature", ec2_sig, "v2 (HmacSHA256) or v4")
      ->check(CLI::IsMember({"v2", "v4"}))
      ->capture_default_str();
  app->add_option("--region", region, "SigV4 region (default: eucalyptus)");
  app->add_flag("--trust-registry", trust_registry,
                "answer from the registry without checking with DescribeImages that the "
                "recorded images still exist");
  add_cred_options(app, creds, true);
}

Result<void> CloudArgs::apply(InstallOptions& opt, const EnvFn& env) const {
  auto c = resolve(creds, env);
  if (!c) return conf::unexpected(c.error());
  opt.creds = *c;
  opt.bucket = bucket;
  opt.acl = acl;
  opt.work_dir = work_dir;
  opt.trust_registry = trust_registry;
  opt.registry_dir = registry.empty() ? default_registry_dir(env) : registry;
  opt.guid = guid.empty() ? env_or(env, "TUSK_SITE_GUID") : guid;
  if (opt.eustore_url.empty()) opt.eustore_url = env_or(env, "EUSTORE_URL");
  opt.s3_signature = s3_sig == "v4" ? conf::Signature::kV4 : conf::Signature::kV2;
  opt.ec2_signature = ec2_sig == "v4" ? Ec2Signature::kV4 : Ec2Signature::kV2;
  if (!region.empty()) {
    opt.s3_region = region;
    opt.ec2_region = region;
  }
  return {};
}

}  // namespace installer
