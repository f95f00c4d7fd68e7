// Fill: the shared progress of one object's fill (what is on disk, who waits for what), the
// disk thread that makes chunks durable, and the table of fills in flight. The fetch side,
// which talks to the upstream, is proxy/fetch.cc.
#include "proxy/fill.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "proxy/access.h"
#include "proxy/decide.h"
#include "proxy/fetch.h"
#include "proxy/peers.h"
#include "s3/printable.h"

namespace proxy {

// ---------------------------------------------------------------- DiskQueue

DiskQueue::DiskQueue(cache::Store& store, Metrics& metrics)
    : store_(store), metrics_(metrics), thread_([this] { run(); }) {}

DiskQueue::~DiskQueue() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void DiskQueue::post(std::function<void()> fn) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(Item{std::move(fn), {}, std::nullopt});
  }
  cv_.notify_one();
}

void DiskQueue::mark(Mark m) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(Item{nullptr, std::move(m), std::nullopt});
  }
  cv_.notify_one();
}

void DiskQueue::publish(BodyFilePtr fd, cache::Meta meta) {
  {
    std::lock_guard lock(mu_);
    Mark m{std::move(fd), meta.key, meta.generation, 0};
    queue_.push_back(Item{nullptr, std::move(m), std::move(meta)});
  }
  cv_.notify_one();
}

void DiskQueue::drain() {
  std::unique_lock lock(mu_);
  flush_ = true;
  cv_.notify_one();
  idle_cv_.wait(lock, [this] { return queue_.empty() && !busy_; });
}

// Index changes wait up to kBatchWindow (or kMaxBatch of them) to be applied together. A
// closure waits for the changes queued before it; when there are any, it waits at most
// kEndWindow more, so fills that end close together share one sync and one commit (at 600
// small misses a second, about six) and a finished fill leaves the table within milliseconds.
void DiskQueue::run() {
  using Clock = std::chrono::steady_clock;
  std::vector<Item> pending;
  std::vector<std::function<void()>> waiting;  // closures queued behind `pending`
  Clock::time_point due;
  Clock::time_point end_due;
  std::unique_lock lock(mu_);
  while (true) {
    if (pending.empty()) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) {
        return;  // stop_ and nothing left
      }
    } else {
      const Clock::time_point wake = waiting.empty() ? due : std::min(due, end_due);
      cv_.wait_until(lock, wake, [this] { return stop_ || flush_ || !queue_.empty(); });
    }
    std::deque<Item> items;
    items.swap(queue_);
    const bool flush = stop_ || flush_;
    flush_ = false;
    busy_ = true;
    lock.unlock();
    std::vector<std::function<void()>> now_run;
    for (Item& item : items) {
      if (item.fn) {
        if (pending.empty()) {
          now_run.push_back(std::move(item.fn));  // nothing before it to wait for
        } else {
          if (waiting.empty()) {
            end_due = Clock::now() + kEndWindow;
          }
          waiting.push_back(std::move(item.fn));
        }
        continue;
      }
      if (pending.empty()) {
        due = Clock::now() + kBatchWindow;
      }
      pending.push_back(std::move(item));
    }
    for (auto& fn : now_run) {
      fn();
    }
    const Clock::time_point now = Clock::now();
    if (flush || pending.size() >= kMaxBatch || now >= due ||
        (!waiting.empty() && now >= end_due)) {
      apply(pending);
      for (auto& fn : waiting) {
        fn();
      }
      waiting.clear();
    }
    items.clear();  // releases body fds off the lock
    lock.lock();
    busy_ = !pending.empty() || !waiting.empty();
    if (queue_.empty() && !busy_) {
      idle_cv_.notify_all();
    }
  }
}

// Makes the batch's files durable, then one index commit (Store::commit) for the publishes and
// the marks whose bytes are durable. A batch that publishes new files, or has kSyncfsFiles files
// or more, costs one syncfs: on ext4 every fsync is a device flush of its own (and, without a
// journal, synchronous inode writes), so 30 small fills cost 30 fdatasyncs and 30 to 90
// directory fsyncs; syncfs writes all of it and flushes once, names included. It also writes
// other dirty data of the file system (a cache dir should have its own). Marks of a few files
// alone cost one fdatasync each. When syncfs reports an error, the files are synced one by one
// to learn which (each fd still sees its own writeback error), and the store syncs names.
void DiskQueue::apply(std::vector<Item>& changes) {
  if (changes.empty()) {
    return;
  }
  std::vector<const BodyFile*> files;
  bool publishes = false;
  for (const Item& c : changes) {
    publishes = publishes || c.publish.has_value();
    if (std::find(files.begin(), files.end(), c.mark.fd.get()) == files.end()) {
      files.push_back(c.mark.fd.get());
    }
  }
  bool whole_fs = false;
  if (publishes || files.size() >= kSyncfsFiles) {
    metrics_.disk_sync();
    whole_fs = ::syncfs(files.front()->fd()) == 0;
    if (!whole_fs) {
      spdlog::warn("syncfs of the cache file system failed ({}); syncing files one by one",
                   std::strerror(errno));
    }
  }
  std::vector<const BodyFile*> failed;
  if (!whole_fs) {
    for (const BodyFile* f : files) {
      metrics_.disk_sync();
      if (::fdatasync(f->fd()) != 0) {
        const int err = errno;
        metrics_.cache_write_error(err == EIO ? "eio" : err == ENOSPC ? "enospc" : "other");
        spdlog::error("fdatasync of a cache body failed: {}", std::strerror(err));
        failed.push_back(f);
      }
    }
  }
  std::vector<cache::Meta> publish;
  std::vector<cache::Store::ChunkMark> batch;
  for (Item& c : changes) {
    const Mark& m = c.mark;
    if (std::find(failed.begin(), failed.end(), m.fd.get()) != failed.end()) {
      // Never claim bytes not on disk: its chunks stay unmarked, a new generation unpublished.
      if (c.publish) {
        store_.abandon(m.key, m.generation);
      }
      continue;
    }
    if (c.publish) {
      publish.push_back(std::move(*c.publish));
      continue;
    }
    // Consecutive chunks of one generation become one run.
    if (!batch.empty() && batch.back().key == m.key && batch.back().generation == m.generation &&
        batch.back().first + batch.back().count == m.chunk) {
      ++batch.back().count;
    } else {
      batch.push_back(cache::Store::ChunkMark{m.key, m.generation, m.chunk, 1});
    }
  }
  changes.clear();
  const cache::Store::Committed done = store_.commit(publish, batch, whole_fs);
  for (const auto& r : done.published) {
    if (!r && r.error().code != cache::Errc::kStale) {
      spdlog::error("publishing a cache entry failed: {}", r.error().message);
    }
  }
  for (const auto& r : done.marked) {
    if (!r && r.error().code != cache::Errc::kStale && r.error().code != cache::Errc::kNotFound) {
      spdlog::error("marking chunks durable failed: {}", r.error().message);
    }
  }
}

// ---------------------------------------------------------------- Fill

Fill::Snapshot Fill::snapshot() const {
  std::lock_guard lock(mu_);
  return snap_;
}

std::uint64_t Fill::available_locked(std::uint64_t pos) const {
  if (!snap_.head || chunk_size_ == 0) {
    return 0;
  }
  const std::uint64_t size = snap_.head->size;
  std::uint64_t p = pos;
  while (p < size) {
    std::uint64_t c = p / chunk_size_;
    std::uint64_t in = p % chunk_size_;
    std::uint64_t have = filled_[c];
    if (have <= in) {
      break;
    }
    p = c * chunk_size_ + have;
    std::uint64_t chunk_len = std::min(chunk_size_, size - c * chunk_size_);
    if (have < chunk_len) {
      break;  // the rest of this chunk is still on its way
    }
  }
  if (hold_tail_ && p == size && p > pos) {
    --p;  // the last byte waits for the integrity check (release_tail)
  }
  return p - pos;
}

std::uint64_t Fill::available_from(std::uint64_t pos) const {
  std::lock_guard lock(mu_);
  return available_locked(pos);
}

bool Fill::wait_head(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  if (snap_.phase != Phase::kStarting) {
    return false;
  }
  head_waiters_.push_back(std::move(wake));
  return true;
}

bool Fill::wait(std::uint64_t pos, std::function<void()> wake, bool eager) {
  std::function<void()> poke;
  {
    std::lock_guard lock(mu_);
    bool ended = snap_.phase == Phase::kDone || snap_.phase == Phase::kFailed;
    if (ended || available_locked(pos) > 0) {
      return false;
    }
    waiters_.push_back(Waiter{pos, std::move(wake), eager});
    if (chunk_size_ > 0) {
      wants_.emplace_back(pos / chunk_size_, pos / chunk_size_, true);
      poke = poke_;
    }
  }
  if (poke) {
    poke();
  }
  return true;
}

void Fill::want(std::uint64_t first, std::uint64_t last) {
  std::function<void()> poke;
  {
    std::lock_guard lock(mu_);
    if (chunk_size_ == 0 || snap_.phase != Phase::kStreaming) {
      return;
    }
    wants_.emplace_back(first / chunk_size_, last / chunk_size_, false);
    poke = poke_;
  }
  if (poke) {
    poke();
  }
}

bool Fill::wake_ready(std::unique_lock<std::mutex>& lock, bool force) {
  std::vector<std::function<void()>> wake;
  bool ended = snap_.phase == Phase::kDone || snap_.phase == Phase::kFailed;
  if (snap_.phase != Phase::kStarting) {
    for (auto& w : head_waiters_) {
      wake.push_back(std::move(w));
    }
    head_waiters_.clear();
  }
  bool deferred = false;
  auto it = std::partition(waiters_.begin(), waiters_.end(), [&](const Waiter& w) {
    if (ended) {
      return false;
    }
    const std::uint64_t n = available_locked(w.pos);
    if (n == 0) {
      return true;
    }
    if (force || w.eager || n >= kWakeBytes) {
      return false;
    }
    // Its chunk is complete (what is readable ends at a chunk boundary or the object's end):
    // nothing more will arrive for it from this transfer, so do not make it wait.
    const std::uint64_t end = w.pos + n;
    if (end % chunk_size_ == 0 || end == snap_.head->size) {
      return false;
    }
    deferred = true;
    return true;
  });
  for (auto w = it; w != waiters_.end(); ++w) {
    wake.push_back(std::move(w->wake));
  }
  waiters_.erase(it, waiters_.end());
  lock.unlock();
  for (auto& fn : wake) {
    fn();
  }
  return deferred;
}

void Fill::set_head(std::shared_ptr<const ObjectHead> head, BodyFilePtr body, std::uint64_t chunk,
                    std::vector<std::uint32_t> filled, bool hold_tail) {
  std::unique_lock lock(mu_);
  hold_tail_ = hold_tail;
  snap_.phase = Phase::kStreaming;
  snap_.head = std::move(head);
  snap_.body = std::move(body);
  chunk_size_ = chunk;
  filled_ = std::move(filled);
  wake_ready(lock);
}

void Fill::release_tail() {
  std::unique_lock lock(mu_);
  hold_tail_ = false;
  wake_ready(lock);
}

bool Fill::progress(std::uint64_t chunk, std::uint32_t filled) {
  std::unique_lock lock(mu_);
  filled_[chunk] = filled;
  if (waiters_.empty()) {
    return false;
  }
  return wake_ready(lock, /*force=*/false);
}

void Fill::flush() {
  std::unique_lock lock(mu_);
  if (!waiters_.empty() || !head_waiters_.empty()) {
    wake_ready(lock);
  }
}

bool Fill::wait_retired(std::function<void()> wake) {
  std::lock_guard lock(mu_);
  if (retired_) {
    return false;
  }
  retire_waiters_.push_back(std::move(wake));
  return true;
}

void Fill::retire() {
  std::vector<std::function<void()>> wake;
  {
    std::lock_guard lock(mu_);
    retired_ = true;
    wake.swap(retire_waiters_);
  }
  for (auto& fn : wake) {
    fn();
  }
}

BodyFilePtr Fill::body() const {
  std::lock_guard lock(mu_);
  return snap_.body;
}

void Fill::respool(std::shared_ptr<const ObjectHead> head, BodyFilePtr body) {
  std::unique_lock lock(mu_);
  snap_.head = std::move(head);
  snap_.body = std::move(body);
  if (hold_tail_) {
    hold_tail_ = false;  // uncached from memory: not checked
    wake_ready(lock);
  }
}

void Fill::end(Phase phase, bool not_modified, std::optional<s3::Error> error, bool disk_error) {
  std::unique_lock lock(mu_);
  if (phase == Phase::kDone) {
    hold_tail_ = false;
  }
  snap_.phase = phase;
  snap_.not_modified = not_modified;
  snap_.error = std::move(error);
  snap_.disk_error = disk_error;
  poke_ = nullptr;
  wake_ready(lock);
}

// ---------------------------------------------------------------- FillTable

FillTable::FillTable(EventLoop& fetch, cache::Store& store, Metrics& metrics,
                     std::map<std::string, std::shared_ptr<Origin>> origins, Options options,
                     conf::Clock clock)
    : fetch_(fetch),
      store_(store),
      metrics_(metrics),
      origins_(std::move(origins)),
      spool_dir_(std::move(options.spool_dir)),
      parallel_(std::max(1, options.parallel)),
      memory_spill_(options.memory_spill),
      clock_(std::move(clock)),
      disk_(store, metrics) {}

FillTable::~FillTable() {
  // Runs on the owner's thread after the fetch loop stopped: transfers die with their client.
  fetches_.clear();
}

FillPtr FillTable::acquire(const std::string& cache_key, const Target& target, FillSeed seed,
                           std::uint64_t first_byte, bool* joined) {
  std::lock_guard lock(mu_);
  if (auto it = fills_.find(cache_key); it != fills_.end()) {
    *joined = true;
    metrics_.coalesced_waiter();
    return it->second;
  }
  *joined = false;
  if (seed.recheck) {
    auto now_meta = store_.lookup(cache_key);
    seed.stale.reset();
    seed.partial.reset();
    switch (classify(now_meta, clock_())) {
      case EntryState::kFresh:
        return nullptr;
      case EntryState::kStale:
        seed.stale = std::move(now_meta);
        break;
      case EntryState::kPartial:
        seed.partial = std::move(now_meta);
        break;
      case EntryState::kAbsent:
        break;
    }
  }
  FillPtr fill(new Fill(cache_key));
  // Pinned for the fill's life and that of every client following it (issue 9, defect 2):
  // evicting an object while its chunks are being marked would fail the fill.
  fill->pin_ = store_.pin(cache_key);
  fills_.emplace(cache_key, fill);
  // A fleet member that owns the object is asked first, by the path its clients use.
  std::optional<std::string> owner;
  std::string peer_path;
  // Guarded routes (proxy/access.h) never fill through the owner: it would be asked by this
  // edge, not by the client, whichever request, refill or warm job starts the fill.
  if (peers_ && !seed.direct && !guarded(*target.route)) {
    owner = peers_->owner(cache_key);
    if (owner) {
      peer_path = path_for(*target.route, target.key).value_or("");
    }
  }
  auto fetch = std::make_shared<Fetch>(*this, fill, target, seed, first_byte);
  fetch_.post([this, fetch, upstream = target.upstream, owner = std::move(owner),
               peer_path = std::move(peer_path), host = target.route->host] {
    // The origin is chosen here, on the fetch loop, where origins_ lives (live reload).
    auto origin = origins_.find(upstream);
    if (origin == origins_.end()) {
      // conf validation makes this impossible; fail the fill rather than crash.
      fetch->fill()->end(Fill::Phase::kFailed, false,
                         s3::Error{s3::Errc::kRefused, 0, "", "no such upstream"});
      finished(fetch->fill()->cache_key(), fetch->fill().get());
      return;
    }
    fetches_.insert(fetch);
    if (owner && !peer_path.empty()) {
      fetch->start(peers_->via(*owner, origin->second, peer_path, host));
    } else {
      fetch->start(origin->second);
    }
  });
  return fill;
}

bool FillTable::abandon(const std::string& cache_key) {
  FillPtr fill;
  {
    std::lock_guard lock(mu_);
    auto it = fills_.find(cache_key);
    if (it == fills_.end()) {
      return false;
    }
    fill = it->second;
    fills_.erase(it);
  }
  fill->abandoned_.store(true);
  fetch_.post([this, fill] {
    for (const auto& f : fetches_) {
      if (f->fill() == fill) {
        f->abandon();
        return;
      }
    }
  });
  return true;
}

void FillTable::set_peers(std::unique_ptr<Peers> peers) { peers_ = std::move(peers); }

void FillTable::set_origins(Origins origins) {
  auto apply = [this, &origins] {
    for (auto& [name, origin] : origins) {
      origins_[name] = std::move(origin);  // the old one lives on in the fetches using it
    }
    origins.clear();  // destroyed here, on the fetch loop
  };
  if (fetch_.in_loop_thread()) {
    apply();
    return;
  }
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  fetch_.post([&] {
    apply();
    std::lock_guard lock(mu);
    done = true;
    cv.notify_all();
  });
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return done; });
}

void FillTable::finished(const std::string& cache_key, Fill* fill) {
  {
    std::lock_guard lock(mu_);
    if (auto it = fills_.find(cache_key); it != fills_.end() && it->second.get() == fill) {
      fills_.erase(it);
    }
  }
  fill->retire();
}

FillPtr FillTable::in_flight(const std::string& cache_key) const {
  std::lock_guard lock(mu_);
  auto it = fills_.find(cache_key);
  return it == fills_.end() ? nullptr : it->second;
}

std::vector<std::string> FillTable::keys() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  out.reserve(fills_.size());
  for (const auto& [key, fill] : fills_) {
    out.push_back(key);
  }
  return out;
}

std::size_t FillTable::active() const {
  std::lock_guard lock(mu_);
  return fills_.size();
}

RangeMode FillTable::range_mode(const std::string& upstream) const {
  std::lock_guard lock(mu_);
  return modes_.get(upstream, RangeModes::Clock::now());
}

void FillTable::set_range_mode(const std::string& upstream, RangeMode mode) {
  std::lock_guard lock(mu_);
  modes_.learn(upstream, mode, RangeModes::Clock::now());
}

std::string make_cache_key(const conf::Upstream& upstream, const std::string& bucket,
                           const std::string& key,
                           const std::vector<std::pair<std::string, std::string>>& query) {
  std::string k;
  k.reserve(upstream.endpoint.size() + bucket.size() + key.size() + 2);
  k += upstream.endpoint;
  k += '\n';
  k += bucket;
  k += '\n';
  k += key;
  // A query (routes with `query: key`) after a separator no key can hold: a newline.
  for (std::size_t i = 0; i < query.size(); ++i) {
    k += i == 0 ? "\n?" : "&";
    k += s3::uri_encode(query[i].first, false);
    k += '=';
    k += s3::uri_encode(query[i].second, false);
  }
  return k;
}

}  // namespace proxy
