#include "installer/worker.h"

#include <algorithm>
#include <cctype>

namespace installer {

InstallOptions install_options_for(const WorkerOptions& w, const ImageEvent& e) {
  InstallOptions o = w.base;
  const ImageListImage& i = e.image;
  o.image_name.clear();
  o.tarball.clear();
  o.disk_image.clear();
  o.url = i.uri;
  o.expect_size = i.size;
  o.expect_sha512 = i.sha512;
  // Formats qemu-img names the same way are checked; others (ova, …) are left to its probe.
  static constexpr const char* kChecked[] = {"raw", "qcow2", "vmdk", "vdi", "vhdx", "qcow"};
  o.expect_format.clear();
  for (const char* f : kChecked) {
    if (i.format == f) o.expect_format = i.format;
  }
  o.record_key = "imagelist:" + i.identifier + "@" + site_guid(w.base);
  o.content = "sha512:" + i.sha512;
  std::string name = "imagelist-";
  for (char c : i.identifier.substr(0, 80)) {
    name.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' ? c : '_');
  }
  o.name = name;
  const std::string arch = i.arch == "amd64" ? "x86_64" : i.arch;
  if (o.architecture.empty()) {
    o.architecture = arch == "x86_64" || arch == "i386" || arch == "armhf" ? arch : "x86_64";
  }
  if (o.description.empty()) {
    o.description = i.title.substr(0, 255);
  }
  return o;
}

std::chrono::milliseconds retry_delay(const WorkerOptions& w, int attempts) {
  auto d = std::chrono::milliseconds(w.backoff);
  const auto cap = std::chrono::milliseconds(w.max_backoff);
  for (int k = 0; k < attempts && d < cap; ++k) {
    d *= 2;
  }
  return std::min(d, cap);
}

const char* work_outcome_name(WorkOutcome o) {
  switch (o) {
    case WorkOutcome::kIdle:
      return "idle";
    case WorkOutcome::kRegistered:
      return "registered";
    case WorkOutcome::kRetried:
      return "retried";
    case WorkOutcome::kParked:
      return "parked";
  }
  return "?";
}

Result<WorkResult> work_one(Queue& queue, const WorkerOptions& w, const InstallIo& io,
                            std::chrono::milliseconds wait, const InstallFn& install) {
  auto taken = queue.take(wait);
  if (!taken) {
    return conf::unexpected(taken.error());
  }
  WorkResult r;
  if (!*taken) {
    return r;
  }
  const Delivery& d = **taken;
  r.attempts = d.attempts;
  auto event = decode_event(d.body);
  if (!event) {
    r.outcome = WorkOutcome::kParked;
    r.error = event.error().message;
    if (auto p = queue.park(d, r.error); !p) {
      return conf::unexpected(p.error());
    }
    return r;
  }
  r.identifier = event->image.identifier;
  auto done = install(install_options_for(w, *event), io);
  if (done) {
    r.outcome = WorkOutcome::kRegistered;
    r.emi = done->emi;
    if (auto a = queue.ack(d); !a) {
      return conf::unexpected(a.error());  // registered; redelivery answers from the registry
    }
    return r;
  }
  r.error = done.error().message;
  r.attempts = d.attempts + 1;
  if (r.attempts >= w.max_attempts) {
    r.outcome = WorkOutcome::kParked;
    if (auto p = queue.park(d, r.error); !p) {
      return conf::unexpected(p.error());
    }
    return r;
  }
  r.outcome = WorkOutcome::kRetried;
  if (auto q = queue.retry(d, retry_delay(w, d.attempts), r.error); !q) {
    return conf::unexpected(q.error());
  }
  return r;
}

}  // namespace installer
