// What to do with a request, given what the cache holds (issue 9): the freshness test, the
// classification of an index entry, grace, the first byte a fill should fetch, the outcome of a
// request served from a fill, the answer to an upstream error and the plan of a response body.
// Pure: no I/O, no clock (`now` is a parameter, unix seconds), no logging; callable from any
// thread. Request (lookup, fill, deliver, synth) and FillTable::acquire both decide here, so
// each rule exists once.
// Tricky: freshness (is_fresh) and completeness (Meta::complete) are separate questions; an
// incomplete entry that is no longer fresh is worth nothing (its chunks may belong to an object
// that has changed) and classifies as absent.
#pragma once

#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "cache/meta.h"
#include "conf/config.h"
#include "proxy/conditional.h"
#include "proxy/freshness.h"
#include "proxy/outcome.h"
#include "proxy/range.h"
#include "s3/client.h"

namespace proxy {

// THE freshness test: usable without asking the origin while now < expires_at, unless the
// origin said no-cache (Meta::kFlagNoCache). now == expires_at is stale. Says nothing about
// whether the bytes are all there (a hot-cache copy of a Meta has its bitmap dropped: test it
// with this, never with classify).
bool is_fresh(const cache::Meta& m, std::int64_t now);
// The same rule for a fill's ObjectHead (revalidate_each_use is the no-cache flag).
bool is_fresh(const Freshness& f, std::int64_t now);

enum class EntryState {
  kAbsent,   // no record, or an incomplete one that is no longer fresh: fill a new generation
  kFresh,    // complete and fresh: serve it (a hit)
  kStale,    // complete, not fresh: revalidate it with a conditional GET (grace on failure)
  kPartial,  // incomplete but fresh: fetch only the missing chunks, into the same generation
};

// Classifies an index record at `now`. `just_revalidated`: the origin has just confirmed this
// entry (a 304 to this request's revalidation), which counts as this use's validation, so a
// complete entry is kFresh even with a zero lifetime (no-cache, max-age=0). The fill table
// passes false.
EntryState classify(const std::optional<cache::Meta>& m, std::int64_t now,
                    bool just_revalidated = false);

// Whether a stale entry may be served because the upstream failed: while now < expires_at +
// the longer of the route's grace and the response's stale-if-error (saturating: a huge window
// or expires_at never wraps). Never for a response that forbids serving stale (must-revalidate,
// proxy-revalidate, no-cache, s-maxage: freshness.h stale_windows). The caller passes only an
// entry it classified kStale.
bool grace_allows(const cache::Meta& stale, std::int64_t now, const conf::Route& route);

// Whether a stale entry is served at once while one background revalidation runs: within its
// stale-while-revalidate window (RFC 5861 §3), under the same prohibitions as grace_allows.
bool serve_while_revalidating(const cache::Meta& stale, std::int64_t now, const conf::Route& route);

// first_byte_of's answer when the first byte cannot be known: a suffix range ("-n") on an object
// of unknown size. The fill then learns the size (HEAD) before fetching a chunk.
inline constexpr std::uint64_t kUnknownByte = std::numeric_limits<std::uint64_t>::max();

// The first byte a client will read, which the fill fetches first. No Range (or a malformed
// one): 0. Otherwise from the first spec as written (not the lowest once sorted):
//   "a-" / "a-b": a (even when a is past the end: the fill's probe finds out);
//   "-n" with known_size: known_size - n, or 0 when n >= known_size ("-0" gives known_size);
//   "-n" without: kUnknownByte.
std::uint64_t first_byte_of(const std::optional<std::vector<RangeSpec>>& ranges,
                            std::optional<std::uint64_t> known_size);

// The outcome of a request served from a fill it started or joined. `stored`: the fill stores
// the object (false: PASS). `joined_done`: the joined fill had every byte on disk and a fresh
// head when joined, so nothing waited upstream (a HIT).
Outcome outcome_of_fill(bool stored, bool joined, bool joined_done);

// What the caller should log beside an upstream error reply (the pure function does not log).
enum class ErrorNote {
  kNone,
  kAnonymousDenied,      // warn (upstream, bucket, key): an unsigned GET was refused
  kCredentialsRejected,  // error: the upstream rejected tusk's keys (log e.message)
  kTlsFailed,            // error: TLS verification or setup failed (log e.message)
};

struct ErrorReply {
  int status = 502;
  std::string reason = "Bad Gateway";
  std::string body;  // tusk's own: text/plain, newline-terminated; passed: the upstream's
  ErrorNote note = ErrorNote::kNone;
  // The upstream's own answer, passed on as it is: its body and end-to-end headers (with its
  // Content-Type), not tusk's text/plain and no-store.
  bool passed = false;
  Headers headers = {};
};

// The reply to a fill that failed with `e`, for an object of `bucket` behind an upstream that
// signs with `sig`.
// - `signature: none` (any HTTP origin): an answer of the upstream's own (any status but 200,
//   206, 304, whose whole answer arrived: s3::Error::answer) is passed through as it is; not the
//   answers to what tusk itself asked (412 to its If-Match, 416 to its probe range) nor an
//   answer whose body was over 64 KiB (502). A 403 is logged (kAnonymousDenied).
// - Signed (S3's XML errors): 404 for a missing key, 504 for a timeout, 502 for everything else.
// The body may quote e.message or e.s3_code (already escaped by s3::Client) and `bucket`.
ErrorReply error_reply(const s3::Error& e, const std::string& bucket, conf::Signature sig);

// How to answer a GET (or HEAD: the same plan, the caller sends no body) for an object of `size`
// bytes described by `v`, given the client's conditions and parsed Range (nullopt: none, or
// malformed). Preconditions first (RFC 9110 §13.2.2), then If-Range, then the ranges.
// v.last_modified is read only by date conditions: a caller may skip parsing it (-1) when the
// request carries none.
struct BodyPlan {
  enum class Kind {
    kNotModified,         // 304, entity headers only
    kPreconditionFailed,  // 412
    kUnsatisfiable,       // 416; the caller adds "Content-Range: bytes */<size>"
    kFull,                // 200, the whole object
    kSingle,              // 206 with Content-Range, one span
    kMultipart,           // 206 multipart/byteranges, two or more spans (the caller frames them)
  };
  Kind kind = Kind::kFull;
  int status = 200;
  const char* reason = "OK";  // a string literal
  // kSingle: one span; kMultipart: two or more, sorted and disjoint (see resolve_ranges);
  // empty otherwise (kFull is [0, size), which a zero-size object cannot write as a span).
  std::vector<ByteSpan> spans;
};
BodyPlan plan_body(const Conditions& c, const Validators& v,
                   const std::optional<std::vector<RangeSpec>>& ranges, std::uint64_t size);

}  // namespace proxy
