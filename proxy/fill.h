// Fills: fetching an object from its upstream into the cache in fixed chunks, while any number of
// clients read each byte as soon as it is on disk. One Fill per object, process-wide: whoever
// asks, each missing chunk is requested upstream once. A Fill belongs to the process, not to a
// client: clients that go away do not cancel it.
// Threads: a Fill's transfers run on the fetch loop (Fetch, fetch.cc); its progress is
// published under a mutex and read from any worker; waiters are woken through callbacks that
// only post to their own loop. fdatasync and index updates run on the disk thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cache/store.h"
#include "conf/clock.h"
#include "conf/config.h"
#include "proxy/body_file.h"
#include "proxy/fetch_rules.h"
#include "proxy/freshness.h"
#include "proxy/hasher.h"
#include "proxy/loop.h"
#include "proxy/metrics.h"
#include "proxy/range_mode.h"
#include "proxy/router.h"
#include "proxy/vary.h"
#include "s3/client.h"

namespace proxy {

class Fetch;
class Origin;

// Runs blocking disk work on one thread: closures, in order, and the index changes of fills,
// which it batches (group commit, issues 9 and 13): a new generation to publish (reserved by the
// fetch loop, which streams it to clients meanwhile) and chunk marks wait up to kBatchWindow,
// then cost one syncfs (or an fdatasync per body file) and ONE index commit for all of them.
// Closures (a fill's end) run in order, each after the changes queued before it, which then wait
// at most kEndWindow more: fills that end close together share a sync and a commit, and a
// fill's "finished" sees its marks. drain() applies everything.
class DiskQueue {
 public:
  struct Mark {
    BodyFilePtr fd;  // the body file written (synced before the mark)
    std::string key;
    std::uint64_t generation = 0;
    std::uint64_t chunk = 0;
  };
  DiskQueue(cache::Store& store, Metrics& metrics);
  ~DiskQueue();  // runs everything queued, then joins
  void post(std::function<void()> fn);
  void mark(Mark m);
  // A generation from cache::Store::reserve, published with the next batch after its file
  // (`fd`) is synced. Marks of it queued later apply after it.
  void publish(BodyFilePtr fd, cache::Meta meta);
  void drain();  // blocks until everything queued so far has run (held marks applied)
  static constexpr std::chrono::milliseconds kBatchWindow{200};
  static constexpr std::chrono::milliseconds kEndWindow{10};
  static constexpr std::size_t kMaxBatch = 1024;
  static constexpr std::size_t kSyncfsFiles = 4;  // files in a batch from which one syncfs

 private:
  struct Item {
    std::function<void()> fn;  // empty: a mark or a publish
    Mark mark;                 // a publish: fd, key and generation of `publish`
    std::optional<cache::Meta> publish;
  };
  void run();
  void apply(std::vector<Item>& changes);

  cache::Store& store_;
  Metrics& metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable idle_cv_;
  std::deque<Item> queue_;
  bool busy_ = false;   // running items, or holding marks not yet applied
  bool flush_ = false;  // drain(): apply held marks now
  bool stop_ = false;
  std::thread thread_;
};

// What the origin said about the object, fixed once known.
struct ObjectHead {
  std::uint64_t size = 0;
  std::string etag;
  std::string last_modified;
  std::string content_type;
  Headers replay;  // end-to-end headers to send to clients
  Freshness freshness;
  VarySpec vary;        // what the answer varies on
  std::string variant;  // when it varies: the variant key of the fill's first client
  bool stored = false;           // false: spooled (PASS)
  std::uint64_t generation = 0;  // of the cache entry, when stored
};

class Fill {
 public:
  enum class Phase { kStarting, kStreaming, kDone, kFailed };
  struct Snapshot {
    Phase phase = Phase::kStarting;
    std::shared_ptr<const ObjectHead> head;  // set from kStreaming on
    BodyFilePtr body;                        // read-only fd, set from kStreaming on
    bool not_modified = false;               // kDone after a 304: the cached entry is current
    std::optional<s3::Error> error;          // kFailed
    bool disk_error = false;                 // kFailed because of the cache disk (503, not 502)
  };
  Snapshot snapshot() const;

  // Bytes readable at [pos, pos + n) without a gap; 0 when the byte at pos is not there yet.
  std::uint64_t available_from(std::uint64_t pos) const;

  // Calls `wake` once the phase left kStarting. False (nothing registered) when it already has.
  bool wait_head(std::function<void()> wake);
  // Calls `wake` once the byte at `pos` is readable or the fill ended; also makes its chunk
  // urgent for the fetcher. False (nothing registered) when that is already the case.
  // Wake-ups of a client reading along behind the fill are coalesced: it is woken once
  // kWakeBytes are readable, its chunk is complete, or kWakeDelay passed since bytes became
  // readable (a flush on the fetch loop), so fifty clients of one cold object cost a wake-up
  // each per 256 KiB instead of one per network read. `eager` (a client that has sent no body
  // byte yet) is woken by the first byte: time to first byte is never delayed.
  bool wait(std::uint64_t pos, std::function<void()> wake, bool eager = false);
  static constexpr std::uint64_t kWakeBytes = 256u << 10;
  static constexpr int kWakeDelayMs = 5;
  // A client will read [first, last]: those chunks are fetched before any prefetching.
  void want(std::uint64_t first, std::uint64_t last);
  // Calls `wake` once this fill left the table (an ended fill stays until the disk thread has
  // marked its chunks; until then acquire() hands it out). False when it already has.
  bool wait_retired(std::function<void()> wake);
  bool retired() const {
    std::lock_guard lock(mu_);
    return retired_;
  }

  const std::string& cache_key() const { return cache_key_; }
  // The current body file. It changes at most once: when the disk fails mid-fill, the fill moves
  // to memory (Fetch::spill_to_memory) and readers must read the rest from there.
  BodyFilePtr body() const;

 private:
  friend class FillTable;
  friend class Fetch;
  friend class FillTestPeer;  // tests/proxy/fill_wake_test.cc drives the fetch side by hand
  explicit Fill(std::string cache_key) : cache_key_(std::move(cache_key)) {}

  // Fetch-side updates. Each wakes the waiters it satisfies (outside the lock).
  // `hold_tail`: the object's last byte stays unreadable until release_tail() (its body is
  // checked against the ETag's MD5 first: no client gets a complete response of bad bytes).
  void set_head(std::shared_ptr<const ObjectHead> head, BodyFilePtr body, std::uint64_t chunk,
                std::vector<std::uint32_t> filled, bool hold_tail = false);
  void release_tail();
  // True when a waiter has bytes to read but was left for coalescing: call flush() within
  // kWakeDelayMs.
  bool progress(std::uint64_t chunk, std::uint32_t filled);
  void flush();  // wakes every waiter that has something to read
  // The disk failed: the body continues in `body` (holding every byte filled so far), uncached.
  void respool(std::shared_ptr<const ObjectHead> head, BodyFilePtr body);
  void end(Phase phase, bool not_modified, std::optional<s3::Error> error, bool disk_error = false);
  void retire();
  std::uint64_t available_locked(std::uint64_t pos) const;
  // Wakes the waiters that are due (with `force`: every one with a byte to read). Returns
  // whether a waiter with bytes to read was left waiting.
  bool wake_ready(std::unique_lock<std::mutex>& lock, bool force = true);

  const std::string cache_key_;
  cache::Pin pin_;  // the object is not evicted while it fills or a client reads along
  mutable std::mutex mu_;
  Snapshot snap_;
  std::uint64_t chunk_size_ = 0;
  std::vector<std::uint32_t> filled_;  // per chunk: bytes [0, filled) of the chunk are on disk
  std::vector<std::function<void()>> head_waiters_;
  struct Waiter {
    std::uint64_t pos;
    std::function<void()> wake;
    bool eager;
  };
  std::vector<Waiter> waiters_;
  // Requests for the runner, drained on the fetch loop: (first chunk, last chunk, urgent).
  std::vector<std::tuple<std::uint64_t, std::uint64_t, bool>> wants_;
  std::function<void()> poke_;  // asks the runner (on the fetch loop) to look at wants_
  bool retired_ = false;
  bool hold_tail_ = false;              // the last byte is held back until the body is verified
  std::atomic<bool> abandoned_{false};  // purged: its fetch must not publish anything more
  std::vector<std::function<void()>> retire_waiters_;
};

using FillPtr = std::shared_ptr<Fill>;

// What a fill starts from, when the cache holds something of the object.
struct FillSeed {
  // A complete but stale entry: revalidate it with a conditional GET.
  std::optional<cache::Meta> stale;
  // A fresh entry with missing chunks: fetch only those, into the same generation.
  std::optional<cache::Meta> partial;
  // Re-read the index when starting a fill (see FillTable::acquire). Off only when the caller
  // found a complete record it could not open and wants a new generation regardless.
  bool recheck = true;
  // Fill from the upstream even when a peer owns the object: the request came from a peer
  // (kPeerHeader), so going to a peer again could loop.
  bool direct = false;
  // The asking client's headers of the upstream's forward_headers, sent with every request of
  // the fill (a coalesced fill carries its first client's).
  Headers forward;
  // Vary (proxy/vary.h): the object's key without a variant, and the names the fill's key was
  // built with (nullopt: the object was not known to vary, the fill's key is vary_base).
  std::string vary_base;
  std::optional<std::vector<std::string>> vary_names;
  // The asking client's request header fields: the variant it selects, when the answer varies.
  Headers request;
};

class Peers;

class FillTable {
 public:
  struct Options {
    std::string spool_dir;
    int parallel = 4;
    std::uint64_t memory_spill = 1ull << 30;  // largest object a failing disk streams from memory
  };
  // `origins` maps upstream names to where their requests go, all running on `fetch`. `clock`
  // is the process's one wall clock (conf/clock.h).
  FillTable(EventLoop& fetch, cache::Store& store, Metrics& metrics,
            std::map<std::string, std::shared_ptr<Origin>> origins, Options options,
            conf::Clock clock);
  ~FillTable();

  // Returns the object's in-flight fill, or starts one from `seed`. `first_byte` is where the
  // asking client starts reading (the first chunk fetched). `joined` tells which. Any thread.
  //
  // The caller's seed was read from the index before this call; a fill may have ended (and
  // marked its chunks) since. So when no fill is in flight, the record is read again under the
  // table's lock, where it is final: a fill leaves the table only after its last mark. A
  // record that is now complete and fresh returns nullptr (look again: it is a hit); otherwise
  // the new fill starts from the record as it is now, never refetching chunks already there.
  FillPtr acquire(const std::string& cache_key, const Target& target, FillSeed seed,
                  std::uint64_t first_byte, bool* joined);

  std::size_t active() const;
  std::vector<std::string> keys() const;  // of the fills in flight
  FillPtr in_flight(const std::string& cache_key) const;  // nullptr: none
  void drain_disk() { disk_.drain(); }

  // Purge: the object's fill in flight, if any, leaves the table at once (the next request
  // starts a new one) and is abandoned on the fetch loop: its transfers are cancelled, the
  // generation it wrote is removed, clients following it are cut. True when there was one.
  bool abandon(const std::string& cache_key);

  // Live reload. Origins for the upstream names given replace the current ones (other names
  // keep theirs, so a fill started on the previous configuration still finds its upstream);
  // fetches already running keep the origin they started with. Runs on the fetch loop; blocks
  // the caller until done unless called there.
  using Origins = std::map<std::string, std::shared_ptr<Origin>>;
  void set_origins(Origins origins);
  void set_parallel(int parallel) { parallel_.store(std::max(1, parallel)); }
  // The fleet this edge belongs to (proxy/peers.h): fills of objects another member owns ask it
  // first. Before the fetch loop starts; fixed for the process (peers need a restart).
  void set_peers(std::unique_ptr<Peers> peers);

  // The bytes the fills' integrity digests may have in memory (copies queued for the hasher
  // and pieces held ahead of a digest's frontier); beyond it they are read back from the page
  // cache (cache::OrderedDigest).
  static constexpr std::int64_t kDigestBudget = 64ll << 20;
  RangeMode range_mode(const std::string& upstream) const;
  // Which objects vary on which request headers (learnt by fetches, read by requests).
  VaryIndex& vary() { return vary_; }

 private:
  friend class Fetch;
  void finished(const std::string& cache_key, Fill* fill);
  void set_range_mode(const std::string& upstream, RangeMode mode);

  EventLoop& fetch_;
  cache::Store& store_;
  Metrics& metrics_;
  std::map<std::string, std::shared_ptr<Origin>> origins_;  // touched on the fetch loop only
  std::unique_ptr<Peers> peers_;                            // null: no fleet
  std::string spool_dir_;
  std::atomic<int> parallel_;

  std::uint64_t memory_spill_;
  conf::Clock clock_;
  mutable std::mutex mu_;
  std::map<std::string, FillPtr> fills_;
  RangeModes modes_;  // under mu_
  VaryIndex vary_;
  // Fetches keep themselves alive here until they end; touched only on the fetch thread.
  std::set<std::shared_ptr<Fetch>> fetches_;
  Hasher hasher_{kDigestBudget};  // the fills' integrity digests (proxy/hasher.h)
  // Last: destroyed first, its thread runs what is still queued (fills leaving the table)
  // while the table's members are all alive.
  DiskQueue disk_;
};

// The cache key of an object: which upstream endpoint, bucket and key it comes from.
std::string make_cache_key(const conf::Upstream& upstream, const std::string& bucket,
                           const std::string& key,
                           const std::vector<std::pair<std::string, std::string>>& query = {});

}  // namespace proxy
