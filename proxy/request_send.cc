// The Transmit step of a request (proxy/request.cc holds the steps before it): the pieces of an
// answer go out from memory, or from the body file as the connection drains (sendfile, or
// pread + write with `server.sendfile: false`), waiting on the fill for bytes not there yet.
#include <event2/buffer.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "proxy/access_log.h"
#include "proxy/decide.h"
#include "proxy/request.h"
#include "s3/printable.h"

namespace proxy {
namespace {

// Bytes handed to the connection per write callback. With sendfile they cost no memory; the
// window only bounds how much a slow client can have queued in the socket path at once.
constexpr std::uint64_t kWindow = 16u << 20;
constexpr std::uint64_t kCompleteWindow = 64u << 20;
// With `server.sendfile: false` the bytes are read into memory: the window is then what one
// connection holds at once (nginx's `sendfile off` holds 2 x 32 KiB by default).
constexpr std::uint64_t kCopyWindow = 256u << 10;

// Queues n bytes of `fd` from `pos` on `buf`: a sendfile segment, or (copy) the bytes read with
// pread. False with errno set when they cannot be (a read error, or the file shorter than n).
bool queue_file_bytes(evbuffer* buf, int fd, std::uint64_t pos, std::uint64_t n, bool copy) {
  if (!copy) {
    evbuffer_file_segment* seg =
        evbuffer_file_segment_new(fd, static_cast<ev_off_t>(pos), static_cast<ev_off_t>(n), 0);
    if (seg == nullptr) {
      return false;
    }
    const bool ok = evbuffer_add_file_segment(buf, seg, 0, static_cast<ev_off_t>(n)) == 0;
    evbuffer_file_segment_free(seg);  // the buffer holds its own reference
    return ok;
  }
  while (n > 0) {
    evbuffer_iovec v;
    if (evbuffer_reserve_space(buf, static_cast<ev_ssize_t>(n), &v, 1) < 1) {
      errno = ENOMEM;
      return false;
    }
    const std::size_t want = std::min<std::size_t>(v.iov_len, n);
    const ssize_t got = ::pread(fd, v.iov_base, want, static_cast<off_t>(pos));
    if (got <= 0) {
      if (got == 0) {
        errno = ENODATA;  // the file ends before the bytes its record promises
      }
      return false;
    }
    v.iov_len = static_cast<std::size_t>(got);
    evbuffer_commit_space(buf, &v, 1);
    pos += static_cast<std::uint64_t>(got);
    n -= static_cast<std::uint64_t>(got);
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------- Transmit

// Sends the pieces: at once from memory for a hot small object, else through pump() as the
// connection drains (sendfile from the body file, waiting on the fill for bytes not yet there).
Request::Next Request::transmit() {
  if (head_only_ || body_length_ == 0) {
    reply(status_, reason_, nullptr);
    return Next::kDone;
  }
  if (entity_.bytes && !entity_.fill) {
    // A hot small object is in memory: the whole answer in one reply, one write, no drain
    // callback round trip (the common case of catalog.json under load).
    evbuffer* buf = evbuffer_new();
    for (const Piece& p : pieces_) {
      if (p.length == 0) {
        evbuffer_add(buf, p.text.data(), p.text.size());
      } else {
        evbuffer_add(buf, entity_.bytes->data() + p.offset, p.length);
        body_bytes_ += p.length;
      }
    }
    svc_.metrics.bytes_served(Source::kCache, evbuffer_get_length(buf));
    reply(status_, reason_, buf);
    evbuffer_free(buf);
    return Next::kDone;
  }
  if (entity_.fill) {
    for (const Piece& p : pieces_) {
      if (p.length > 0) {
        entity_.fill->want(p.offset, p.offset + p.length - 1);
      }
    }
  } else if (entity_.generation != 0) {
    pin_ = svc_.store.pin(cache_key_);  // a streamed hit: keep its bytes from eviction
  }
  started_ = true;
  ex_->start(status_, reason_);
  step_ = Step::kDone;
  pump();
  return Next::kPark;
}

void Request::pump() {
  if (closed_ || finished_) {
    return;
  }
  evbuffer* buf = evbuffer_new();
  // Lets libevent keep file segments as sendfile chains all the way to the socket.
  evbuffer_set_flags(buf, EVBUFFER_FLAG_DRAINS_TO_FD);
  // A complete body goes out in large sendfile windows (no memory; fewer drain stalls); a
  // body still filling in smaller ones, so a slow fill does not hold a large range.
  std::uint64_t budget = entity_.fill ? kWindow : kCompleteWindow;
  const bool copy = !live_->config->server.sendfile;
  if (copy && !entity_.bytes) {
    budget = kCopyWindow;  // read into memory: what one connection holds at once
  }
  if (entity_.fill) {
    // A fill whose disk failed goes on in memory: read the rest from there.
    entity_.body = entity_.fill->body();
  }
  std::uint64_t need = 0;  // when blocked: the body offset we wait for
  bool blocked = false;
  while (piece_ < pieces_.size() && budget > 0) {
    const Piece& p = pieces_[piece_];
    if (p.length == 0) {
      evbuffer_add(buf, p.text.data(), p.text.size());
      ++piece_;
      continue;
    }
    std::uint64_t pos = p.offset + piece_done_;
    std::uint64_t available = entity_.fill ? entity_.fill->available_from(pos) : entity_.size - pos;
    if (available == 0) {
      need = pos;
      blocked = true;
      break;
    }
    std::uint64_t n = std::min({p.length - piece_done_, available, budget});
    if (entity_.bytes) {
      evbuffer_add(buf, entity_.bytes->data() + pos, n);  // small: a copy beats a sendfile
      piece_done_ += n;
      budget -= n;
      body_bytes_ += n;
      if (piece_done_ == p.length) {
        ++piece_;
        piece_done_ = 0;
      }
      continue;
    }
    if (!queue_file_bytes(buf, entity_.body->fd(), pos, n, copy)) {
      evbuffer_free(buf);
      spdlog::error("cannot read body bytes of {}: {}", s3::printable(loggable_url(target_uri_)),
                    std::strerror(errno));
      abort_connection();
      return;
    }
    svc_.metrics.file_bytes_served(copy, n);
    piece_done_ += n;
    budget -= n;
    body_bytes_ += n;
    if (piece_done_ == p.length) {
      ++piece_;
      piece_done_ = 0;
    }
  }
  std::size_t queued = evbuffer_get_length(buf);
  if (queued > 0) {
    svc_.metrics.bytes_served(outcome_ == Outcome::kHit || outcome_ == Outcome::kRevalidated ||
                                      outcome_ == Outcome::kStale
                                  ? Source::kCache
                                  : Source::kUpstream,
                              queued);
    ex_->send(buf, &Request::on_chunk_sent, this);
    evbuffer_free(buf);
    return;  // on_chunk_sent pumps again once the connection drained it
  }
  evbuffer_free(buf);
  if (!blocked) {
    take_exchange()->end();
    finish(status_);
    return;
  }
  Fill::Snapshot snap = entity_.fill->snapshot();
  if (snap.phase == Fill::Phase::kDone) {
    auto again = resume(&Request::pump);
    if (entity_.fill->available_from(need) > 0) {
      again();  // it completed between our read and the snapshot
      return;
    }
    if (entity_.fill->wait_retired(again)) {
      return;  // refill looks at the index once the fill left the table: its record is there
    }
  }
  if (snap.phase == Fill::Phase::kFailed || (snap.phase == Fill::Phase::kDone && !refill(need))) {
    // Headers are out; the only honest signal left is closing before Content-Length is met.
    spdlog::warn("upstream fill failed while serving {}; closing the client connection",
                 s3::printable(loggable_url(target_uri_)));
    abort_connection();
    return;
  }
  auto wake = resume(&Request::pump);
  if (!entity_.fill) {
    wake();  // refill found the entry complete: serve the rest from the file
    return;
  }
  const Fill::Phase phase = entity_.fill->snapshot().phase;
  if (phase == Fill::Phase::kDone || phase == Fill::Phase::kFailed) {
    // refill joined a fill that has ended but not yet left the table: look again once it has
    // (waiting on its bytes would return at once, and spin).
    if (!entity_.fill->wait_retired(wake)) {
      wake();
    }
    return;
  }
  if (!entity_.fill->wait(need, wake, /*eager=*/body_bytes_ == 0)) {
    wake();
  }
}

// The fill this client followed ended without the bytes it still needs (prefetch: none, and
// they were not asked for before it went idle). Start or join a fill of what is missing.
bool Request::refill(std::uint64_t pos) {
  auto meta = svc_.store.lookup(cache_key_);
  if (!meta || meta->generation != entity_.generation || entity_.generation == 0) {
    return false;  // replaced, evicted, or a spool: the bytes cannot come back
  }
  if (meta->complete()) {
    entity_.fill.reset();
    return true;
  }
  FillSeed seed;
  seed.partial = std::move(meta);
  seed.direct = from_peer_;
  bool joined = false;
  entity_.fill = svc_.fills.acquire(cache_key_, target_, std::move(seed), pos, &joined);
  if (!entity_.fill) {
    // A fill completed the entry since our lookup: every byte is on disk, if it is still ours.
    auto now_meta = svc_.store.lookup(cache_key_);
    return now_meta && now_meta->generation == entity_.generation && now_meta->complete();
  }
  for (std::size_t i = piece_; i < pieces_.size(); ++i) {
    if (pieces_[i].length > 0) {
      entity_.fill->want(pieces_[i].offset, pieces_[i].offset + pieces_[i].length - 1);
    }
  }
  return true;
}

void Request::on_chunk_sent(void* arg) { static_cast<Request*>(arg)->pump(); }

}  // namespace proxy
