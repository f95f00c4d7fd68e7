// The closed set of request outcomes: one value per request, used alike for the X-Cache header,
// the access log and the metrics label (STYLE.md habit 11).
#pragma once

namespace proxy {

enum class Outcome {
  kHit,          // served from a fresh, complete cache entry
  kMiss,         // this request started the upstream fill it was served from
  kCoalesced,    // joined a fill another request had started
  kRevalidated,  // stale entry confirmed by the origin (304), served from cache
  kStale,        // upstream failed; a stale entry was served within the route's grace
  kPass,         // not storable (no-store/private, or no room): streamed through a spool file
  kError,        // tusk answered with an error of its own (4xx/5xx)
};

constexpr const char* outcome_name(Outcome o) {
  switch (o) {
    case Outcome::kHit:
      return "HIT";
    case Outcome::kMiss:
      return "MISS";
    case Outcome::kCoalesced:
      return "COALESCED";
    case Outcome::kRevalidated:
      return "REVALIDATED";
    case Outcome::kStale:
      return "STALE";
    case Outcome::kPass:
      return "PASS";
    case Outcome::kError:
      return "ERROR";
  }
  return "ERROR";
}

}  // namespace proxy
