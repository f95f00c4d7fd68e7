// `tusk images remove --guid G | --all`: ImageProxy's documented way out. Deregisters what the
// registry records and deletes the bundles (parts and manifest) those images were registered
// from, then forgets the records. An image still recorded by a record that stays (a kernel two
// installs share) is kept. The plan is a pure function; remove_images() does the I/O.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "installer/install.h"
#include "installer/registry.h"

namespace installer {

struct RemovalPlan {
  std::vector<std::string> keys;  // registry records to remove
  // Image ids to deregister: those of the removed records that no remaining record names.
  std::vector<std::string> ids;
  std::vector<std::string> kept;  // ids of removed records another record still names
};

// Records whose guid is `guid` (or every record with `all`); in registry order (pure).
RemovalPlan plan_removal(const std::vector<std::pair<std::string, InstallRecord>>& records,
                         const std::string& guid, bool all);

struct RemoveReport {
  std::vector<std::string> deregistered;
  std::vector<std::string> deleted;  // "bucket/key" of every object deleted
  std::vector<std::string> removed_keys;
  std::vector<std::string> errors;  // per record or image; their records stay
};

// Needs the cloud settings of `opt` (credentials, signatures, registry). A record whose install
// is running in a live process is left (an error in the report). A record is forgotten only
// when all its images are deregistered and their objects deleted, so a failed removal can be
// run again. Errors: only when the registry cannot be opened or listed.
Result<RemoveReport> remove_images(const InstallOptions& opt, const std::string& guid, bool all,
                                   const LogFn& log);

}  // namespace installer
