// The life of one client request, as named steps driven by one loop (STYLE.md, after Varnish's
// cache_req_fsm): Recv -> Lookup -> (Fill -> AwaitHead [-> Revalidated]) -> Deliver -> Transmit,
// with Synth for tusk's own error answers. Every decision is a pure function (proxy/decide.h).
// Each step returns Continue, Park (waiting on a fill; woken through the worker's loop) or Done.
// Threads: a Request lives on the worker loop that accepted it and is touched only there.
// The connection owns the Exchange; we give it exactly one reply and never touch it after the
// connection closed (close handler) or after the reply ended.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/conditional.h"
#include "proxy/fill.h"
#include "proxy/hot_cache.h"
#include "proxy/http_conn.h"
#include "proxy/loop.h"
#include "proxy/outcome.h"
#include "proxy/range.h"
#include "proxy/router.h"
#include "proxy/services.h"

namespace proxy {

class Request : public std::enable_shared_from_this<Request> {
 public:
  // Entry point from the connection's handler: a request head has arrived.
  static void handle(Exchange& ex, Services& svc, EventLoop& loop, HotCache& hot);
  ~Request();

 private:
  enum class Step {
    kRecv,         // parse and route the request
    kLookup,       // hot cache, then the index: fresh -> Deliver; stale/partial/absent -> Fill
    kFill,         // start or join the object's fill
    kAwaitHead,    // wait for the fill's head: streaming -> Deliver, 304 -> Revalidated
    kRevalidated,  // the origin confirmed the stale entry: serve it
    kDeliver,      // decide the answer (status, headers, body pieces)
    kTransmit,     // send it, following the fill for bytes not yet on disk
    kSynth,        // an error answer of tusk's own
    kDone,
  };
  enum class Next { kContinue, kPark, kDone };

  // What is being delivered: the object's description and where its bytes are.
  struct Entity {
    std::uint64_t size = 0;
    std::string etag;
    std::string last_modified;
    std::string content_type;
    Headers replay;
    std::int64_t stored_at = 0;
    std::uint64_t generation = 0;  // cache generation the body belongs to (0: spool)
    BodyFilePtr body;
    FillPtr fill;                              // set while the bytes are still arriving
    std::shared_ptr<const std::string> bytes;  // the whole body in memory (small hot objects)
  };
  // One piece of a response body: literal text (multipart framing) or a byte span of the body.
  struct Piece {
    std::string text;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
  };

  Request(Exchange& ex, Services& svc, EventLoop& loop, HotCache& hot);
  static Entity entity_of(const cache::Meta& m, BodyFilePtr body) {
    return Entity{m.size,      m.etag,       m.last_modified, m.content_type, m.headers,
                  m.stored_at, m.generation, std::move(body), nullptr,        nullptr};
  }
  void drive();
  Next recv();
  bool authorized(const RequestHead& in, std::string_view target, Next* refused);
  Next lookup();
  Next fill();
  Next await_head();
  Next revalidated();
  Next deliver();
  Next transmit();
  Next send_synth();

  Next synth(int status, const char* reason, std::string body, Headers extra = {});
  Next synth_upstream_error(const s3::Error& e);
  bool serve_entry(const cache::Meta& meta, const cache::Stamp& stamp);
  void add_entity_headers(bool with_length_and_type);
  void pump();
  static void on_chunk_sent(void* arg);
  static void on_close(void* arg);
  void park_on_head();
  std::function<void()> resume(void (Request::*step)());
  bool refill(std::uint64_t pos);
  void finish(int status);
  void abort_connection();
  Exchange* take_exchange();  // for the one final reply call
  // The final reply with a complete body (or none): sends it, writes it out at once when it
  // fits the socket, and finishes the request.
  void reply(int status, const char* reason, evbuffer* body);
  bool serve_stale_on_error();
  bool serve_stale_revalidating(const cache::Meta& stale);
  FillPtr joinable_first_variant() const;
  FillSeed new_seed() const;
  Next look_again_after_fill();
  void remember_hot(const cache::Meta& meta, const cache::Stamp& stamp);

  Exchange* ex_;
  Services& svc_;
  EventLoop& loop_;
  HotCache& hot_;
  std::shared_ptr<Request> self_;  // alive until the reply ended or the client went away
  Step step_ = Step::kRecv;
  bool head_only_ = false;
  std::string base_key_;  // the object's cache key; cache_key_ adds the variant (Vary)
  std::optional<std::vector<std::string>> vary_names_;  // when the object is known to vary
  Headers forward_;         // the client headers the upstream forwards (forward_headers)
  bool from_peer_ = false;  // asked by another edge (kPeerHeader): fill from the upstream
  bool closed_ = false;     // the client connection is gone
  bool started_ = false;    // a reply has been started (status line sent)
  bool finished_ = false;
  Outcome outcome_ = Outcome::kError;
  std::chrono::steady_clock::time_point t0_;

  std::string method_;
  std::string target_uri_;
  // For the access-log line, written when the exchange is already gone: from the head, and the
  // time spent waiting for the upstream (from Fill to the fill's head or failure; < 0: none).
  struct LogFields {
    std::string client;
    std::string referer;
    std::string user_agent;
    std::string user;  // the key id of a presigned URL or token (never a secret); "" none
    int minor = 1;
  } log_;
  std::chrono::steady_clock::time_point fill_at_{};
  double upstream_ms_ = -1;
  std::string host_;
  std::shared_ptr<const Live> live_;  // the configuration generation routing used (reload)
  Target target_;
  std::string cache_key_;
  const conf::Upstream* upstream_ = nullptr;
  std::optional<std::vector<RangeSpec>> ranges_;
  std::string range_header_;
  Conditions conditions_;

  std::optional<cache::Meta> stale_;    // complete but stale entry, kept for revalidation/grace
  std::optional<cache::Meta> partial_;  // fresh entry with chunks missing
  FillPtr fill_;
  bool joined_ = false;
  bool joined_done_ = false;  // the joined fill had already ended
  int lookups_ = 0;

  Entity entity_;
  cache::Pin pin_;  // the body file being sent is not evicted meanwhile
  std::vector<Piece> pieces_;
  std::size_t piece_ = 0;
  std::uint64_t piece_done_ = 0;
  std::uint64_t body_bytes_ = 0;
  int status_ = 0;
  const char* reason_ = "OK";
  std::uint64_t body_length_ = 0;
  struct Synth {
    int status = 500;
    std::string reason;
    std::string body;
    Headers headers;
    bool passed = false;  // the upstream's own answer (error_reply): its headers, not ours
  } synth_;
};

// The Date header value for `now`, formatted once per second per thread (as nginx does); valid
// until the thread's next call.
const char* cached_http_date(std::int64_t now);

}  // namespace proxy
