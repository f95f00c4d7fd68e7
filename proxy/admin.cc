#include "proxy/admin.h"

#include <event2/buffer.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <map>
#include <nlohmann/json.hpp>

#include "cache/digest.h"
#include "proxy/decide.h"
#include "proxy/router.h"
#include "s3/printable.h"

namespace proxy {

using json = nlohmann::json;

bool constant_time_equal(std::string_view a, std::string_view b) {
  // The length is not secret (it leaks through timing anyway); the bytes are.
  if (a.size() != b.size()) {
    return false;
  }
  return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

AuthVerdict authorize(std::string_view authorization, const std::string& token, bool mutating) {
  if (token.empty()) {
    return mutating ? AuthVerdict::kNotConfigured : AuthVerdict::kOk;
  }
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size()) {
    return AuthVerdict::kMissing;
  }
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(authorization[i])) != kScheme[i]) {
      return AuthVerdict::kMissing;
    }
  }
  std::string_view given = authorization.substr(kScheme.size());
  while (!given.empty() && given.front() == ' ') {
    given.remove_prefix(1);
  }
  return constant_time_equal(given, token) ? AuthVerdict::kOk : AuthVerdict::kWrong;
}

namespace {

// The query string's parameters, percent-decoded ('+' is a space, as forms send it). Nullopt
// when an escape is malformed.
std::optional<std::map<std::string, std::string>> parse_query(std::string_view target) {
  std::map<std::string, std::string> out;
  const std::size_t q = target.find('?');
  if (q == std::string_view::npos) {
    return out;
  }
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    const std::size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    if (pair.empty()) {
      continue;
    }
    const std::size_t eq = pair.find('=');
    std::string name(pair.substr(0, eq));
    std::string value(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    for (std::string* s : {&name, &value}) {
      std::replace(s->begin(), s->end(), '+', ' ');
      auto d = percent_decode(*s);
      if (!d) {
        return std::nullopt;
      }
      *s = std::move(*d);
    }
    out[std::move(name)] = std::move(value);
  }
  return out;
}

const char* reason_of(int code) {
  switch (code) {
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 503:
      return "Service Unavailable";
    default:
      return "Error";
  }
}

void send_json(Exchange& ex, int code, const json& body) {
  std::string text = body.dump(2, ' ', false, json::error_handler_t::replace);
  text += '\n';
  ex.out().add("Content-Type", "application/json");
  ex.out().add("Cache-Control", "no-store");
  evbuffer* buf = evbuffer_new();
  evbuffer_add(buf, text.data(), text.size());
  ex.reply(code, reason_of(code), buf);
  evbuffer_free(buf);
}

void send_error(Exchange& ex, int code, std::string message) {
  send_json(ex, code, json{{"error", std::move(message)}});
}

json object_json(const cache::Meta& m, const conf::Config& config) {
  json o;
  auto path = public_path(config, m.key);
  o["path"] = path ? json(*path) : json(nullptr);
  // The key is endpoint \n bucket \n key (make_cache_key); name the upstream by its endpoint.
  const std::size_t a = m.key.find('\n');
  const std::size_t b = a == std::string::npos ? a : m.key.find('\n', a + 1);
  std::string upstream;
  if (a != std::string::npos) {
    for (const auto& [name, up] : config.upstreams) {
      if (up.endpoint == std::string_view(m.key).substr(0, a)) {
        upstream = name;
      }
    }
  }
  o["upstream"] = upstream.empty() ? json(nullptr) : json(upstream);
  o["bucket"] = b == std::string::npos ? json(nullptr) : json(m.key.substr(a + 1, b - a - 1));
  o["key"] = b == std::string::npos ? json(nullptr) : json(s3::printable(m.key.substr(b + 1)));
  o["size"] = m.size;
  o["cached_bytes"] = std::min<std::uint64_t>(m.size, [&] {
    std::uint64_t n = 0;
    for (std::uint64_t c = 0; c < m.chunk_count(); ++c) {
      if (m.has_chunk(c)) {
        n += std::min<std::uint64_t>(m.chunk_size, m.size - c * m.chunk_size);
      }
    }
    return n;
  }());
  o["complete"] = m.complete();
  o["integrity"] = m.verified                                ? "verified"
                   : cache::md5_of_etag(m.etag).empty() ? "unverifiable"
                                                        : "unverified";
  o["etag"] = m.etag;
  o["stored_at"] = m.stored_at;
  o["expires_at"] = m.expires_at;
  o["accessed_at"] = m.accessed_at;
  return o;
}

json job_json(const JobView& v) {
  json objects = json::array();
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  std::size_t done = 0;
  std::size_t errors = 0;
  for (const JobObject& o : v.objects) {
    bytes_done += o.bytes_done;
    bytes_total += o.bytes_total;
    const bool finished = o.state == "done" || o.state == "failed";
    done += finished ? 1 : 0;
    const bool bad = o.state == "failed" || o.result == "mismatch" || o.result == "error";
    errors += bad ? 1 : 0;
    objects.push_back({{"path", o.path},
                       {"state", o.state},
                       {"bytes_done", o.bytes_done},
                       {"bytes_total", o.bytes_total},
                       {"result", o.result.empty() ? json(nullptr) : json(o.result)},
                       {"error", o.error.empty() ? json(nullptr) : json(o.error)}});
  }
  return json{{"id", v.id},
              {"kind", v.kind},
              {"done", v.done},
              {"error", v.error.empty() ? json(nullptr) : json(v.error)},
              {"objects_total", v.objects.size()},
              {"objects_done", done},
              {"bytes_total", bytes_total},
              {"bytes_done", bytes_done},
              {"errors", errors + (v.error.empty() ? 0 : 1)},
              {"objects", std::move(objects)}};
}

}  // namespace

Admin::Admin(Services& svc, Reloader* reloader, std::function<int()> connections)
    : svc_(svc),
      reloader_(reloader),
      connections_(std::move(connections)),
      jobs_(std::make_unique<Jobs>(svc)) {}

Admin::~Admin() = default;

void Admin::handle(Exchange& ex) {
  const std::string& method = ex.head().method;
  const std::string& target = ex.head().target;
  const std::string path = target.substr(0, target.find('?'));
  const auto live = svc_.live();

  // Which calls exist, and with which methods.
  std::string allow;
  if (path == "/objects") {
    allow = "GET, HEAD, DELETE";
  } else if (path == "/warm" || path == "/verify" || path == "/reload") {
    allow = "POST";
  } else if (path.starts_with("/warm/") || path.starts_with("/verify/") || path == "/stats") {
    allow = "GET, HEAD";
  } else {
    return send_error(ex, 404, "unknown admin path " + s3::printable(path));
  }
  const bool mutating = method != "GET" && method != "HEAD";
  switch (authorize(ex.head().find("Authorization") ? *ex.head().find("Authorization") : "",
                    live->admin_token, mutating)) {
    case AuthVerdict::kOk:
      break;
    case AuthVerdict::kMissing:
      ex.out().add("WWW-Authenticate", "Bearer realm=\"tusk admin\"");
      return send_error(ex, 401, "this call needs Authorization: Bearer <admin token>");
    case AuthVerdict::kWrong:
      return send_error(ex, 403, "wrong admin token");
    case AuthVerdict::kNotConfigured:
      return send_error(ex, 403,
                        "admin.token_file is not configured: mutating calls are refused");
  }
  if (allow.find(method) == std::string::npos) {
    ex.out().add("Allow", allow);
    return send_error(ex, 405, path + " takes " + allow);
  }
  auto query = parse_query(target);
  if (!query) {
    return send_error(ex, 400, "malformed percent-escape in the query string");
  }
  auto param = [&](const char* name) -> std::string {
    auto it = query->find(name);
    return it == query->end() ? "" : it->second;
  };

  if (path == "/objects" && method != "DELETE") {
    std::size_t limit = 100;
    if (std::string l = param("limit"); !l.empty()) {
      auto [p, ec] = std::from_chars(l.data(), l.data() + l.size(), limit);
      if (ec != std::errc() || p != l.data() + l.size() || limit < 1 || limit > 1000) {
        return send_error(ex, 400, "limit must be 1..1000");
      }
    }
    const std::string prefix = param("prefix");
    const std::string after = param("after");
    if (!after.empty() && (after.size() != 64 || after.find_first_not_of("0123456789abcdef") !=
                                                     std::string::npos)) {
      return send_error(ex, 400, "after must be a cursor from a previous page's \"next\"");
    }
    auto page = svc_.store.list(after, limit, [&](const cache::Meta& m) {
      if (prefix.empty()) {
        return true;
      }
      auto p = public_path(*live->config, m.key);
      return p && p->starts_with(prefix);
    });
    if (!page) {
      return send_error(ex, 503, "cannot read the cache index: " + page.error().message);
    }
    json objects = json::array();
    for (const auto& item : page->items) {
      objects.push_back(object_json(item.meta, *live->config));
    }
    return send_json(ex, 200,
                     json{{"objects", std::move(objects)},
                          {"next", page->next.empty() ? json(nullptr) : json(page->next)}});
  }

  if (path == "/objects") {  // DELETE
    const std::string one = param("path");
    const std::string prefix = param("prefix");
    if (one.empty() == prefix.empty()) {
      return send_error(ex, 400, "give exactly one of path=P or prefix=P");
    }
    std::uint64_t purged = 0;
    // Every record (bounded pages) and fill in flight whose cache key `matches`.
    auto collect = [&](const std::function<bool(const std::string&)>& matches)
        -> conf::Result<std::vector<std::string>, std::string> {
      std::vector<std::string> keys;
      std::string cursor;
      do {
        auto page = svc_.store.list(cursor, 1000,
                                    [&](const cache::Meta& m) { return matches(m.key); });
        if (!page) {
          return conf::unexpected(page.error().message);
        }
        for (const auto& item : page->items) {
          keys.push_back(item.meta.key);
        }
        cursor = page->next;
      } while (!cursor.empty());
      for (const std::string& key : svc_.fills.keys()) {
        if (matches(key) && std::find(keys.begin(), keys.end(), key) == keys.end()) {
          keys.push_back(key);
        }
      }
      return keys;
    };
    std::vector<std::string> keys;
    if (!one.empty()) {
      auto routed = live->router.route("", one);
      if (!routed) {
        return send_error(ex, 404, "no route for " + s3::printable(one));
      }
      const std::string key = make_cache_key(live->config->upstreams.at(routed->upstream),
                                             routed->bucket, routed->key, routed->query);
      purged = purge_object(svc_, key);
      // The variants of an object known to vary (proxy/vary.h: "\n#" follows its key). The
      // index is in memory: after a restart, purge a varying object by prefix.
      if (svc_.fills.vary().find(key)) {
        const std::string variants = key + "\n#";
        auto found = collect([&](const std::string& k) { return k.starts_with(variants); });
        if (!found) {
          return send_error(ex, 503, "cannot read the cache index: " + found.error());
        }
        keys = std::move(*found);
      }
    } else {
      auto found = collect([&](const std::string& k) {
        auto p = public_path(*live->config, k);
        return p && p->starts_with(prefix);
      });
      if (!found) {
        return send_error(ex, 503, "cannot read the cache index: " + found.error());
      }
      keys = std::move(*found);
    }
    if (!keys.empty()) {
      // Fills in flight are abandoned, then every record goes in one commit per 1000.
      std::uint64_t here = 0;
      std::uint64_t abandoned_only = 0;
      for (const std::string& key : keys) {
        abandoned_only += svc_.fills.abandon(key) && !svc_.store.lookup(key) ? 1 : 0;
      }
      for (std::size_t i = 0; i < keys.size(); i += 1000) {
        const std::vector<std::string> batch(
            keys.begin() + static_cast<std::ptrdiff_t>(i),
            keys.begin() + static_cast<std::ptrdiff_t>(std::min(keys.size(), i + 1000)));
        auto removed = svc_.store.remove_many(batch);
        if (!removed) {
          return send_error(ex, 503, "cannot purge: " + removed.error().message);
        }
        here += *removed;
      }
      here += abandoned_only;
      svc_.metrics.purged(here);  // (purge_object counted its own)
      purged += here;
    }
    spdlog::info("admin: purged {} object(s) ({}{})", purged, one.empty() ? "prefix " : "",
                 s3::printable(one.empty() ? prefix : one));
    return send_json(ex, 200, json{{"purged", purged}});
  }

  if (path == "/warm") {
    const json body = json::parse(ex.body(), nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded() || !body.is_object()) {
      return send_error(ex, 400, "the body must be a JSON object");
    }
    conf::Result<std::string, std::string> id = conf::unexpected(std::string());
    if (body.contains("catalog") && body["catalog"].is_string()) {
      std::string base = body.contains("base") && body["base"].is_string() ? body["base"] : "";
      id = jobs_->warm_catalog(body["catalog"].get<std::string>(), std::move(base));
    } else if (body.contains("paths") && body["paths"].is_array()) {
      std::vector<std::string> paths;
      for (const auto& p : body["paths"]) {
        if (!p.is_string()) {
          return send_error(ex, 400, "\"paths\" must be an array of strings");
        }
        paths.push_back(p.get<std::string>());
      }
      if (paths.empty() || paths.size() > Jobs::kMaxObjects) {
        return send_error(ex, 400, "\"paths\" must name 1 to 100000 paths");
      }
      id = jobs_->warm_paths(std::move(paths));
    } else {
      return send_error(ex, 400, "give {\"catalog\": \"/catalog.json\"} or {\"paths\": [...]}");
    }
    if (!id) {
      return send_error(ex, 503, id.error());
    }
    return send_json(ex, 202, json{{"id", *id}});
  }

  if (path == "/verify") {
    auto id = jobs_->verify(param("prefix"));
    if (!id) {
      return send_error(ex, 503, id.error());
    }
    return send_json(ex, 202, json{{"id", *id}});
  }

  if (path.starts_with("/warm/") || path.starts_with("/verify/")) {
    const bool warm = path.starts_with("/warm/");
    const std::string id = path.substr(warm ? 6 : 8);
    auto v = jobs_->view(warm ? "warm" : "verify", id);
    if (!v) {
      return send_error(ex, 404, "no such job " + s3::printable(id));
    }
    return send_json(ex, 200, job_json(*v));
  }

  if (path == "/stats") {
    const cache::Stats st = svc_.store.stats();
    const Metrics::Summary m = svc_.metrics.summary();
    auto count = [&](Outcome o) { return m.outcomes[static_cast<int>(o)]; };
    const std::uint64_t hits =
        count(Outcome::kHit) + count(Outcome::kRevalidated) + count(Outcome::kStale);
    const std::uint64_t misses =
        count(Outcome::kMiss) + count(Outcome::kCoalesced) + count(Outcome::kPass);
    std::uint64_t requests = hits + misses + count(Outcome::kError);
    json outcomes;
    for (Outcome o : {Outcome::kHit, Outcome::kMiss, Outcome::kCoalesced, Outcome::kRevalidated,
                      Outcome::kStale, Outcome::kPass, Outcome::kError}) {
      outcomes[outcome_name(o)] = count(o);
    }
    return send_json(
        ex, 200,
        json{{"objects", st.objects},
             {"bytes", st.bytes},
             {"max_bytes", svc_.config.cache.max_size},
             {"fills_in_flight", svc_.fills.active()},
             {"connections", connections_ ? connections_() : 0},
             {"requests", requests},
             {"hits", hits},
             {"misses", misses},
             {"hit_ratio", hits + misses == 0 ? 0.0
                                              : static_cast<double>(hits) /
                                                    static_cast<double>(hits + misses)},
             {"outcomes", std::move(outcomes)},
             {"bytes_sent", m.bytes_from_cache + m.bytes_from_upstream},
             {"upstream_bytes", m.upstream_bytes},
             {"evictions", st.evictions},
             {"integrity_verified", m.integrity_verified},
             {"integrity_failures", m.integrity_failures},
             {"purged", m.purged},
             {"config_generation", live->generation},
             {"config_reloads", {{"ok", m.reloads_ok}, {"failed", m.reloads_failed}}}});
  }

  // POST /reload
  if (reloader_ == nullptr) {
    return send_error(ex, 503, "this tuskd has no configuration file to reload");
  }
  const ReloadResult r = reloader_->reload();
  if (!r.ok) {
    return send_json(ex, 400, json{{"result", "failed"}, {"error", r.error},
                                   {"generation", r.generation}});
  }
  return send_json(ex, 200, json{{"result", "ok"}, {"restart_needed", r.restart_needed},
                                 {"generation", r.generation}});
}

}  // namespace proxy
