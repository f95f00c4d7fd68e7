// The typed, validated configuration of tuskd (DESIGN.md "Configuration"). Loading turns YAML into
// these structs; every error names file:line:column. yaml-cpp and its exceptions stay inside
// conf/config*.cc (config_read.h is their internal header). Secrets (access/secret keys) are read
// from files or the environment here and are never part of an error message.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "conf/cidr.h"
#include "conf/client_auth.h"
#include "conf/result.h"

namespace conf {

using Seconds = std::chrono::seconds;
using Millis = std::chrono::milliseconds;

enum class Signature { kNone, kV2, kV4 };
enum class Prefetch { kNone, kWhole };
// A route's query string: ignored (not in the cache key, not forwarded), or part of the object's
// identity (in the cache key, forwarded and signed upstream).
enum class Query { kIgnore, kKey };

struct Upstream {
  std::string name;      // the key under `upstreams:`
  std::string endpoint;  // scheme://host[:port][/service/path], no trailing slash
  Signature signature = Signature::kV4;
  std::string region = "us-east-1";  // v4 only
  std::string access_key;            // from access_key_file or TUSK_<NAME>_ACCESS_KEY
  std::string secret_key;            // from secret_key_file or TUSK_<NAME>_SECRET_KEY
  Millis connect_timeout{5000};
  Millis stall_timeout{30000};  // no byte for this long aborts the transfer (504)
  int retries = 3;
  bool tls_verify = true;  // `tls_verify: false` only for tests; logged loudly
  std::string ca_file;     // optional CA bundle for private PKIs
  // Client request headers passed on to this upstream unchanged (never signed): tracing ids and
  // the like. Lower case. Validation refuses credentials, hop-by-hop fields, Host, the fields
  // tusk writes itself (Range, If-*, x-amz-*, ...) and more than kMaxForwardHeaders names.
  std::vector<std::string> forward_headers;
  static constexpr std::size_t kMaxForwardHeaders = 32;

  bool operator==(const Upstream&) const = default;
};

// One entry of `routes:`. Exactly one of `path` (exact, needs `key`) or `prefix` (the rest of the
// request path after the prefix becomes the object key, after `key_prefix`) is set.
struct Route {
  std::string path;
  std::string prefix;
  std::string host;  // empty: any Host; else matched case-insensitively, port ignored
  std::string upstream;
  std::string bucket;
  std::string key;            // exact routes only
  std::string key_prefix;     // prefix routes: prepended to the remainder
  Seconds ttl{3600};          // freshness when the origin says nothing
  bool ttl_override = false;  // true: ignore the origin's freshness headers, always use ttl
  Seconds grace{0};           // serve stale this long when the upstream fails
  Prefetch prefetch = Prefetch::kWhole;
  Query query = Query::kIgnore;
  // Who may read (issue 15), decided before any lookup: the client's address must be in
  // `allow` (empty: any address), then `auth` must be satisfied.
  CidrList allow;
  Auth auth = Auth::kNone;
  std::string auth_token_file;                     // auth: token (re-read on reload)
  std::vector<std::string> token_digests;          // its tokens, as token_digest() keeps them
  std::string client_keys_file;                    // auth: presigned (re-read on reload)
  std::map<std::string, std::string> client_keys;  // access key -> secret key
  std::string auth_region = "us-east-1";           // the credential scope presigned URLs must name
  std::string auth_service = "s3";
  int line = 0;  // where it was declared, for messages
};

struct Server {
  std::vector<std::string> listen{"127.0.0.1:8080"};  // host:port, [v6]:port
  int workers = 0;                                    // 0: one per core
  int max_connections = 10000;  // open client connections, all workers together
  Seconds idle_timeout{60};     // keep-alive: no request begun for this long closes
  Seconds header_timeout{10};   // a whole request head (and its small body) must arrive in this
  Seconds send_timeout{60};     // a client that takes no response byte for this long is closed
  std::uint64_t max_header_size = 32 * 1024;  // request line + header fields
  // SIGTERM: /readyz is 503 at once, new connections are still accepted for drain_delay (so a
  // balancer notices), then listening stops and requests in flight get up to drain_timeout.
  Seconds drain_delay{5};
  Seconds drain_timeout{30};
  // Hits leave by sendfile from the body file (true), or are read into memory and written
  // (false: nginx's `sendfile off`, for file systems where sendfile is slow or unsupported).
  // Reloadable: a request uses the setting of the configuration it started with.
  bool sendfile = true;
  // Peers whose word on the client's address is taken (X-Forwarded-For's right-most untrusted
  // entry, or the PROXY protocol): a balancer in front. Reloadable.
  CidrList trusted_proxies;
  // Connections from trusted_proxies begin with a PROXY protocol header (v1 or v2, HAProxy's
  // send-proxy / send-proxy-v2); needs a restart. Connections from other peers never do.
  bool proxy_protocol = false;
};

struct Admin {
  std::string listen = "127.0.0.1:8081";  // empty: no admin listener
  std::string token_file;                 // optional; required for mutating admin calls
};

struct Cache {
  std::string dir = "/var/cache/tusk";
  std::uint64_t max_size = 50ull << 30;
  std::uint64_t chunk_size = 8ull << 20;
  std::uint64_t min_free = 0;  // floor of real free disk space
};

struct Fill {
  int parallel = 4;
  // When the cache disk refuses bytes (full, failing), a fill goes on uncached from memory for
  // objects up to this size; larger ones fail with 503 (issue 9, defect 5).
  std::uint64_t memory_spill = 1ull << 30;
};

enum class LogFormat { kCombined, kJson };

struct Log {
  std::string level = "info";  // trace|debug|info|warn|error
  std::string access_log;      // empty: access log to stderr via the logger; "off": none
  LogFormat format = LogFormat::kCombined;  // of the access log: combined | json
};

// A fleet of edges that fill from each other (issue 11). Every edge has the same `members`;
// `self` names this one. An object's owner is chosen by rendezvous hashing over the member
// names; an edge fills an object it does not own from its owner (the owner from the upstream),
// and from the upstream itself only when the owner cannot be reached.
struct Peers {
  std::string self;                            // empty: no peers
  std::map<std::string, std::string> members;  // name -> base URL (http://host:port, no path)
  Millis connect_timeout{1000};                // a peer that does not accept this fast is down
  Seconds down_for{10};                        // a peer found down is not asked again this long
  bool operator==(const Peers&) const = default;
};

struct Config {
  Server server;
  Admin admin;
  Cache cache;
  Fill fill;
  Log log;
  Peers peers;
  std::map<std::string, Upstream> upstreams;
  std::vector<Route> routes;
  std::string source;  // file it came from
  // Accepted, but worth an operator's attention (a key file others can read), each in the
  // errors' "file:line:column: message" form. Never contains a key. tuskd logs them at start.
  std::vector<std::string> warnings;
};

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the error is not tied to a place
  int column = 0;  // 1-based
  std::string message;
  // "file:line:column: message" (or "file: message")
  std::string str() const;
};

// Looks up environment variables; injectable for tests.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// Parses and validates. Errors: syntax, unknown keys, wrong types, missing required keys,
// references to undeclared upstreams, impossible values (chunk_size 0, max_size < chunk_size,
// bad listen address, route with both/neither path and prefix, unreadable key files, ...).
// Relative paths (key files, admin.token_file, cache.dir, log.access_log, ca_file) resolve against
// the config file's directory (load_file) or `base_dir` (load_string; "." leaves them as written).
// Keys come from *_key_file (whole file minus one trailing "\n" or "\r\n") or, when that key is
// absent, from TUSK_<NAME>_ACCESS_KEY / TUSK_<NAME>_SECRET_KEY (NAME uppercased, non-alnum -> '_').
// A key file whose mode grants group or others any permission is accepted with a warning in
// Config::warnings (as ssh does for its private keys, but without refusing).
// Never throws. `env` is only called during the call.
Result<Config, ConfigError> load_file(const std::string& path,
                                      const EnvLookup& env = process_env());
Result<Config, ConfigError> load_string(std::string_view yaml, const std::string& name,
                                        const EnvLookup& env = process_env(),
                                        const std::string& base_dir = ".");

// "10GiB", "512MiB", "8MB", "4096", "1.5GiB" -> bytes. Error text on failure.
// Units are case-insensitive: B; KiB/MiB/GiB/TiB and single letters K/M/G/T are powers of 1024,
// KB/MB/GB/TB powers of 1000. Fractions round down to whole bytes.
Result<std::uint64_t, std::string> parse_size(std::string_view text);
// "30s", "5m", "1h", "1d", "250ms", "1h30m", "0" -> milliseconds. Error text on failure.
// Units ms, s, m, h, d, w (lowercase), largest first, each once; no fractions; a bare number other
// than 0 is an error because its unit would be a guess.
Result<Millis, std::string> parse_duration(std::string_view text);

// Splits "host:port" / "[::1]:port" (host returned without brackets; port 1..65535; IPv6 must
// be bracketed). Error text on failure.
struct HostPort {
  std::string host;
  int port = 0;
};
Result<HostPort, std::string> parse_listen(std::string_view text);

}  // namespace conf
