// The body side of a fetch: the head learnt from the first answer, the body file it fills (a
// cache generation, a spool, or memory after a disk error), and the writes into it. The steps
// that decide when these run are in proxy/fetch.cc.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "proxy/decide.h"
#include "proxy/fetch.h"
#include "s3/printable.h"

namespace proxy {

namespace {

int open_spool(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) {
    return fd;
  }
  std::string templ = dir + "/spool.XXXXXX";
  fd = ::mkostemp(templ.data(), O_CLOEXEC);
  if (fd >= 0) {
    ::unlink(templ.c_str());
  }
  return fd;
}

// A second open file description, read-only, of a file known only by its fd (spools).
int reopen_read_only(int fd) {
  return ::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDONLY | O_CLOEXEC);
}

const char* write_error_reason(int err) {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
      return "enospc";
    case EIO:
      return "eio";
    default:
      return "other";
  }
}

}  // namespace

// ---------------------------------------------------------------- heads and body files

// A fresh entry with missing chunks: continue filling the same generation.
bool Fetch::adopt_partial(const cache::Meta& m) {
  auto wfd = table_.store_.open_body(fill_->cache_key(), m.generation, /*for_write=*/true);
  auto rfd = table_.store_.open_body(fill_->cache_key(), m.generation);
  if (!wfd || !rfd) {
    if (wfd) {
      ::close(*wfd);
    }
    if (rfd) {
      ::close(*rfd);
    }
    fail(local_error("the partial cache entry vanished"));
    return false;
  }
  auto obj = std::make_shared<ObjectHead>();
  obj->size = m.size;
  obj->etag = m.etag;
  obj->last_modified = m.last_modified;
  obj->content_type = m.content_type;
  obj->replay = m.headers;
  obj->freshness.storable = true;
  obj->freshness.stored_at = m.stored_at;
  obj->freshness.expires_at = m.expires_at;
  obj->freshness.revalidate_each_use = (m.flags & cache::Meta::kFlagNoCache) != 0;
  obj->stored = true;
  obj->generation = m.generation;
  generation_ = m.generation;
  cs_ = m.chunk_size;
  write_fd_ = std::make_shared<BodyFile>(*wfd);
  install_head(obj, std::make_shared<BodyFile>(*rfd), &m);
  return true;
}

// Vary (proxy/vary.h): what the answer varies on, learnt by the index; whether it may be stored,
// and under which key. A varying answer is stored under the variant its first client selects
// among the names the answer gives (at most VaryIndex::kMaxVariants per object): a fill keyed
// by that variant stores it under its own key; the first varying answer of an object (a fill
// keyed without a variant) under that variant's key instead (store_key_). A fill keyed by a
// variant of other names (the origin changed its Vary) does not store. `*`, or too many names:
// never stored. An object that stopped varying is forgotten by the index and its variant fill
// not stored (requests use the object's own key again).
bool Fetch::vary_allows_storing(const ObjectHead& obj) {
  VaryIndex& index = table_.vary_;
  if (obj.vary.star || obj.vary.too_many) {
    return false;
  }
  if (obj.vary.names.empty()) {
    if (seed_.vary_names) {
      index.learn(seed_.vary_base, {});
      return false;
    }
    return true;
  }
  index.learn(seed_.vary_base, obj.vary.names);
  if (!seed_.vary_names && fill_->cache_key() == seed_.vary_base) {
    if (!index.admit(seed_.vary_base, obj.variant)) {
      return false;
    }
    store_key_ = obj.variant;
    store_pin_ = table_.store_.pin(store_key_);
    return true;
  }
  return seed_.vary_names == obj.vary.names && obj.variant == fill_->cache_key() &&
         index.admit(seed_.vary_base, obj.variant);
}

// Builds the head from an answer (200 whole, 206 probe or HEAD) and opens the body file: a new
// cache generation when storable and there is room, else a spool. False after failing the fill.
bool Fetch::create_head(const s3::ResponseHead& h, std::uint64_t size) {
  auto obj = std::make_shared<ObjectHead>();
  obj->size = size;
  obj->etag = h.header("etag");
  obj->last_modified = h.header("last-modified");
  obj->content_type = h.header("content-type");
  if (obj->content_type.empty()) {
    obj->content_type = "application/octet-stream";
  }
  const std::int64_t now = table_.clock_();
  // A stored object is a 200, whichever answer (200, 206 probe, HEAD) brought its head.
  obj->freshness = decide(200, h.headers, route_, now);
  obj->replay = replayable_headers(h.headers);
  obj->vary = vary_of(h.headers);
  if (!obj->vary.names.empty()) {
    obj->variant = variant_key(seed_.vary_base, obj->vary.names, seed_.request);
  }
  if (obj->freshness.storable && !vary_allows_storing(*obj)) {
    obj->freshness.storable = false;
  }
  if (std::string enc = h.header("content-encoding"); !enc.empty() && !iequals(enc, "identity")) {
    if (is_tarball_key(key_)) {
      // A gzip tarball uploaded with Content-Encoding: gzip: clients would gunzip it and the
      // eustore checksum would fail. The bytes are the tarball; the coding is a mistake.
      spdlog::warn("dropping 'Content-Encoding: {}' of tarball {}: the bytes are served as is",
                   s3::printable(enc), object_);
    } else {
      obj->replay.emplace_back("Content-Encoding", enc);
    }
  }
  if (fill_->abandoned_.load()) {
    fail(local_error("the object was purged while it was being filled"));
    return false;
  }
  int wfd = -1;
  std::optional<cache::Meta> reserved;
  if (obj->freshness.storable) {
    cache::Meta meta;
    meta.size = size;
    meta.etag = obj->etag;
    meta.last_modified = obj->last_modified;
    meta.content_type = obj->content_type;
    meta.stored_at = obj->freshness.stored_at;
    meta.expires_at = obj->freshness.expires_at;
    meta.accessed_at = now;
    meta.flags = obj->freshness.revalidate_each_use ? cache::Meta::kFlagNoCache : 0;
    meta.headers = obj->replay;
    // Reserved, not published: clients are served from the file at once while the disk thread
    // makes it durable and publishes it with the first marks (one commit for many fills).
    auto created = table_.store_.reserve(store_key_, std::move(meta));
    if (created) {
      wfd = created->fd;
      generation_ = created->meta.generation;
      cs_ = created->meta.chunk_size;
      obj->stored = true;
      obj->generation = generation_;
      reserved = std::move(created->meta);
    } else {
      spdlog::warn("not caching {} ({} bytes): {}", object_, size, created.error().message);
    }
  }
  int rfd = -1;
  if (wfd >= 0) {
    write_fd_ = std::make_shared<BodyFile>(wfd);
    rfd = reopen_read_only(wfd);
    table_.disk_.publish(write_fd_, std::move(*reserved));
  } else {
    wfd = open_spool(table_.spool_dir_);
    if (wfd < 0) {
      fail(local_error(std::string("cannot create a spool file: ") + std::strerror(errno)));
      return false;
    }
    write_fd_ = std::make_shared<BodyFile>(wfd);
    rfd = reopen_read_only(wfd);
  }
  if (rfd < 0) {
    fail(local_error("cannot open the body file for reading"));
    return false;
  }
  install_head(obj, std::make_shared<BodyFile>(rfd), nullptr);
  return true;
}

// Publishes the head and sizes the chunk tables; `meta` seeds them from a stored bitmap.
void Fetch::install_head(std::shared_ptr<ObjectHead> obj, BodyFilePtr body,
                         const cache::Meta* meta) {
  head_ = std::move(obj);
  chunks_ = (head_->size + cs_ - 1) / cs_;
  state_.assign(chunks_, kMissing);
  filled_.assign(chunks_, 0);
  owner_.assign(chunks_, nullptr);
  if (meta != nullptr) {
    for (std::uint64_t c = 0; c < chunks_; ++c) {
      if (meta->has_chunk(c)) {
        state_[c] = kDone;
        filled_[c] = static_cast<std::uint32_t>(chunk_len(c));
      }
    }
  }
  std::weak_ptr<Fetch> weak = weak_from_this();
  EventLoop* fetch = &table_.fetch_;
  {
    std::lock_guard lock(fill_->mu_);
    fill_->poke_ = [weak, fetch] {
      fetch->post([weak] {
        if (auto self = weak.lock()) {
          self->drive();
        }
      });
    };
  }
  if (first_byte_ != kUnknownByte && first_byte_ < head_->size) {
    urgent_.push_back(first_byte_ / cs_);
  }
  if (!head_->stored) {
    // Not storable: whoever asks from now on gets a fetch of their own (no sharing of a
    // private or no-store answer beyond the requests that were already waiting for it).
    table_.finished(fill_->cache_key(), fill_.get());
  }
  const bool hold = start_digest();
  fill_->set_head(head_, std::move(body), cs_, filled_, hold);
}

// ---------------------------------------------------------------- integrity

// A stored object with a single-part MD5 ETag that this fill will fetch whole is checked: its
// bytes are hashed on the hasher thread (proxy/hasher.h) as they are written, and its last byte
// is held back from clients until the check passed (Step::kVerify). With `prefetch: none` a
// fill may never see every byte: such objects stay unverified (POST /verify checks them).
bool Fetch::start_digest() {
  digest_.reset();
  verdict_.reset();
  verifying_ = false;
  prefix_chunks_ = 0;
  expect_md5_ = cache::md5_of_etag(head_->etag);
  if (!head_->stored || expect_md5_.empty() || head_->size == 0 ||
      route_.prefetch != conf::Prefetch::kWhole) {
    return false;
  }
  digest_ = std::make_shared<cache::OrderedDigest>(head_->size, &table_.hasher_.budget());
  return true;
}

void Fetch::digest_written(std::uint64_t off, const char* p, std::uint64_t n) {
  if (!digest_) {
    return;
  }
  // A copy for the hasher while the budget allows; otherwise it reads the bytes back later.
  auto& budget = table_.hasher_.budget();
  const auto want = static_cast<std::int64_t>(n);
  if (budget.fetch_sub(want) < want) {
    budget.fetch_add(want);
    return;
  }
  table_.hasher_.post([d = digest_, off, bytes = std::string(p, n)]() mutable {
    d->feed_reserved(off, std::move(bytes));
  });
}

namespace {

// pread of a body file for a digest catching up (bytes the budget did not copy).
cache::OrderedDigest::Reader read_back(BodyFilePtr body) {
  return [body = std::move(body)](std::uint64_t off, char* buf, std::size_t n) {
    while (n > 0) {
      const ssize_t r = ::pread(body->fd(), buf, n, static_cast<off_t>(off));
      if (r < 0 && errno == EINTR) {
        continue;
      }
      if (r <= 0) {
        return false;
      }
      buf += r;
      n -= static_cast<std::size_t>(r);
      off += static_cast<std::uint64_t>(r);
    }
    return true;
  };
}

}  // namespace

void Fetch::chunk_written(std::uint64_t c) {
  if (!digest_) {
    queue_mark(c);
    return;
  }
  while (prefix_chunks_ < chunks_ && state_[prefix_chunks_] == kDone) {
    ++prefix_chunks_;
  }
  if (prefix_chunks_ < chunks_) {
    queue_mark(c);
    // The run of complete chunks from the start is written: the digest may go that far
    // (reading back what it was not given), which frees what it holds ahead.
    const std::uint64_t end = prefix_chunks_ * cs_;
    if (end > digest_end_) {
      digest_end_ = end;
      table_.hasher_.post([d = digest_, end, read = read_back(fill_->body())] {
        (void)d->catch_up(end, read);  // a failed read shows in the final check
      });
    }
    return;
  }
  // Every byte is written. The chunk that completes the object is marked only after the
  // verdict (Step::kVerify): the index never holds it complete and unchecked.
  final_chunk_ = c;
  verifying_ = true;
  std::weak_ptr<Fetch> weak = weak_from_this();
  table_.hasher_.post([d = digest_, size = head_->size, read = read_back(fill_->body()), weak,
                       loop = &table_.fetch_] {
    DigestVerdict v;
    v.read_ok = d->catch_up(size, read) && d->complete();
    v.md5 = v.read_ok ? d->hex() : "";
    v.reread = d->reread_bytes();
    loop->post([weak, v] {
      if (auto self = weak.lock(); self && !self->ended_ && self->verifying_) {
        self->verdict_ = v;
        self->drive();
      }
    });
  });
}

// ---------------------------------------------------------------- Verify

Fetch::Next Fetch::verify() {
  if (!verifying_) {
    step_ = Step::kDone;
    return Next::kContinue;
  }
  if (!verdict_) {
    return Next::kPark;  // the hasher is still at it
  }
  const DigestVerdict v = *verdict_;
  verifying_ = false;
  verdict_.reset();
  digest_.reset();
  table_.metrics_.integrity_reread(v.reread);
  if (!v.read_ok) {
    // The body cannot be read back: it stays unverified rather than failing the fill.
    spdlog::error("integrity: cannot read back the body of {} to hash it", object_);
  } else if (v.md5 != expect_md5_) {
    // Nobody got the whole body (its last byte is held back); the chunk that would complete it
    // is never marked, and failing drops the generation.
    table_.metrics_.integrity_failure("fill");
    spdlog::error("integrity: {} from upstream '{}' has MD5 {} but its ETag says {}: purged",
                  object_, upstream_, v.md5, expect_md5_);
    fail(local_error("integrity check failed: the body's MD5 does not match its ETag"));
    return Next::kDone;
  } else {
    table_.metrics_.integrity_verified();
  }
  queue_mark(final_chunk_);
  if (v.read_ok) {
    table_.disk_.post([store = &table_.store_, key = store_key_, gen = generation_] {
      (void)store->set_verified(key, gen);
    });
  }
  fill_->release_tail();
  step_ = Step::kDone;
  return Next::kContinue;
}

bool Fetch::write_at(const char* const data, const std::uint64_t len, const std::uint64_t at) {
  const char* p = data;
  std::uint64_t n = len;
  std::uint64_t off = at;
  while (n > 0) {
    ssize_t w = ::pwrite(write_fd_->fd(), p, n, static_cast<off_t>(off));
    if (w < 0 && errno == EINTR) {
      continue;
    }
    if (w <= 0) {
      if (!spill_to_memory(w == 0 ? ENOSPC : errno)) {
        return false;
      }
      // The spill copied what the chunk tables count as written, which does not include a
      // partial write of this call: write all of it again, into memory.
      p = data;
      n = len;
      off = at;
      continue;
    }
    p += w;
    n -= static_cast<std::uint64_t>(w);
    off += static_cast<std::uint64_t>(w);
  }
  return true;
}

// The disk refused bytes (issue 9, defect 5). Not the upstream's fault, and no reason to fail a
// client: the bytes already written move into an anonymous memory file, the cache entry (if
// any) is dropped whole, and the fill goes on from memory; readers switch to the new body at
// their next read (Fill::body). Caching resumes with the next fill once space returns. Objects
// larger than fill.memory_spill fail instead: memory is bounded too.
bool Fetch::spill_to_memory(int err) {
  const char* reason = write_error_reason(err);
  table_.metrics_.cache_write_error(reason);
  if (spilled_) {
    fail_disk("writing the fill's memory spill failed: " + std::string(std::strerror(err)));
    return false;
  }
  spilled_ = true;
  if (head_->size > table_.memory_spill_) {
    spdlog::error(
        "disk full or failing ({}) while filling {}: {} bytes exceed fill.memory_spill; "
        "failing the fill",
        std::strerror(err), object_, head_->size);
    fail_disk(std::string("cache disk error: ") + std::strerror(err));
    return false;
  }
  spdlog::error("disk full or failing ({}) while filling {}: streaming it uncached from memory",
                std::strerror(err), object_);
  const int mfd = ::memfd_create("tusk-spill", MFD_CLOEXEC);
  const int rfd = mfd < 0 ? -1 : reopen_read_only(mfd);
  if (rfd < 0) {
    if (mfd >= 0) {
      ::close(mfd);
    }
    fail_disk(std::string("cannot create a memory spill: ") + std::strerror(errno));
    return false;
  }
  auto memory = std::make_shared<BodyFile>(mfd);
  // What is already on disk was written whole: copy it (bounded by memory_spill).
  const BodyFilePtr old_body = fill_->body();
  std::vector<char> buf(1u << 20);
  for (std::uint64_t c = 0; c < chunks_; ++c) {
    for (std::uint64_t done = 0; done < filled_[c];) {
      const std::uint64_t off = c * cs_ + done;
      const std::size_t want =
          static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), filled_[c] - done));
      const ssize_t r = ::pread(old_body->fd(), buf.data(), want, static_cast<off_t>(off));
      if (r <= 0 ||
          ::pwrite(mfd, buf.data(), static_cast<std::size_t>(r), static_cast<off_t>(off)) != r) {
        if (r < 0 && errno == EINTR) {
          continue;
        }
        ::close(rfd);
        fail_disk("cannot move the filled bytes into memory");
        return false;
      }
      done += static_cast<std::uint64_t>(r);
    }
  }
  if (head_->stored) {
    (void)table_.store_.remove(store_key_);  // nothing partial stays indexed
  }
  auto obj = std::make_shared<ObjectHead>(*head_);
  obj->stored = false;
  obj->generation = 0;
  head_ = obj;
  digest_.reset();  // uncached from memory: nothing to mark verified
  write_fd_ = memory;
  fill_->respool(head_, std::make_shared<BodyFile>(rfd));
  return true;
}

// fdatasync, then the chunk's bit in the index: bytes are durable before the index says so.
// The disk thread batches both (one fdatasync per file, one commit per batch).
void Fetch::queue_mark(std::uint64_t c) {
  if (head_->stored) {
    table_.disk_.mark(DiskQueue::Mark{write_fd_, store_key_, generation_, c});
  }
}

}  // namespace proxy
