// The end of a request: tusk's own error answers (the Synth step), the one reply a request
// gives its Exchange, and the access-log line. proxy/request.cc holds the steps before.
#include <event2/buffer.h>
#include <spdlog/spdlog.h>

#include "proxy/access_log.h"
#include "proxy/decide.h"
#include "proxy/request.h"
#include "s3/printable.h"

namespace proxy {

// ---------------------------------------------------------------- Synth and the end

// An error answer of tusk's own: recorded here, sent by the Synth step.
Request::Next Request::synth(int status, const char* reason, std::string body, Headers extra) {
  synth_ = Synth{status, reason, std::move(body), std::move(extra), false};
  step_ = Step::kSynth;
  return Next::kContinue;
}

Request::Next Request::send_synth() {
  outcome_ = synth_.passed ? Outcome::kPass : Outcome::kError;
  status_ = synth_.status;
  ResponseHeaders& out = ex_->out();
  // Deliver may have begun the headers before deciding on an error (412, 416).
  for (const char* name : {"X-Cache", "Content-Type", "Cache-Control", "Content-Length", "Date"}) {
    out.remove(name);
  }
  if (!synth_.passed) {
    out.add("Content-Type", "text/plain; charset=utf-8");
    out.add("Cache-Control", "no-store");
  }
  if (find_field(synth_.headers, "date") == nullptr) {
    out.add("Date", cached_http_date(svc_.clock()));
  }
  out.add("X-Cache", outcome_name(outcome_));
  for (const auto& [k, v] : synth_.headers) {
    out.add(k, v);
  }
  evbuffer* buf = evbuffer_new();
  if (!head_only_) {
    evbuffer_add(buf, synth_.body.data(), synth_.body.size());
  } else {
    out.add("Content-Length", std::to_string(synth_.body.size()));
  }
  reply(synth_.status, synth_.reason.c_str(), buf);
  evbuffer_free(buf);
  return Next::kDone;
}

Request::Next Request::synth_upstream_error(const s3::Error& e) {
  ErrorReply r = error_reply(e, target_.bucket, upstream_->signature);
  switch (r.note) {
    case ErrorNote::kNone:
      break;
    case ErrorNote::kAnonymousDenied:
      spdlog::warn("upstream '{}' denied anonymous access to {}/{}: not found or forbidden",
                   target_.upstream, target_.bucket, s3::printable(target_.key));
      break;
    case ErrorNote::kCredentialsRejected:
      spdlog::error("upstream '{}' rejected tusk's credentials: {}", target_.upstream, e.message);
      break;
    case ErrorNote::kTlsFailed:
      // Will not heal by retrying; the message (escaped by s3::Client) names the host.
      spdlog::error("upstream '{}': {}", target_.upstream, e.message);
      break;
  }
  if (r.passed) {
    synth_ = Synth{r.status, std::move(r.reason), std::move(r.body), std::move(r.headers), true};
    step_ = Step::kSynth;
    return Next::kContinue;
  }
  return synth(r.status, r.reason.c_str(), std::move(r.body));
}

void Request::finish(int status) {
  if (finished_) {
    return;
  }
  finished_ = true;
  step_ = Step::kDone;
  svc_.metrics.request(outcome_, status);
  if (svc_.access_log) {
    AccessEntry e;
    e.unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
    e.client = log_.client;
    e.method = method_;
    e.target = target_uri_;
    e.minor = log_.minor;
    e.status = status;
    e.bytes = body_bytes_;
    e.outcome = outcome_name(outcome_);
    e.range = range_header_;
    e.referer = log_.referer;
    e.user_agent = log_.user_agent;
    e.user = log_.user;
    e.upstream_ms = upstream_ms_;
    e.total_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0_).count();
    svc_.access_log->write(e);  // escapes and bounds every client string
  }
  ex_ = nullptr;
  // The last reference may be this one: release it after the current call stack unwinds.
  loop_.post([self = std::move(self_)] {});
}

Exchange* Request::take_exchange() {
  // The reply call that follows may end the exchange and, with keep-alive, hand the connection
  // to the next request before it returns: unhook our close handler first and never touch the
  // exchange again.
  Exchange* ex = ex_;
  if (ex != nullptr) {
    ex->set_close_handler(nullptr, nullptr);
  }
  ex_ = nullptr;
  return ex;
}

void Request::reply(int status, const char* reason, evbuffer* body) {
  take_exchange()->reply(status, reason, body);
  finish(status);
}

void Request::abort_connection() {
  int status = status_;
  closed_ = true;
  if (Exchange* ex = take_exchange()) {
    ex->abort();
  }
  finish(status);
}

void Request::on_close(void* arg) {
  auto* self = static_cast<Request*>(arg);
  self->closed_ = true;
  self->ex_ = nullptr;
  self->finish(499);  // nginx's "client closed request"
}

}  // namespace proxy
