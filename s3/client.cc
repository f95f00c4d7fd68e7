// The S3/Walrus client: request signing (sign_request), S3 XML errors, and libcurl's multi
// interface driven by libevent (the shape of curl's docs/examples/multi-event.c, without its
// globals). Tricky: user callbacks run from inside curl callbacks, where curl forbids removing or
// adding easy handles; so while we are "busy" (curl or a user callback is on the stack) cancels
// and starts are queued and applied by a deferred event on the same base. A Transfer::State is
// kept alive by the Impl while curl knows its handle, and by the Transfer while the owner holds it.
#include "s3/client.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <pugixml.hpp>
#include <unordered_map>
#include <vector>

#include "conf/check.h"
#include "s3/printable.h"

namespace s3 {
namespace {

// curl's receive buffer for GET bodies (its default is 16 KiB; see make_easy).
constexpr long kReceiveBuffer = 512L << 10;

// --- RAII owners of the C handles (move-only via unique_ptr) ---
struct CurlEasyFree {
  void operator()(CURL* e) const { curl_easy_cleanup(e); }
};
struct CurlMultiFree {
  void operator()(CURLM* m) const { curl_multi_cleanup(m); }
};
struct CurlSlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
struct EventFree {
  void operator()(event* e) const { event_free(e); }
};
struct EventBaseFree {
  void operator()(event_base* b) const { event_base_free(b); }
};
struct FileClose {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using CurlEasy = std::unique_ptr<CURL, CurlEasyFree>;
using CurlMulti = std::unique_ptr<CURLM, CurlMultiFree>;
using CurlSlist = std::unique_ptr<curl_slist, CurlSlistFree>;
using EventPtr = std::unique_ptr<event, EventFree>;
using EventBasePtr = std::unique_ptr<event_base, EventBaseFree>;
using FilePtr = std::unique_ptr<std::FILE, FileClose>;

constexpr std::size_t kMaxErrorBody = 64 * 1024;
constexpr const char* kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

// What counts as an answer (to on_head and on_data) rather than an error (to on_done). A
// `signature: none` upstream may be any HTTP origin: only 200, 206 and 304 are answers; any other
// status (203, 204, 299, ...) is an error its caller may pass through to its client as it is.
bool ok_status(int status, bool strict) {
  if (strict) {
    return status == 200 || status == 206 || status == 304;
  }
  return (status >= 200 && status < 300) || status == 304;
}

const char* method_name(Method m) {
  switch (m) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPut:
      return "PUT";
    case Method::kDelete:
      return "DELETE";
  }
  return "GET";
}

std::string encoded_path(const UrlParts& ep, const Request& req) {
  if (!req.path.empty()) {
    return ep.path + req.path;
  }
  return ep.path + "/" + uri_encode(req.bucket, false) + "/" + uri_encode(req.key, true);
}

// "?a=1&b" in the caller's order, each name and value encoded; "" without parameters.
std::string encoded_query(const Request& req) {
  std::string out;
  for (const auto& [k, v] : req.query) {
    out += out.empty() ? '?' : '&';
    out += uri_encode(k, false);
    out += '=';
    out += uri_encode(v, false);
  }
  return out;
}

// The S3 sub-resources a V2 signature covers (the AWS S3 V2 signing documentation's list),
// "?name[=value]&..." sorted by name, values raw; "" when the query has none.
std::string v2_subresources(const Request& req) {
  std::vector<std::pair<std::string, std::string>> sub;
  for (const auto& kv : req.query) {
    if (is_v2_subresource(kv.first)) {
      sub.push_back(kv);
    }
  }
  std::sort(sub.begin(), sub.end());
  std::string out;
  for (const auto& [k, v] : sub) {
    out += out.empty() ? '?' : '&';
    out += k;
    if (!v.empty()) {
      out += '=' + v;
    }
  }
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Pure helpers

const char* errc_name(Errc e) {
  switch (e) {
    case Errc::kNotFound:
      return "not_found";
    case Errc::kForbidden:
      return "forbidden";
    case Errc::kAuth:
      return "auth";
    case Errc::kPreconditionFailed:
      return "precondition_failed";
    case Errc::kRangeNotSatisfiable:
      return "range_not_satisfiable";
    case Errc::kRefused:
      return "refused";
    case Errc::kTls:
      return "tls";
    case Errc::kTimeout:
      return "timeout";
    case Errc::kProtocol:
      return "protocol";
    case Errc::kServer:
      return "server";
    case Errc::kHttp:
      return "http";
    case Errc::kCancelled:
      return "cancelled";
  }
  return "unknown";
}

std::string ResponseHead::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (iequals(n, name)) {
      return v;
    }
  }
  return {};
}

std::optional<std::uint64_t> ResponseHead::content_length() const {
  std::string v = header("Content-Length");
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size()) {
    return std::nullopt;
  }
  return n;
}

XmlError parse_error_xml(std::string_view body) {
  XmlError out;
  pugi::xml_document doc;
  if (body.empty() || !doc.load_buffer(body.data(), body.size())) {
    return out;
  }
  // S3 answers <Error>; the EC2 Query API nests it in <Response><Errors>. Match by local name so
  // a namespace prefix does not matter.
  pugi::xml_node err = doc.find_node([](const pugi::xml_node& n) {
    std::string_view name = n.name();
    auto colon = name.rfind(':');
    return (colon == std::string_view::npos ? name : name.substr(colon + 1)) == "Error";
  });
  if (!err) {
    return out;
  }
  out.code = err.child_value("Code");
  out.message = err.child_value("Message");
  out.region = err.child_value("Region");
  return out;
}

Errc classify(int http_status, std::string_view s3_code) {
  if (s3_code == "NoSuchKey" || s3_code == "NoSuchBucket") {
    return Errc::kNotFound;
  }
  if (s3_code == "SignatureDoesNotMatch" || s3_code == "InvalidAccessKeyId" ||
      s3_code == "RequestTimeTooSkewed" || s3_code == "AuthorizationHeaderMalformed" ||
      s3_code == "InvalidToken" || s3_code == "ExpiredToken") {
    return Errc::kAuth;
  }
  switch (http_status) {
    case 404:
      return Errc::kNotFound;
    case 403:
      return Errc::kForbidden;
    case 412:
      return Errc::kPreconditionFailed;
    case 416:
      return Errc::kRangeNotSatisfiable;
    default:
      break;
  }
  return http_status >= 500 ? Errc::kServer : Errc::kHttp;
}

SignedRequest sign_request(const conf::Upstream& upstream, const Request& req, std::time_t now) {
  UrlParts ep = split_url(upstream.endpoint);
  std::string path = encoded_path(ep, req);
  SignedRequest out;
  out.url = ep.scheme + "://" + ep.authority + path + encoded_query(req);

  HeaderList& h = out.headers;
  if (req.range) {
    h.emplace_back("Range", "bytes=" + std::to_string(req.range->first) + "-" +
                                std::to_string(req.range->last));
  }
  if (!req.if_match.empty()) {
    h.emplace_back("If-Match", req.if_match);
  }
  if (!req.if_none_match.empty()) {
    h.emplace_back("If-None-Match", req.if_none_match);
  }
  if (!req.if_modified_since.empty()) {
    h.emplace_back("If-Modified-Since", req.if_modified_since);
  }
  for (const auto& extra : req.extra_headers) {
    h.push_back(extra);
  }
  Credentials creds{upstream.access_key, upstream.secret_key};
  const char* method = method_name(req.method);

  switch (upstream.signature) {
    case conf::Signature::kNone:
      break;
    case conf::Signature::kV2: {
      // Walrus: Date only (4.x OSG mis-handles x-amz-date), resource without the service path.
      h.emplace_back("Date", http_date(now));
      V2Input in;
      in.method = method;
      in.date = h.back().second;
      in.headers = h;
      in.resource = "/" + uri_encode(req.bucket, false) + "/" + uri_encode(req.key, true) +
                    v2_subresources(req);
      h.emplace_back("Authorization", v2_authorization(creds, in));
      break;
    }
    case conf::Signature::kV4: {
      std::string payload = kEmptySha256;
      if (req.method == Method::kPut) {
        if (!req.body_file.empty()) {
          payload = req.body_sha256.empty() ? "UNSIGNED-PAYLOAD" : req.body_sha256;
        } else {
          payload = sha256_hex(req.body);
        }
      }
      h.emplace_back("x-amz-date", amz_date(now));
      h.emplace_back("x-amz-content-sha256", payload);
      V4Input in;
      in.method = method;
      in.canonical_uri = path;
      in.query = req.query;
      in.headers = h;
      in.headers.emplace_back("host", ep.authority);  // curl sends it; we must sign it
      in.payload_hash = payload;
      in.region = upstream.region;
      in.amz_date = amz_date(now);
      h.emplace_back("Authorization", v4_sign(creds, in).authorization);
      break;
    }
  }
  for (const auto& f : req.forward_headers) {
    h.push_back(f);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Transfer state and the multi driver

struct Transfer::State {
  Client::Impl* impl = nullptr;  // null once the Client is gone
  CurlEasy easy;
  CurlSlist header_list;
  Callbacks cb;

  // PUT body source: `body` from memory, or `file`.
  std::string body;
  std::size_t body_off = 0;
  FilePtr file;

  ResponseHead head;       // the current (last) header block
  std::string reason;      // reason phrase of the last status line
  bool head_done = false;  // on_head handled (first body byte, or completion)
  bool aborted = false;    // on_head/on_data returned false
  bool cancelled = false;  // the owner dropped the Transfer: no more callbacks, ever
  bool finished = false;   // on_done delivered
  bool in_multi = false;
  std::string error_body;            // non-2xx body, capped at kMaxErrorBody
  std::uint64_t error_body_bytes = 0;  // all of it, counted
  bool strict_status = false;          // ok_status(…, strict): the upstream signs nothing
  bool ok() const { return ok_status(head.status, strict_status); }
  std::optional<Error> setup_error;  // reported from the loop, never from start()
  char errbuf[CURL_ERROR_SIZE] = {};

  // Header lines arrive one per call; a status line starts a new block (100-continue, 3xx).
  static std::size_t on_header(char* p, std::size_t size, std::size_t n, void* ud);
  static std::size_t on_write(char* p, std::size_t size, std::size_t n, void* ud);
  static std::size_t on_read(char* p, std::size_t size, std::size_t n, void* ud);
  bool deliver_head();
};

struct Client::Impl {
  event_base* base = nullptr;
  conf::Upstream upstream;
  CurlMulti multi;
  EventPtr timer;
  EventPtr deferred;  // applies queued adds/cancels once no callback is on the stack
  std::unordered_map<curl_socket_t, EventPtr> sockets;
  std::unordered_map<CURL*, std::shared_ptr<Transfer::State>> running;
  std::vector<std::shared_ptr<Transfer::State>> to_add;
  std::vector<std::shared_ptr<Transfer::State>> to_reap;
  std::uint64_t started = 0;
  int busy = 0;  // > 0 while curl or a user callback may be on the stack

  ~Impl();
  void dispatch(curl_socket_t fd, int flags);
  void run_deferred();
  void finish(const std::shared_ptr<Transfer::State>& st, CURLcode rc);
  void cancel(const std::shared_ptr<Transfer::State>& st);
  void reap(Transfer::State& st);
  void wake() { event_active(deferred.get(), EV_TIMEOUT, 0); }

  static int on_socket_change(CURL* e, curl_socket_t s, int what, void* userp, void* socketp);
  static int on_timer_change(CURLM* m, long timeout_ms, void* userp);
  static void on_socket_event(evutil_socket_t fd, short what, void* arg);
  static void on_timer_event(evutil_socket_t fd, short what, void* arg);
  static void on_deferred_event(evutil_socket_t fd, short what, void* arg);
};

std::size_t Transfer::State::on_header(char* p, std::size_t size, std::size_t n, void* ud) {
  auto* st = static_cast<State*>(ud);
  std::size_t len = size * n;
  if (st->cancelled) {
    return 0;
  }
  std::string_view line = trim(std::string_view(p, len));
  if (line.size() >= 5 && line.substr(0, 5) == "HTTP/") {
    st->head = ResponseHead{};
    st->reason.clear();
    auto sp = line.find(' ');
    if (sp != std::string_view::npos) {
      std::string_view rest = line.substr(sp + 1);
      std::from_chars(rest.data(), rest.data() + rest.size(), st->head.status);
      auto sp2 = rest.find(' ');
      st->reason = sp2 == std::string_view::npos ? "" : std::string(trim(rest.substr(sp2 + 1)));
    }
  } else if (!line.empty() && (p[0] == ' ' || p[0] == '\t') && !st->head.headers.empty()) {
    st->head.headers.back().second += ' ';  // obsolete line folding
    st->head.headers.back().second += line;
  } else if (auto colon = line.find(':'); colon != std::string_view::npos) {
    st->head.headers.emplace_back(std::string(trim(line.substr(0, colon))),
                                  std::string(trim(line.substr(colon + 1))));
  }
  return len;
}

bool Transfer::State::deliver_head() {
  head_done = true;
  if (ok() && cb.on_head && !cb.on_head(head)) {
    aborted = true;
  }
  return !aborted && !cancelled;
}

std::size_t Transfer::State::on_write(char* p, std::size_t size, std::size_t n, void* ud) {
  auto* st = static_cast<State*>(ud);
  std::size_t len = size * n;
  if (st->cancelled || st->aborted) {
    return 0;
  }
  if (!st->head_done && !st->deliver_head()) {
    return 0;
  }
  if (!st->ok()) {
    st->error_body_bytes += len;
    std::size_t room = kMaxErrorBody - std::min(kMaxErrorBody, st->error_body.size());
    st->error_body.append(p, std::min(room, len));
    return len;
  }
  if (st->cb.on_data && !st->cb.on_data(std::span<const char>(p, len))) {
    st->aborted = true;
  }
  // The callback may also have dropped its own Transfer: stop curl either way.
  return st->aborted || st->cancelled ? 0 : len;
}

std::size_t Transfer::State::on_read(char* p, std::size_t size, std::size_t n, void* ud) {
  auto* st = static_cast<State*>(ud);
  if (st->cancelled) {
    return CURL_READFUNC_ABORT;
  }
  std::size_t len = size * n;
  if (st->file) {
    std::size_t got = std::fread(p, 1, len, st->file.get());
    if (got == 0 && std::ferror(st->file.get())) {
      return CURL_READFUNC_ABORT;
    }
    return got;
  }
  std::size_t take = std::min(len, st->body.size() - st->body_off);
  std::copy_n(st->body.data() + st->body_off, take, p);
  st->body_off += take;
  return take;
}

Client::Impl::~Impl() {
  // Detach every State first: their Transfers may outlive us and must then do nothing.
  for (auto& [easy, st] : running) {
    curl_multi_remove_handle(multi.get(), easy);
    st->in_multi = false;
    st->impl = nullptr;
  }
  for (auto& st : to_add) {
    st->impl = nullptr;
  }
  for (auto& st : to_reap) {
    st->impl = nullptr;
  }
  running.clear();
  multi.reset();  // may call on_socket_change(REMOVE); the sockets map is still alive
  sockets.clear();
  timer.reset();
  deferred.reset();
}

int Client::Impl::on_socket_change(CURL*, curl_socket_t s, int what, void* userp, void*) {
  auto* impl = static_cast<Impl*>(userp);
  if (what == CURL_POLL_REMOVE) {
    impl->sockets.erase(s);
    return 0;
  }
  short kind = EV_PERSIST;
  kind |= (what & CURL_POLL_IN) ? EV_READ : 0;
  kind |= (what & CURL_POLL_OUT) ? EV_WRITE : 0;
  // A fresh event per change: freeing an event from inside its own callback is safe in libevent,
  // re-assigning one is not.
  EventPtr ev(event_new(impl->base, s, kind, on_socket_event, impl));
  event_add(ev.get(), nullptr);
  impl->sockets[s] = std::move(ev);
  return 0;
}

int Client::Impl::on_timer_change(CURLM*, long timeout_ms, void* userp) {
  auto* impl = static_cast<Impl*>(userp);
  if (timeout_ms < 0) {
    evtimer_del(impl->timer.get());
    return 0;
  }
  // Never call curl from here (curl forbids re-entry): a 0 ms timer fires on the next turn.
  timeval tv{timeout_ms / 1000, static_cast<suseconds_t>((timeout_ms % 1000) * 1000)};
  evtimer_add(impl->timer.get(), &tv);
  return 0;
}

void Client::Impl::on_socket_event(evutil_socket_t fd, short what, void* arg) {
  int flags = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
  static_cast<Impl*>(arg)->dispatch(fd, flags);
}

void Client::Impl::on_timer_event(evutil_socket_t, short, void* arg) {
  static_cast<Impl*>(arg)->dispatch(CURL_SOCKET_TIMEOUT, 0);
}

void Client::Impl::on_deferred_event(evutil_socket_t, short, void* arg) {
  static_cast<Impl*>(arg)->run_deferred();
}

void Client::Impl::dispatch(curl_socket_t fd, int flags) {
  ++busy;
  int still_running = 0;
  curl_multi_socket_action(multi.get(), fd, flags, &still_running);
  int left = 0;
  while (CURLMsg* m = curl_multi_info_read(multi.get(), &left)) {
    if (m->msg != CURLMSG_DONE) {
      continue;
    }
    // Copy before removing: the message belongs to the handle.
    CURL* easy = m->easy_handle;
    CURLcode rc = m->data.result;
    auto it = running.find(easy);
    if (it == running.end()) {
      continue;
    }
    auto st = it->second;
    running.erase(it);
    curl_multi_remove_handle(multi.get(), easy);  // not inside a curl callback here
    st->in_multi = false;
    finish(st, rc);
  }
  --busy;
  if (!to_add.empty() || !to_reap.empty()) {
    wake();
  }
}

void Client::Impl::run_deferred() {
  ++busy;
  auto adds = std::move(to_add);
  to_add.clear();
  for (auto& st : adds) {
    if (st->cancelled) {
      continue;
    }
    if (st->setup_error) {
      finish(st, CURLE_OK);
      continue;
    }
    if (curl_multi_add_handle(multi.get(), st->easy.get()) != CURLM_OK) {
      st->setup_error = Error{Errc::kProtocol, 0, {}, "upstream: cannot add transfer to curl"};
      finish(st, CURLE_OK);
      continue;
    }
    st->in_multi = true;
    running[st->easy.get()] = st;
    ++started;
  }
  --busy;
  // Reaping last: nothing of ours is on the stack now, so removing handles is allowed.
  auto reaps = std::move(to_reap);
  to_reap.clear();
  for (auto& st : reaps) {
    reap(*st);
  }
  if (!to_add.empty() || !to_reap.empty()) {
    wake();
  }
}

void Client::Impl::reap(Transfer::State& st) {
  if (st.in_multi) {
    running.erase(st.easy.get());
    curl_multi_remove_handle(multi.get(), st.easy.get());
    st.in_multi = false;
  }
  st.cb = Callbacks{};  // drop captures now; nothing will call them again
}

void Client::Impl::cancel(const std::shared_ptr<Transfer::State>& st) {
  if (busy > 0) {
    to_reap.push_back(st);
    wake();
    return;
  }
  reap(*st);
}

namespace {

// TLS failures that trying again cannot heal: the upstream's certificate does not verify against
// our trust store (or our pin, CRL, issuer), or the local TLS setup (CA file, ciphers, engine) is
// wrong. A handshake that merely broke off (CURLE_SSL_CONNECT_ERROR) may be transient and is not
// here. nullptr for every other code; else what failed, for the message.
const char* permanent_tls_failure(CURLcode rc) {
  switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
      return "TLS certificate verification failed";
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CLIENTCERT:
      return "TLS setup failed";
    default:
      return nullptr;
  }
}

// `host` is the endpoint's authority, named in TLS messages (the certificate was for it).
Error curl_error(CURLcode rc, const char* errbuf, std::string_view host) {
  Error e;
  std::string detail = curl_easy_strerror(rc);
  if (errbuf[0] != '\0') {
    // curl's own words, but they quote the peer (a certificate's subject, a reason it sent).
    detail += " (" + printable(errbuf) + ")";
  }
  if (const char* tls = permanent_tls_failure(rc)) {
    e.code = Errc::kTls;
    e.message = std::string(tls) + " for " + printable(host) + ": " + detail;
    return e;
  }
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
      e.code = Errc::kRefused;
      break;
    case CURLE_OPERATION_TIMEDOUT:
      e.code = Errc::kTimeout;
      break;
    default:
      e.code = Errc::kProtocol;  // PARTIAL_FILE, RECV_ERROR, GOT_NOTHING, ...
      break;
  }
  e.message = std::string("upstream ") + errc_name(e.code) + ": " + detail;
  return e;
}

Error http_error(const ResponseHead& head, const std::string& reason, const std::string& body) {
  Error e;
  e.http_status = head.status;
  XmlError x = parse_error_xml(body);
  e.s3_code = x.code;
  e.code = classify(e.http_status, x.code);
  // Everything quoted from the answer is the upstream's text: escaped and bounded for the logs.
  e.message = "upstream " + std::to_string(e.http_status);
  if (!x.code.empty()) {
    e.message += " " + printable(x.code);
    if (!x.message.empty()) {
      e.message += ": " + printable(x.message);
    }
    if (!x.region.empty()) {
      e.message += " (region " + printable(x.region) + ")";
    }
  } else if (!reason.empty()) {
    e.message += " " + printable(reason);
  }
  if (e.http_status >= 300 && e.http_status < 400) {
    e.message += "; redirect to " + printable(head.header("Location")) + " not followed";
  }
  return e;
}

}  // namespace

void Client::Impl::finish(const std::shared_ptr<Transfer::State>& st, CURLcode rc) {
  if (st->cancelled || st->finished) {
    return;
  }
  if (rc == CURLE_OK && !st->setup_error && !st->head_done) {
    st->deliver_head();  // empty body: the head was not delivered by a first byte
  }
  if (st->cancelled) {
    return;  // on_head dropped its own Transfer
  }
  conf::Result<void, Error> result;
  if (st->setup_error) {
    result = conf::unexpected(*st->setup_error);
  } else if (st->aborted) {
    result = conf::unexpected(
        Error{Errc::kCancelled, st->head.status, {}, "upstream transfer aborted by the caller"});
  } else if (st->head.status != 0 && !st->ok()) {
    // An HTTP error wins over a transport error: the status is the better explanation even when
    // the error body was cut short.
    Error e = http_error(st->head, st->reason, st->error_body);
    if (rc == CURLE_OK && st->error_body_bytes <= kMaxErrorBody) {
      // The whole answer is here: its caller may pass it on as it is.
      e.answer = std::make_shared<Answer>(Answer{st->head, st->reason, std::move(st->error_body)});
    }
    result = conf::unexpected(std::move(e));
  } else if (rc != CURLE_OK) {
    Error e = curl_error(rc, st->errbuf, split_url(upstream.endpoint).authority);
    e.http_status = st->head.status;
    result = conf::unexpected(std::move(e));
  }
  st->finished = true;
  auto on_done = std::move(st->cb.on_done);
  st->cb = Callbacks{};
  if (on_done) {
    on_done(std::move(result));
  }
}

// ---------------------------------------------------------------------------------------------
// Transfer handle

Transfer::Transfer(std::shared_ptr<State> s) : state_(std::move(s)) {}
Transfer::Transfer(Transfer&& o) noexcept : state_(std::move(o.state_)) {}
Transfer& Transfer::operator=(Transfer&& o) noexcept {
  if (this != &o) {
    cancel();
    state_ = std::move(o.state_);
  }
  return *this;
}
Transfer::~Transfer() { cancel(); }

void Transfer::cancel() {
  if (!state_) {
    return;
  }
  auto st = std::move(state_);
  if (st->finished || st->cancelled) {
    return;
  }
  st->cancelled = true;
  if (st->impl != nullptr) {
    st->impl->cancel(st);
  }
}

bool Transfer::active() const { return state_ && !state_->finished && !state_->cancelled; }

// ---------------------------------------------------------------------------------------------
// Client

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() {
  TUSK_CHECK(impl_->busy == 0 && "a Client must not be destroyed from inside its callbacks");
}

conf::Result<std::unique_ptr<Client>, Error> Client::create(event_base* base,
                                                            const conf::Upstream& upstream) {
  // Process-wide and not thread-safe in older curls: done once, before any handle exists.
  static const CURLcode global_init = curl_global_init(CURL_GLOBAL_DEFAULT);
  auto fail = [](std::string what) {
    return conf::unexpected(Error{Errc::kProtocol, 0, {}, "upstream client: " + what});
  };
  if (global_init != CURLE_OK) {
    return fail("curl_global_init failed");
  }
  auto impl = std::make_unique<Impl>();
  impl->base = base;
  impl->upstream = upstream;
  impl->multi.reset(curl_multi_init());
  impl->timer.reset(evtimer_new(base, Impl::on_timer_event, impl.get()));
  impl->deferred.reset(event_new(base, -1, 0, Impl::on_deferred_event, impl.get()));
  if (!impl->multi || !impl->timer || !impl->deferred) {
    return fail("cannot create curl multi handle or events");
  }
  CURLM* m = impl->multi.get();
  curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, Impl::on_socket_change);
  curl_multi_setopt(m, CURLMOPT_SOCKETDATA, impl.get());
  curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, Impl::on_timer_change);
  curl_multi_setopt(m, CURLMOPT_TIMERDATA, impl.get());
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Transfer Client::start(Request req, Callbacks cb) {
  auto st = std::make_shared<Transfer::State>();
  st->impl = impl_.get();
  st->cb = std::move(cb);
  st->easy.reset(curl_easy_init());
  const conf::Upstream& up = impl_->upstream;
  st->strict_status = up.signature == conf::Signature::kNone;
  CURL* e = st->easy.get();
  if (e == nullptr) {
    st->setup_error = Error{Errc::kProtocol, 0, {}, "upstream: curl_easy_init failed"};
    impl_->to_add.push_back(st);
    impl_->wake();
    return Transfer(st);
  }

  if (req.method == Method::kPut && !req.body_file.empty()) {
    st->file.reset(std::fopen(req.body_file.c_str(), "rb"));
    struct stat sb {};
    if (!st->file || fstat(fileno(st->file.get()), &sb) != 0) {
      st->setup_error =
          Error{Errc::kProtocol, 0, {}, "upstream PUT: cannot open body file " + req.body_file};
    } else {
      curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(sb.st_size));
    }
  } else if (req.method == Method::kPut) {
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  }

  SignedRequest signed_req = sign_request(up, req, std::time(nullptr));
  st->body = std::move(req.body);
  curl_slist* list = nullptr;
  auto append = [&](const std::string& line) {
    if (curl_slist* l = curl_slist_append(list, line.c_str())) {
      list = l;
    }
  };
  for (const auto& [name, value] : signed_req.headers) {
    append(value.empty() ? name + ";" : name + ": " + value);  // "Name;" sends an empty value
  }
  append("Expect:");  // no 100-continue round trip on PUT
  st->header_list.reset(list);

  curl_easy_setopt(e, CURLOPT_URL, signed_req.url.c_str());
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, st->header_list.get());
  curl_easy_setopt(e, CURLOPT_USERAGENT, "tusk/0.1");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(up.connect_timeout.count()));
  // "No byte for stall_timeout": curl's low-speed check has one-second resolution.
  long stall_s = std::max<long>(1, static_cast<long>((up.stall_timeout.count() + 999) / 1000));
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, stall_s);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, up.tls_verify ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, up.tls_verify ? 2L : 0L);
  if (!up.ca_file.empty()) {
    curl_easy_setopt(e, CURLOPT_CAINFO, up.ca_file.c_str());
  }
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, st->errbuf);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, Transfer::State::on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, st.get());
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, Transfer::State::on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, st.get());
  switch (req.method) {
    case Method::kGet:
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
      // Bodies are written where they arrive (a cache file, a spool): with curl's default
      // 16 KiB receive buffer a 1 GiB fill costs 65k recv + write callbacks (each a pwrite and
      // a progress wake-up of the clients reading along). A larger buffer fills only as fast
      // as bytes arrive (recv returns what is there), so it adds no latency.
      curl_easy_setopt(e, CURLOPT_BUFFERSIZE, kReceiveBuffer);
      break;
    case Method::kHead:
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
      break;
    case Method::kPut:
      curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
      curl_easy_setopt(e, CURLOPT_READFUNCTION, Transfer::State::on_read);
      curl_easy_setopt(e, CURLOPT_READDATA, st.get());
      break;
    case Method::kDelete:
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE");
      break;
  }
  // Added from the loop, so no callback can run inside start() and a start() from inside a
  // callback never touches curl re-entrantly.
  impl_->to_add.push_back(st);
  impl_->wake();
  return Transfer(st);
}

const conf::Upstream& Client::upstream() const { return impl_->upstream; }

std::uint64_t Client::requests_started() const { return impl_->started; }

conf::Result<Client::Collected, Error> Client::perform(const conf::Upstream& upstream,
                                                       Request req) {
  EventBasePtr base(event_base_new());
  if (!base) {
    return conf::unexpected(Error{Errc::kProtocol, 0, {}, "upstream: event_base_new failed"});
  }
  auto client = create(base.get(), upstream);
  if (!client) {
    return conf::unexpected(client.error());
  }
  Collected out;
  std::optional<conf::Result<void, Error>> done;
  Callbacks cb;
  cb.on_head = [&](const ResponseHead& h) {
    out.head = h;
    return true;
  };
  cb.on_data = [&](std::span<const char> d) {
    out.body.append(d.data(), d.size());
    return true;
  };
  cb.on_done = [&](conf::Result<void, Error> r) {
    done = std::move(r);
    event_base_loopbreak(base.get());
  };
  Transfer t = (*client)->start(std::move(req), std::move(cb));
  event_base_dispatch(base.get());
  if (!done) {
    return conf::unexpected(Error{Errc::kProtocol, 0, {}, "upstream: event loop ended early"});
  }
  if (!*done) {
    return conf::unexpected(done->error());
  }
  return out;
}

}  // namespace s3
