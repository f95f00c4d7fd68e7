// The rules of the fetch side of a fill, as pure functions (issue 9): what to make of an
// upstream's answer (status, Content-Range with or without its unit, length, ETag pinning),
// what an answer shows about the upstream's range behaviour, when a failed request is retried,
// resumed or re-asked as a HEAD, and how a 304 merges into the stored headers. proxy/fetch.cc
// applies them; tests/proxy/fetch_rules_test.cc is their table.
// Tricky: Walrus answers a ranged GET with 200 and a unit-less "a-b/n" whose n cannot be
// trusted; an upstream that ignores Range answers 200 with the whole object.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proxy/freshness.h"
#include "proxy/http_text.h"
#include "proxy/range_mode.h"
#include "s3/client.h"

namespace proxy {

// Parses "bytes a-b/n" or Walrus' unit-less "a-b/n" ("*" total allowed).
struct ContentRange {
  bool unit = false;  // "bytes " was present
  std::uint64_t first = 0, last = 0;
  std::optional<std::uint64_t> total;
};
std::optional<ContentRange> parse_content_range(std::string_view v);

// The facts of one upstream response head that the rules look at.
struct Answer {
  int status = 0;
  std::optional<std::uint64_t> length;  // Content-Length
  std::string content_range;            // raw, for messages
  std::optional<ContentRange> range;    // parsed; nullopt when absent or malformed
  std::string etag;
};
Answer answer_of(const s3::ResponseHead& h);

// What one request of a fill asked for.
enum class Ask {
  kProbeRange,  // first ranged GET of a cold object, [first, end): its answer also gives the head
  kProbeHead,   // HEAD of a cold object (Walrus, or where the first byte is unknown)
  kFirstWhole,  // GET without Range of an object not yet known (also a revalidation's 200)
  kRange,       // ranged GET [first, end) of a known object of `size` bytes
  kResume,      // a whole-object GET resumed at `first` (Range: first-) of a known object
};

enum class Verdict {
  kAccept,         // the answer carries what was asked: take its bytes
  kRestart,        // (kResume) the whole object again from byte 0: skip what is on disk
  kRangesIgnored,  // a 200 with the whole object: fill it sequentially, whatever was asked
  kWalrusRanges,   // (kProbeRange) 200 + unit-less Content-Range: learn the size from a HEAD
  kReject,         // unusable: the fill fails with `why`
};

struct Judgement {
  Verdict verdict = Verdict::kReject;
  std::uint64_t size = 0;  // the object's size, when this answer tells it (probe, HEAD, 200)
  std::string why;         // for kReject: a message for the log and the client
};

// `end` is exclusive; `size` is the known object size (kRange, kResume).
Judgement judge(Ask ask, const Answer& a, std::uint64_t first, std::uint64_t end,
                std::uint64_t size);

// What an accepted or refused answer teaches about the upstream's range behaviour, if anything.
std::optional<RangeMode> range_mode_shown(Ask ask, Verdict v);

// After the fill knows the object's ETag, every later answer must carry the same one (or none):
// If-Match normally makes a change a 412, this catches upstreams that ignore If-Match.
bool etag_changed(std::string_view pinned, std::string_view answered);

// What to do after a request of the fill failed (transport or HTTP error, or a body that ended
// early: pass Errc::kProtocol for that).
enum class AfterError {
  kRetry,      // the same request again after backoff (resuming from the first missing byte)
  kProbeHead,  // a probe beyond the object's end (416): learn the size with a HEAD instead
  kFail,       // give up: the fill fails with this error
};
AfterError after_error(Ask ask, bool head_known, s3::Errc code, int attempts, int max_attempts,
                       bool etag_known);

// Backoff before retry number `attempts` (1-based): 100 ms, 200 ms, 400 ms, ... capped at 5 s.
long backoff_ms(int attempts);

// A 304's end-to-end headers replace the stored ones of the same name (RFC 9111 §3.2, §4.3.4),
// but never the framing nor Content-MD5 (it describes the body, which a 304 does not change).
// `decide_on` is what freshness is computed from: the merged headers plus the 304's Date and
// Age, which are not stored.
struct Merged {
  Headers stored;
  Headers decide_on;
  std::optional<std::string> content_type;  // a new Content-Type the 304 carries
};
Merged merge_not_modified(const Headers& stored, const Headers& answer);

}  // namespace proxy
