// Tricky: deregistration comes before deleting the bundle (a registered image whose parts are
// gone cannot boot), machine images before the kernels and ramdisks they name, and objects are
// deleted only in the buckets the removed records uploaded to.
#include "installer/remove.h"

#include <unistd.h>

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "installer/ec2.h"
#include "installer/http.h"
#include "installer/manifest.h"
#include "installer/upload.h"

namespace installer {

namespace {

RemovalPlan plan(const std::vector<std::pair<std::string, InstallRecord>>& records,
                 const std::function<bool(const std::string&, const InstallRecord&)>& selected) {
  RemovalPlan p;
  std::set<std::string> named_by_rest;
  std::vector<const InstallRecord*> chosen;
  for (const auto& [key, r] : records) {
    if (selected(key, r)) {
      p.keys.push_back(key);
      chosen.push_back(&r);
    } else {
      named_by_rest.insert({r.eki, r.eri, r.emi});
    }
  }
  std::set<std::string> seen;
  for (auto field : {&InstallRecord::emi, &InstallRecord::eri, &InstallRecord::eki}) {
    for (const InstallRecord* r : chosen) {
      const std::string& id = r->*field;
      if (id.empty() || !seen.insert(id).second) continue;
      (named_by_rest.count(id) ? p.kept : p.ids).push_back(id);
    }
  }
  return p;
}

}  // namespace

RemovalPlan plan_removal(const std::vector<std::pair<std::string, InstallRecord>>& records,
                         const std::string& guid, bool all) {
  return plan(records,
              [&](const std::string&, const InstallRecord& r) { return all || r.guid == guid; });
}

Result<RemoveReport> remove_images(const InstallOptions& opt, const std::string& guid, bool all,
                                   const LogFn& log) {
  std::optional<Registry> own;
  auto opened = use_registry(opt.registry, opt.registry_dir, own);
  if (!opened) return conf::unexpected(opened.error());
  Registry* reg = *opened;
  auto first = reg->list();
  if (!first) return conf::unexpected(first.error());
  RemoveReport report;
  // Each chosen record is locked for the whole removal, so no install can resume it (and pick
  // up an image about to be deregistered) meanwhile; a record whose lock is held is being
  // installed right now and is left, with what it names.
  std::map<std::string, KeyLock> locks;
  for (const auto& [key, r] : *first) {
    if (!(all || r.guid == guid)) continue;
    auto l = reg->try_lock(key);
    if (!l) return conf::unexpected(l.error());
    if (!*l) {
      report.errors.push_back(key + ": being installed right now; left as it is");
      continue;
    }
    locks.emplace(key, std::move(**l));
  }
  auto records = reg->list();  // as they are now that they are locked
  if (!records) return conf::unexpected(records.error());
  auto running = [](const InstallRecord& r) {
    return r.state == InstallState::kInProgress && r.pid != ::getpid() &&
           process_alive(r.pid, r.pid_start);
  };
  std::set<std::string> chosen;
  for (const auto& [key, r] : *records) {
    if (!locks.count(key) || !(all || r.guid == guid)) continue;
    if (running(r)) {  // a registry on a file system without flock
      report.errors.push_back(key + ": being installed by pid " + std::to_string(r.pid) +
                              "; left as it is");
      continue;
    }
    chosen.insert(key);
  }
  const RemovalPlan p = plan(*records, [&](const std::string& key, const InstallRecord&) {
    return chosen.count(key) > 0;
  });
  for (const auto& id : p.kept) {
    log("Keeping " + id + ": another registry record uses it");
  }
  std::set<std::string> buckets;
  for (const auto& [key, r] : *records) {
    if (std::find(p.keys.begin(), p.keys.end(), key) != p.keys.end() && !r.bucket.empty()) {
      buckets.insert(r.bucket);
    }
  }
  auto http = Http::create();
  if (!http) return conf::unexpected(http.error());
  const Ec2Endpoint ec2 = ec2_endpoint_of(opt);
  S3Target s3 = s3_target_of(opt);
  std::map<std::string, std::string> location;
  if (!p.ids.empty()) {
    auto known = describe_images(*http, ec2, p.ids);
    if (!known) {
      report.errors.push_back("DescribeImages: " + known.error().message);
      return report;  // nothing was changed
    }
    for (const auto& i : *known) location[i.id] = i.location;
  }
  std::set<std::string> failed_ids;
  auto delete_bundle = [&](const std::string& id, const std::string& loc) -> Result<void> {
    std::string_view l = loc;
    while (!l.empty() && l.front() == '/') l.remove_prefix(1);
    const auto slash = l.find('/');
    if (slash == std::string_view::npos) {
      return fail(Errc::kFormat, id + ": odd image location '" + loc + "'");
    }
    const std::string bucket(l.substr(0, slash)), manifest_key(l.substr(slash + 1));
    if (!buckets.count(bucket)) {
      log("Not deleting " + loc + ": not in a bucket these records uploaded to");
      return {};
    }
    s3.bucket = bucket;
    auto text = get_object(s3, manifest_key);
    if (!text) return conf::unexpected(text.error());
    std::vector<std::string> keys;
    if (*text) {
      auto parsed = parse_manifest(**text);
      if (!parsed) {
        return fail(Errc::kFormat, loc + ": " + parsed.error().message + " (bundle left)");
      }
      for (const auto& part : parsed->manifest.parts) keys.push_back(part.filename);
    }
    keys.push_back(manifest_key);
    if (auto d = delete_objects(s3, keys); !d) return d;
    for (const auto& k : keys) report.deleted.push_back(bucket + "/" + k);
    log("Deleted the bundle of " + id + " (" + std::to_string(keys.size()) + " objects in " +
        bucket + ")");
    return {};
  };
  for (const auto& id : p.ids) {
    auto it = location.find(id);
    if (it != location.end()) {
      if (auto d = deregister_image(*http, ec2, id); !d) {
        report.errors.push_back(id + ": " + d.error().message);
        failed_ids.insert(id);
        continue;
      }
      report.deregistered.push_back(id);
      log("Deregistered " + id);
    } else {
      log(id + " is no longer known to the cloud");
    }
    if (it != location.end() && !it->second.empty()) {
      if (auto d = delete_bundle(id, it->second); !d) {
        report.errors.push_back(id + ": " + d.error().message);
        failed_ids.insert(id);
      }
    }
  }
  for (const auto& [key, r] : *records) {
    if (std::find(p.keys.begin(), p.keys.end(), key) == p.keys.end()) continue;
    if (failed_ids.count(r.emi) || failed_ids.count(r.eri) || failed_ids.count(r.eki)) continue;
    if (!r.pending_keys.empty()) {  // uploads of an interrupted install
      s3.bucket = r.bucket;
      if (auto d = delete_objects(s3, r.pending_keys); !d) {
        report.errors.push_back(key + ": " + d.error().message);
        continue;
      }
    }
    if (auto e = reg->erase(key); !e) {
      report.errors.push_back(key + ": " + e.error().message);
      continue;
    }
    report.removed_keys.push_back(key);
  }
  return report;
}

}  // namespace installer
