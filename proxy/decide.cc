// The decisions of a request and of the fill table (see decide.h). Pure.
#include "proxy/decide.h"

#include <algorithm>

namespace proxy {

namespace {

// The one rule, whichever struct carries the two facts.
bool fresh_at(bool no_cache, std::int64_t expires_at, std::int64_t now) {
  return !no_cache && now < expires_at;
}

}  // namespace

bool is_fresh(const cache::Meta& m, std::int64_t now) {
  return fresh_at((m.flags & cache::Meta::kFlagNoCache) != 0, m.expires_at, now);
}

bool is_fresh(const Freshness& f, std::int64_t now) {
  return fresh_at(f.revalidate_each_use, f.expires_at, now);
}

EntryState classify(const std::optional<cache::Meta>& m, std::int64_t now, bool just_revalidated) {
  if (!m) {
    return EntryState::kAbsent;
  }
  const bool fresh = is_fresh(*m, now);
  if (m->complete()) {
    return fresh || just_revalidated ? EntryState::kFresh : EntryState::kStale;
  }
  return fresh ? EntryState::kPartial : EntryState::kAbsent;
}

namespace {

// now < expires_at + window, saturating (a window or expires_at near the int64 limits never wraps).
bool within(std::int64_t expires_at, std::int64_t window, std::int64_t now) {
  std::int64_t until = 0;
  if (__builtin_add_overflow(expires_at, window, &until)) {
    return window > 0;  // past the int64 range: forever ahead when positive, gone when negative
  }
  return now < until;
}

}  // namespace

bool grace_allows(const cache::Meta& stale, std::int64_t now, const conf::Route& route) {
  const StaleWindows w = stale_windows(stale.headers, route);
  if (!w.allowed) {
    return false;
  }
  return within(stale.expires_at, std::max<std::int64_t>(route.grace.count(), w.if_error), now);
}

bool serve_while_revalidating(const cache::Meta& stale, std::int64_t now,
                              const conf::Route& route) {
  const StaleWindows w = stale_windows(stale.headers, route);
  return w.allowed && w.while_revalidate > 0 && within(stale.expires_at, w.while_revalidate, now);
}

std::uint64_t first_byte_of(const std::optional<std::vector<RangeSpec>>& ranges,
                            std::optional<std::uint64_t> known_size) {
  if (!ranges || ranges->empty()) {
    return 0;
  }
  const RangeSpec& r = ranges->front();
  if (!r.suffix) {
    return r.first;
  }
  if (!known_size) {
    return kUnknownByte;
  }
  return r.first >= *known_size ? 0 : *known_size - r.first;
}

Outcome outcome_of_fill(bool stored, bool joined, bool joined_done) {
  if (!stored) {
    return Outcome::kPass;
  }
  if (!joined) {
    return Outcome::kMiss;
  }
  return joined_done ? Outcome::kHit : Outcome::kCoalesced;
}

namespace {

// An upstream's reason phrase, if it can be sent on: printable ASCII, at most 64 bytes.
std::string safe_reason(const std::string& r) {
  const bool ok = r.size() <= 64 && std::all_of(r.begin(), r.end(), [](char c) {
                    return c == ' ' || c == '\t' || (c > 0x20 && c < 0x7f);
                  });
  return ok ? r : std::string();
}

}  // namespace

ErrorReply error_reply(const s3::Error& e, const std::string& bucket, conf::Signature sig) {
  const bool http_answer = e.code == s3::Errc::kNotFound || e.code == s3::Errc::kForbidden ||
                           e.code == s3::Errc::kAuth || e.code == s3::Errc::kServer ||
                           e.code == s3::Errc::kHttp;
  if (sig == conf::Signature::kNone && e.http_status != 0 && http_answer) {
    if (!e.answer) {
      return {502, "Bad Gateway",
              "upstream answered " + std::to_string(e.http_status) +
                  " with a body over 64 KiB or cut short; not passed on\n"};
    }
    ErrorReply r;
    r.status = e.http_status;
    r.reason = safe_reason(e.answer->reason);
    r.body = e.answer->body;
    r.passed = true;
    r.note = e.http_status == 403 ? ErrorNote::kAnonymousDenied : ErrorNote::kNone;
    r.headers = replayable_headers(e.answer->head.headers);
    // What a stored object keeps apart (proxy/freshness.h), a passed answer relays as it is;
    // its Content-Encoding describes the body relayed with it.
    for (const char* name : {"Content-Type", "Content-Encoding", "ETag", "Last-Modified"}) {
      for (const auto& [k, v] : e.answer->head.headers) {
        if (iequals(k, name)) {
          r.headers.emplace_back(k, v);
        }
      }
    }
    return r;
  }
  switch (e.code) {
    case s3::Errc::kNotFound:
      return {404, "Not Found", "not found in bucket " + bucket + "\n"};
    case s3::Errc::kForbidden:
      if (sig == conf::Signature::kNone) {
        return {404, "Not Found", "not found (or not public) in bucket " + bucket + "\n",
                ErrorNote::kAnonymousDenied};
      }
      return {502, "Bad Gateway", "upstream denied access to the object\n"};
    case s3::Errc::kAuth:
      return {502, "Bad Gateway", "upstream rejected tusk's credentials (" + e.s3_code + ")\n",
              ErrorNote::kCredentialsRejected};
    case s3::Errc::kTls:
      return {502, "Bad Gateway", "upstream TLS verification failed\n", ErrorNote::kTlsFailed};
    case s3::Errc::kTimeout:
      return {504, "Gateway Timeout", "upstream timed out\n"};
    case s3::Errc::kRefused:
      return {502, "Bad Gateway", "upstream unreachable\n"};
    case s3::Errc::kPreconditionFailed:
    case s3::Errc::kRangeNotSatisfiable:
    case s3::Errc::kProtocol:
    case s3::Errc::kServer:
    case s3::Errc::kHttp:
    case s3::Errc::kCancelled:
      break;
  }
  return {502, "Bad Gateway", "upstream error: " + e.message + "\n"};
}

BodyPlan plan_body(const Conditions& c, const Validators& v,
                   const std::optional<std::vector<RangeSpec>>& ranges, std::uint64_t size) {
  switch (evaluate(c, v)) {
    case Precondition::kNotModified:
      return {BodyPlan::Kind::kNotModified, 304, "Not Modified", {}};
    case Precondition::kFailed:
      return {BodyPlan::Kind::kPreconditionFailed, 412, "Precondition Failed", {}};
    case Precondition::kProceed:
      break;
  }
  if (!ranges || !if_range_allows(c, v)) {
    return {};
  }
  RangeDecision d = resolve_ranges(*ranges, size);
  switch (d.kind) {
    case RangeKind::kFull:
      return {};
    case RangeKind::kUnsatisfiable:
      return {BodyPlan::Kind::kUnsatisfiable, 416, "Range Not Satisfiable", {}};
    case RangeKind::kPartial:
      break;
  }
  const BodyPlan::Kind kind =
      d.spans.size() == 1 ? BodyPlan::Kind::kSingle : BodyPlan::Kind::kMultipart;
  return {kind, 206, "Partial Content", std::move(d.spans)};
}

}  // namespace proxy
