// The fetch side of a fill: one Fetch per Fill, on the fetch loop, asks the upstream for the
// object and writes its bytes into the body file, as named steps driven by one loop (like
// Request::drive, after Varnish's cache_fetch/ATS's decide-do): a cold miss, a range on a
// cold object and a revalidation each read top to bottom in proxy/fetch.cc. The rules it
// applies to the upstream's answers are pure (proxy/fetch_rules.h).
// Threads: everything here runs on the fetch loop. Progress is published through the Fill.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cache/digest.h"
#include "conf/config.h"
#include "proxy/fetch_rules.h"
#include "proxy/fill.h"
#include "s3/client.h"

struct event;

namespace proxy {

// Where a fetch sends its requests: an upstream's s3::Client (client_origin), or a script in
// unit tests, so the fetch machine runs without sockets.
class Origin {
 public:
  // One request in flight. Destroying it cancels it; no callback runs after that.
  class Call {
   public:
    virtual ~Call() = default;
    virtual void cancel() = 0;  // no callback runs after it; safe inside a callback
  };
  virtual ~Origin() = default;
  // Callbacks run later on the fetch loop, never inside start().
  virtual std::unique_ptr<Call> start(s3::Request req, s3::Callbacks cb) = 0;
  virtual int retries() const = 0;
  // False when answers may come from something other than the upstream (a peer edge): the
  // fetch then learns nothing about the upstream's range handling from them.
  virtual bool learns_range_mode() const { return true; }
};
class Metrics;
// Destroy it on the fetch loop (its client's transfers run there). With `metrics`, requests,
// bytes and errors are counted as the upstream's (tusk_upstream_*{upstream=name}); peers' clients
// pass none (proxy/peers.h counts theirs).
std::shared_ptr<Origin> client_origin(std::unique_ptr<s3::Client> client,
                                      Metrics* metrics = nullptr);

struct Segment;

// A fill's own error (a refused answer, a disk failure), in the error type of upstream errors.
inline s3::Error local_error(std::string message) {
  return s3::Error{s3::Errc::kProtocol, 0, "", std::move(message)};
}

class Fetch : public std::enable_shared_from_this<Fetch> {
 public:
  Fetch(FillTable& table, FillPtr fill, const Target& target, FillSeed seed,
        std::uint64_t first_byte);
  ~Fetch();
  // On the fetch loop. The fetch keeps `origin` (and so its upstream's configuration) to its end.
  void start(std::shared_ptr<Origin> origin);
  // Purged (FillTable::abandon): stop, leave nothing behind. On the fetch loop.
  void abandon();

  // The steps of a fetch. Each returns Continue (go on with step_), Park (requests are in
  // flight; their answers drive again) or Done.
  enum class Step {
    kStart,       // choose how to begin: partial entry, stale entry, or a cold object
    kRevalidate,  // conditional GET of a stale entry: 304 -> kRefresh, 200 -> kWhole
    kProbeRange,  // ranged GET of the first chunk a client wants: it also gives the head
    kProbeHead,   // HEAD: the size first (Walrus, suffix ranges, a probe past the end)
    kChunks,      // ranged GETs of missing chunks, urgent ones first, fill.parallel at a time
    kWhole,       // one sequential GET of the whole object (the upstream ignores Range)
    kRefresh,     // the 304's headers merged into the stored entry
    kVerify,      // every byte written: wait for the integrity verdict (hasher thread)
    kDone,
  };
  Step step() const { return step_; }
  const FillPtr& fill() const { return fill_; }

 private:
  enum class Next { kContinue, kPark, kDone };
  enum : std::uint8_t { kMissing = 0, kInFlight = 1, kDone = 2 };

  void drive();
  Next start_step();
  Next revalidate();
  Next probe_range();
  Next probe_head();
  Next chunks();
  Next whole();
  Next refresh();

  // Heads and body files.
  bool adopt_partial(const cache::Meta& m);
  bool create_head(const s3::ResponseHead& h, std::uint64_t size);
  bool vary_allows_storing(const ObjectHead& obj);
  void install_head(std::shared_ptr<ObjectHead> obj, BodyFilePtr body, const cache::Meta* meta);
  bool open_uncached(ObjectHead& obj, int* wfd);
  bool write_at(const char* p, std::uint64_t n, std::uint64_t off);
  bool spill_to_memory(int err);
  void queue_mark(std::uint64_t c);
  // Integrity (cache/digest.h, on the hasher thread): bytes are hashed as they are written;
  // when the last chunk is complete the digest is compared with the ETag's MD5 (Step::kVerify)
  // before that chunk is marked, so an object is never complete in the index unverified.
  bool start_digest();  // true when this fill checks its body (and holds back the last byte)
  void digest_written(std::uint64_t off, const char* p, std::uint64_t n);
  void chunk_written(std::uint64_t c);  // chunk c has all its bytes: mark it (or keep it)
  Next verify();

  // Requests and their answers.
  // A new request; sent at once unless it must claim chunks first (kRange, kResume).
  Segment* launch(Ask ask, std::uint64_t first, std::uint64_t end, bool conditional = false);
  Segment* launch_chunk(std::uint64_t c);
  void send(Segment* seg);
  bool claim(Segment* seg, std::uint64_t first_chunk, std::uint64_t end_chunk);
  void drop(Segment* seg);
  void drop_all();
  bool on_head(Segment* seg, const s3::ResponseHead& h);
  bool on_data(Segment* seg, std::span<const char> data);
  void on_done(Segment* seg, conf::Result<void, s3::Error> r);
  void retry(Segment* seg, const s3::Error& e);
  void learn(Ask ask, Verdict v);
  void drain_wants();
  void arm_flush();
  std::uint64_t chunk_len(std::uint64_t c) const;
  bool any_missing() const;

  void fail(s3::Error e);
  void fail_disk(std::string message);  // the cache disk, not the upstream, failed
  void fail_with(s3::Error e, bool disk);
  void end(Fill::Phase phase, bool not_modified, std::optional<s3::Error> error,
           bool leave_after_disk);

  FillTable& table_;
  FillPtr fill_;
  conf::Route route_;
  std::string upstream_;
  std::string bucket_;
  std::string key_;
  std::vector<std::pair<std::string, std::string>> query_;  // `query: key` routes
  std::string object_;  // "bucket/key" for log lines: the key is the client's, so escaped
  std::shared_ptr<Origin> origin_;
  FillSeed seed_;
  std::uint64_t first_byte_;
  Step step_ = Step::kStart;
  bool ended_ = false;
  bool spilled_ = false;         // the body moved to memory after a disk error
  bool failed_on_disk_ = false;  // the fill failed because of the cache disk

  // The key the fill's object is stored under: the fill's, except for the first varying answer
  // of an object, which is stored under the variant its first client selects (proxy/vary.h),
  // pinned like the fill's own key while the fill lasts.
  std::string store_key_;
  cache::Pin store_pin_;
  std::shared_ptr<ObjectHead> head_;
  BodyFilePtr write_fd_;
  std::uint64_t generation_ = 0;
  std::uint64_t cs_;  // chunk size
  std::uint64_t chunks_ = 0;
  std::vector<std::uint8_t> state_;
  std::vector<std::uint32_t> filled_;
  std::vector<Segment*> owner_;
  std::deque<std::uint64_t> urgent_;
  std::set<std::uint64_t> wanted_;
  std::uint64_t prefetch_cursor_ = 0;
  std::list<std::unique_ptr<Segment>> segments_;
  s3::HeaderList not_modified_headers_;
  std::string expect_md5_;  // the ETag's MD5; "" when unverifiable
  // The digest lives on the hasher thread once created (its closures share it).
  std::shared_ptr<cache::OrderedDigest> digest_;
  std::uint64_t prefix_chunks_ = 0;  // chunks [0, prefix_chunks_) are all written
  std::uint64_t digest_end_ = 0;     // the digest was told it may go this far
  bool verifying_ = false;           // every byte written; final_chunk_ waits for the verdict
  std::uint64_t final_chunk_ = 0;
  struct DigestVerdict {
    bool read_ok = false;
    std::string md5;
    std::uint64_t reread = 0;
  };
  std::optional<DigestVerdict> verdict_;

  // Coalesced wake-ups (Fill::wait): clients left waiting with bytes to read are woken by a
  // one-shot timer at most kWakeDelayMs later.
  event* flush_timer_ = nullptr;
  std::unique_ptr<std::weak_ptr<Fetch>> flush_ctx_;
};

}  // namespace proxy
