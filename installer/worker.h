// `tusk worker`: takes image events off the queue (queue.h, published by subscription sync) and
// registers each with install_image(): download, size + SHA-512 check, qemu-img to raw, bundle,
// upload, register, record. An event is acknowledged only after the registry says done; a
// failure is retried with exponential backoff and parked after max_attempts, never dropped.
// The decisions (install options of an event, the delay, park or retry) are pure.
#pragma once

#include <chrono>
#include <functional>
#include <string>

#include "installer/install.h"
#include "installer/queue.h"
#include "installer/subscription.h"

namespace installer {

struct WorkerOptions {
  InstallOptions base;   // cloud, credentials, bucket, registry, kernel/ramdisk defaults, guid
  int max_attempts = 5;  // deliveries before an event is parked
  std::chrono::seconds backoff{30};  // first retry delay; doubled per attempt
  std::chrono::seconds max_backoff{3600};
};

// The install of one event (pure): source url, expected size/SHA-512/format, registry key
// "imagelist:<identifier>@<site guid>", content "sha512:<hex>" (a changed checksum installs
// again), bundle name "imagelist-<identifier, sanitised>", architecture from sl:arch (x86_64
// when absent), description from dc:title.
InstallOptions install_options_for(const WorkerOptions& w, const ImageEvent& e);

// backoff * 2^attempts, capped (pure). `attempts` counts earlier failures.
std::chrono::milliseconds retry_delay(const WorkerOptions& w, int attempts);

enum class WorkOutcome { kIdle, kRegistered, kRetried, kParked };
const char* work_outcome_name(WorkOutcome o);

struct WorkResult {
  WorkOutcome outcome = WorkOutcome::kIdle;
  std::string identifier;
  std::string emi;    // kRegistered
  std::string error;  // kRetried / kParked
  int attempts = 0;   // failures so far, this one included
};

using InstallFn = std::function<Result<InstallResult>(const InstallOptions&, const InstallIo&)>;

// Takes one event (waiting up to `wait`), installs it, then acks, retries or parks it. An event
// that cannot be decoded is parked at once (retrying cannot fix it). Errors: only the queue's
// (take/ack/retry/park failing); install failures are outcomes.
Result<WorkResult> work_one(Queue& queue, const WorkerOptions& w, const InstallIo& io,
                            std::chrono::milliseconds wait, const InstallFn& install);

}  // namespace installer
