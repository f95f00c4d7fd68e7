// Image-list subscriptions (vmcatcher's job, issue 12): which endorsed lists this site follows,
// and for each what was last enqueued, kept in <registry>/subscriptions.json beside the registry.
// sync() fetches every list, verifies it (imagelist.h), and publishes one event per new or
// changed image on the work queue (queue.h) for `tusk worker`. Tricky: the stored state moves
// only after an event is durably published, so a crash mid-sync enqueues again rather than
// never; the file holds access tokens (mode 0600, written atomically, never printed).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "installer/error.h"
#include "installer/imagelist.h"
#include "installer/queue.h"

namespace installer {

struct Subscription {
  std::string url;          // where the signed list is fetched (http/https)
  std::string token;        // sent as "Authorization: Bearer <token>" ("" = none); secret
  std::string endorser_dn;  // the signer must be this DN ("" = any signer the CA dir trusts)
  std::string ca_dir;       // trust anchors for this list
  std::int64_t added = 0;   // Unix seconds
  std::int64_t synced = 0;  // last successful sync ("" list never seen: 0)
  std::string list_identifier, list_version;
  std::int64_t list_expires = 0;
  std::string last_error;                    // of the last sync ("" when it succeeded)
  std::map<std::string, ImageState> images;  // identifier → what was last enqueued
};

// The subscriptions file, held under an exclusive lock (<registry>/subscriptions.lock) for the
// store's lifetime, so `subscribe add` and `subscribe sync` in two shells do not lose updates.
class SubscriptionStore {
 public:
  // Reads <registry_dir>/subscriptions.json (absent = none). Errors: unreadable or not the
  // versioned JSON this writes (kFormat, naming the file: nothing is overwritten), lock or
  // folder failure (kIo).
  static Result<SubscriptionStore> open(const std::string& registry_dir);
  SubscriptionStore(SubscriptionStore&&) noexcept;
  SubscriptionStore& operator=(SubscriptionStore&&) noexcept;
  ~SubscriptionStore();

  std::vector<Subscription>& all() { return subs_; }
  Subscription* find(const std::string& url);
  // Writes the file atomically (temporary file, fsync, rename, fsync of the folder), mode 0600.
  Result<void> save();
  const std::string& path() const { return path_; }

 private:
  SubscriptionStore() = default;
  std::string path_;
  int lock_fd_ = -1;
  std::vector<Subscription> subs_;
};

// Encoding of the file (pure; exposed for tests). decode errors: kFormat.
std::string encode_subscriptions(const std::vector<Subscription>& subs);
Result<std::vector<Subscription>> decode_subscriptions(std::string_view text);

// One event on the queue: an image to register, and where it came from.
struct ImageEvent {
  std::string subscription;  // list URL
  std::string list;          // the list's dc:identifier
  std::string kind;          // "new" | "changed"
  std::int64_t enqueued = 0;
  ImageListImage image;
};
std::string encode_event(const ImageEvent& e);
// Errors (kFormat): not JSON, a version other than 1, a required field missing or invalid (the
// same rules as the image list: identifier, uri, size, sha512).
Result<ImageEvent> decode_event(std::string_view body);

// How one list is fetched: GET `url` with the headers, any status returned, body bounded.
using FetchFn = std::function<Result<std::pair<int, std::string>>(
    const std::string& url, const std::vector<std::pair<std::string, std::string>>& headers)>;

struct SyncReport {
  std::string url;
  std::vector<std::pair<std::string, std::string>> enqueued;  // (identifier, "new"|"changed")
  std::vector<std::string> removed;                           // gone from the list
  std::string error;                                          // "" when the list was accepted
};

// For each subscription: fetch, verify against its CA dir and endorser at `now`, diff against
// what was enqueued before, publish an event per new or changed image, and record each as it is
// published (saving the store after every subscription). A refused list (unsigned, tampered,
// expired, wrong signer, unreachable) enqueues nothing and keeps the previous state; its error
// is in the report and in the store's last_error. Errors: only a failure to save the store or
// to publish (then the sync stops: what was published is recorded).
Result<std::vector<SyncReport>> sync_subscriptions(SubscriptionStore& store, Queue& queue,
                                                   const FetchFn& fetch, std::int64_t now);

}  // namespace installer
