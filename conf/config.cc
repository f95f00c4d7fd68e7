// Turns tuskd's YAML configuration into the validated structs of config.h.
// Tricky: yaml-cpp throws and counts lines from 0, and it marks an empty value at the *next* token
// (possibly lines later), so errors about an empty value point at its key instead. Every check
// returns a Fault that load_string turns into a ConfigError. Key files and environment values are
// secrets: messages name the path or the variable, never what was read.

#include "conf/config.h"

#include <arpa/inet.h>
#include <sys/stat.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <memory>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

namespace conf {
namespace {

constexpr std::uint64_t kKiB = 1024;
constexpr std::uint64_t kMiB = kKiB * 1024;
constexpr std::uint64_t kGiB = kMiB * 1024;
constexpr std::uint64_t kTiB = kGiB * 1024;
// Chunks are whole disk blocks; above 1GiB one chunk is a whole VM image and chunking is moot.
constexpr std::uint64_t kChunkAlign = 4096;
constexpr std::uint64_t kMaxChunk = kGiB;
// A key is a few dozen bytes; anything much larger is the wrong file.
constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;
// Values quoted in messages are cut so one bad line cannot flood the log.
constexpr std::size_t kMaxQuoted = 80;

// A failed check: where (1-based, 0 when nowhere) and what. The file name is added by load_string.
struct Fault {
  int line = 0;
  int column = 0;
  std::string message;
};
template <class T>
using Check = Result<T, Fault>;
using Done = Result<void, Fault>;

Fault fault_at(const YAML::Mark& mark, std::string message) {
  if (mark.is_null()) {
    return Fault{0, 0, std::move(message)};
  }
  return Fault{mark.line + 1, mark.column + 1, std::move(message)};
}

// A value being read, the place to blame for it, and its dotted name ("server.workers").
struct Value {
  YAML::Node node;
  YAML::Mark mark;
  std::string path;

  Fault fail(const std::string& what) const { return fault_at(mark, path + ": " + what); }
};

std::string in_quotes(std::string_view text) {
  if (text.size() > kMaxQuoted) {
    return "'" + std::string(text.substr(0, kMaxQuoted)) + "...'";
  }
  return "'" + std::string(text) + "'";
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return in_quotes(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    default:
      return "nothing";
  }
}

std::string errno_text(int err) { return std::generic_category().message(err); }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (lower(c) >= 'a' && lower(c) <= 'z'); }

// Relative paths in the configuration mean "next to the configuration file", not "wherever the
// daemon was started from". A base of "." leaves them as written.
std::string resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || base_dir.empty() || base_dir == ".") {
    return path;
  }
  return base_dir.back() == '/' ? base_dir + path : base_dir + "/" + path;
}

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

// Reads a whole file. The error is errno's text, without the path (callers add it).
Result<std::string, std::string> read_whole_file(const std::string& path, std::size_t limit) {
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) {
    return unexpected(errno_text(errno));
  }
  std::string data;
  char buf[4096];
  for (;;) {
    std::size_t n = std::fread(buf, 1, sizeof buf, file.get());
    data.append(buf, n);
    if (data.size() > limit) {
      return unexpected(std::string("file is too large"));
    }
    if (n < sizeof buf) {
      if (std::ferror(file.get())) {
        return unexpected(errno_text(errno));
      }
      return data;
    }
  }
}

// Editors end files with a line break that is not part of the key; anything else (spaces
// included) is, because keys may contain them.
std::string strip_one_line_break(std::string text) {
  if (text.ends_with("\r\n")) {
    text.resize(text.size() - 2);
  } else if (text.ends_with('\n')) {
    text.pop_back();
  }
  return text;
}

// ---- scalar readers: each checks the YAML type, then the value ----

Check<std::string> read_string(const Value& v) {
  if (!v.node.IsScalar()) {
    return unexpected(v.fail("expected a string, got " + describe(v.node)));
  }
  return v.node.Scalar();
}

Check<std::int64_t> read_int(const Value& v, std::int64_t lo, std::int64_t hi) {
  if (!v.node.IsScalar()) {
    return unexpected(v.fail("expected an integer, got " + describe(v.node)));
  }
  const std::string& text = v.node.Scalar();
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (text.empty() || end != text.data() + text.size() ||
      (ec != std::errc() && ec != std::errc::result_out_of_range)) {
    return unexpected(v.fail("expected an integer, got " + in_quotes(text)));
  }
  if (ec == std::errc::result_out_of_range || n < lo || n > hi) {
    return unexpected(v.fail("must be between " + std::to_string(lo) + " and " +
                             std::to_string(hi) + ", got " + in_quotes(text)));
  }
  return n;
}

Done set_string(const Value& v, std::string& out) {
  auto s = read_string(v);
  if (!s) {
    return unexpected(s.error());
  }
  out = std::move(*s);
  return {};
}

Done set_nonempty_string(const Value& v, std::string& out) {
  auto s = read_string(v);
  if (!s) {
    return unexpected(s.error());
  }
  if (s->empty()) {
    return unexpected(v.fail("must not be empty"));
  }
  out = std::move(*s);
  return {};
}

Done set_int(const Value& v, int lo, int hi, int& out) {
  auto n = read_int(v, lo, hi);
  if (!n) {
    return unexpected(n.error());
  }
  out = static_cast<int>(*n);
  return {};
}

Done set_bool(const Value& v, bool& out) {
  if (v.node.IsScalar()) {
    const std::string word = lowercase(v.node.Scalar());
    if (word == "true" || word == "yes" || word == "on") {
      out = true;
      return {};
    }
    if (word == "false" || word == "no" || word == "off") {
      out = false;
      return {};
    }
  }
  return unexpected(v.fail("expected true or false, got " + describe(v.node)));
}

Done set_size(const Value& v, std::uint64_t& out) {
  if (!v.node.IsScalar()) {
    return unexpected(v.fail("expected a size like 8MiB, got " + describe(v.node)));
  }
  auto n = parse_size(v.node.Scalar());
  if (!n) {
    return unexpected(v.fail(n.error()));
  }
  out = *n;
  return {};
}

enum class Zero { kAllowed, kRejected };

Check<Millis> read_duration(const Value& v, Zero zero) {
  if (!v.node.IsScalar()) {
    return unexpected(v.fail("expected a duration like 30s, got " + describe(v.node)));
  }
  auto d = parse_duration(v.node.Scalar());
  if (!d) {
    return unexpected(v.fail(d.error()));
  }
  if (zero == Zero::kRejected && d->count() == 0) {
    return unexpected(v.fail("must be greater than 0"));
  }
  return *d;
}

Done set_millis(const Value& v, Zero zero, Millis& out) {
  auto d = read_duration(v, zero);
  if (!d) {
    return unexpected(d.error());
  }
  out = *d;
  return {};
}

// Seconds fields are stored as such; silently rounding "1500ms" would hide a typo.
Done set_seconds(const Value& v, Zero zero, Seconds& out) {
  auto d = read_duration(v, zero);
  if (!d) {
    return unexpected(d.error());
  }
  if (d->count() % 1000 != 0) {
    return unexpected(
        v.fail("must be a whole number of seconds, got " + in_quotes(v.node.Scalar())));
  }
  out = std::chrono::duration_cast<Seconds>(*d);
  return {};
}

Done check_listen(const Value& v, const std::string& address) {
  auto hp = parse_listen(address);
  if (!hp) {
    return unexpected(v.fail(hp.error()));
  }
  return {};
}

// ---- mappings ----

// One key of a mapping and how to read its value.
struct Field {
  std::string_view key;
  std::function<Done(const Value&)> read;
};

std::string child_path(const std::string& where, std::string_view key) {
  return where.empty() ? std::string(key) : where + "." + std::string(key);
}

std::string in_where(const std::string& where) {
  return where.empty() ? "at top level" : "in " + where;
}

// Reads each key of the mapping in `v` with its Field; unknown and repeated keys are errors (a
// repeated key would otherwise silently win or lose depending on the parser). A null value is an
// empty mapping, so a section with everything commented out keeps its defaults. Returns the keys
// seen so the caller can insist on required ones.
Check<std::set<std::string>> read_fields(const Value& v, const std::vector<Field>& fields) {
  std::set<std::string> seen;
  if (v.node.IsNull()) {
    return seen;
  }
  if (!v.node.IsMap()) {
    const std::string what = "expected a map, got " + describe(v.node);
    return unexpected(v.path.empty() ? fault_at(v.mark, what) : v.fail(what));
  }
  for (auto it = v.node.begin(); it != v.node.end(); ++it) {
    const YAML::Node key = it->first;  // a copy: `it->` is a temporary proxy
    if (!key.IsScalar()) {
      return unexpected(fault_at(key.Mark(), "keys must be plain strings " + in_where(v.path)));
    }
    const std::string& name = key.Scalar();
    auto field =
        std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.key == name; });
    if (field == fields.end()) {
      return unexpected(
          fault_at(key.Mark(), "unknown key " + in_quotes(name) + " " + in_where(v.path)));
    }
    if (!seen.insert(name).second) {
      return unexpected(
          fault_at(key.Mark(), "duplicate key " + in_quotes(name) + " " + in_where(v.path)));
    }
    const YAML::Node value = it->second;
    Value child{value, value.IsNull() ? key.Mark() : value.Mark(), child_path(v.path, name)};
    if (auto r = field->read(child); !r) {
      return unexpected(r.error());
    }
  }
  return seen;
}

// read_fields for sections whose keys are all optional.
Done read_section(const Value& v, const std::vector<Field>& fields) {
  auto seen = read_fields(v, fields);
  if (!seen) {
    return unexpected(std::move(seen).error());
  }
  return {};
}

Done require(const Value& v, const std::set<std::string>& seen, std::string_view key) {
  if (seen.count(std::string(key)) == 0) {
    return unexpected(v.fail("missing required key " + in_quotes(key)));
  }
  return {};
}

// ---- sections ----

// Everything the readers need besides the YAML: passed down, never global.
struct Context {
  const EnvLookup& env;
  const std::string& base_dir;
  std::vector<Fault>& warnings;  // collected while reading; load_string names the file
};

Done set_listen_list(const Value& v, std::vector<std::string>& out) {
  std::vector<std::string> list;
  auto add = [&](const Value& item) -> Done {
    auto s = read_string(item);
    if (!s) {
      return unexpected(s.error());
    }
    if (auto r = check_listen(item, *s); !r) {
      return r;
    }
    if (std::find(list.begin(), list.end(), *s) != list.end()) {
      return unexpected(item.fail("duplicate address " + in_quotes(*s)));
    }
    list.push_back(std::move(*s));
    return {};
  };
  if (v.node.IsScalar()) {
    if (auto r = add(v); !r) {
      return r;
    }
  } else if (v.node.IsSequence()) {
    for (std::size_t i = 0; i < v.node.size(); ++i) {
      const YAML::Node item = v.node[i];
      if (auto r = add(Value{item, item.Mark(), v.path + "[" + std::to_string(i) + "]"}); !r) {
        return r;
      }
    }
  } else {
    return unexpected(
        v.fail("expected an address or a list of addresses, got " + describe(v.node)));
  }
  if (list.empty()) {
    return unexpected(v.fail("needs at least one address"));
  }
  out = std::move(list);
  return {};
}

// One of a fixed set of words: "expected a, b or c, got 'x'" otherwise.
template <typename E>
Done set_choice(const Value& v, std::initializer_list<std::pair<std::string_view, E>> choices,
                E& out) {
  auto s = read_string(v);
  if (!s) {
    return unexpected(s.error());
  }
  std::string names;
  std::size_t i = 0;
  for (const auto& [name, value] : choices) {
    if (*s == name) {
      out = value;
      return {};
    }
    names += i == 0 ? "" : (i + 1 == choices.size() ? " or " : ", ");
    names += name;
    ++i;
  }
  return unexpected(v.fail("expected " + names + ", got " + in_quotes(*s)));
}

// upstreams.<name>.forward_headers: a list of header names, lower-cased. Refused: what would
// leak a client's credentials upstream (Authorization, Cookie, Proxy-Authorization), hop-by-hop
// fields, Host, and the fields tusk writes itself (a forwarded one would override or duplicate
// them): Range, If-*, Content-Length, Expect, x-amz-*, X-Tusk-Peer.
Done set_forward_headers(const Value& v, std::vector<std::string>& out) {
  static constexpr std::string_view kRefused[] = {
      "authorization", "cookie",         "proxy-authorization", "host",
      "connection",    "keep-alive",     "proxy-connection",    "te",
      "trailer",       "transfer-encoding", "upgrade",          "proxy-authenticate",
      "range",         "if-match",       "if-none-match",       "if-modified-since",
      "if-unmodified-since", "if-range", "content-length",      "expect",
      "x-tusk-peer",   "date",
  };
  if (!v.node.IsSequence()) {
    return unexpected(v.fail("expected a list of header names, got " + describe(v.node)));
  }
  if (v.node.size() > Upstream::kMaxForwardHeaders) {
    return unexpected(v.fail("at most " + std::to_string(Upstream::kMaxForwardHeaders) +
                             " header names"));
  }
  std::vector<std::string> list;
  for (std::size_t i = 0; i < v.node.size(); ++i) {
    const Value item{v.node[i], v.node[i].Mark(), v.path + "[" + std::to_string(i) + "]"};
    auto s = read_string(item);
    if (!s) {
      return unexpected(s.error());
    }
    std::string name = *s;
    const bool token = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) ||
             std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    });
    if (!token) {
      return unexpected(item.fail("not a header name: " + in_quotes(name)));
    }
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const bool refused =
        name.starts_with("x-amz-") || name.starts_with("proxy-") ||
        std::find(std::begin(kRefused), std::end(kRefused), name) != std::end(kRefused);
    if (refused) {
      return unexpected(item.fail(in_quotes(*s) +
                                  " is never forwarded (credentials, hop-by-hop, or written by "
                                  "tusk itself)"));
    }
    if (std::find(list.begin(), list.end(), name) != list.end()) {
      return unexpected(item.fail("duplicate header name " + in_quotes(*s)));
    }
    list.push_back(std::move(name));
  }
  out = std::move(list);
  return {};
}

// A list of CIDR ranges (`allow`, `trusted_proxies`): at least one, at most 1,024, no repeats.
Done set_cidr_list(const Value& v, CidrList& out) {
  if (!v.node.IsSequence()) {
    return unexpected(v.fail("expected a list of addresses or CIDR ranges, got " +
                             describe(v.node)));
  }
  if (v.node.size() == 0) {
    return unexpected(v.fail("is empty; leave the key out to set no limit"));
  }
  if (v.node.size() > 1024) {
    return unexpected(v.fail("at most 1024 ranges"));
  }
  CidrList list;
  for (std::size_t i = 0; i < v.node.size(); ++i) {
    const Value item{v.node[i], v.node[i].Mark(), v.path + "[" + std::to_string(i) + "]"};
    auto s = read_string(item);
    if (!s) {
      return unexpected(s.error());
    }
    auto range = parse_cidr(*s);
    if (!range) {
      return unexpected(item.fail(range.error()));
    }
    const auto& have = list.ranges();
    if (std::find(have.begin(), have.end(), *range) != have.end()) {
      return unexpected(item.fail("duplicate range " + in_quotes(*s)));
    }
    list.add(*range);
  }
  out = std::move(list);
  return {};
}

Done read_server(const Value& v, Server& out) {
  return read_section(
      v, {
             {"listen", [&](const Value& f) { return set_listen_list(f, out.listen); }},
             {"workers", [&](const Value& f) { return set_int(f, 0, 1024, out.workers); }},
             {"max_connections",
              [&](const Value& f) { return set_int(f, 1, 1000000, out.max_connections); }},
             {"idle_timeout",
              [&](const Value& f) { return set_seconds(f, Zero::kRejected, out.idle_timeout); }},
             {"header_timeout",
              [&](const Value& f) { return set_seconds(f, Zero::kRejected, out.header_timeout); }},
             {"send_timeout",
              [&](const Value& f) { return set_seconds(f, Zero::kRejected, out.send_timeout); }},
             {"drain_delay",
              [&](const Value& f) { return set_seconds(f, Zero::kAllowed, out.drain_delay); }},
             {"drain_timeout",
              [&](const Value& f) { return set_seconds(f, Zero::kAllowed, out.drain_timeout); }},
             {"sendfile", [&](const Value& f) { return set_bool(f, out.sendfile); }},
             {"trusted_proxies",
              [&](const Value& f) { return set_cidr_list(f, out.trusted_proxies); }},
             {"proxy_protocol", [&](const Value& f) { return set_bool(f, out.proxy_protocol); }},
             {"max_header_size",
              [&](const Value& f) -> Done {
                if (auto r = set_size(f, out.max_header_size); !r) {
                  return r;
                }
                if (out.max_header_size < 1024 || out.max_header_size > (1u << 20)) {
                  return unexpected(f.fail("must be between 1KiB and 1MiB"));
                }
                return Done{};
              }},
         });
}

Done read_admin(const Value& v, const Context& ctx, const Server& server, Admin& out) {
  return read_section(
      v, {
             {"listen",
              [&](const Value& f) -> Done {
                if (auto r = set_string(f, out.listen); !r) {
                  return r;
                }
                if (out.listen.empty()) {
                  return {};  // no admin listener
                }
                if (auto r = check_listen(f, out.listen); !r) {
                  return r;
                }
                const auto& l = server.listen;
                if (std::find(l.begin(), l.end(), out.listen) != l.end()) {
                  return unexpected(f.fail(in_quotes(out.listen) + " is also in server.listen"));
                }
                return {};
              }},
             {"token_file",
              [&](const Value& f) -> Done {
                if (auto r = set_string(f, out.token_file); !r) {
                  return r;
                }
                out.token_file = resolve(ctx.base_dir, out.token_file);
                return {};
              }},
         });
}

Done read_cache(const Value& v, const Context& ctx, Cache& out) {
  std::optional<Value> max_size;
  auto seen = read_fields(
      v,
      {
          {"dir",
           [&](const Value& f) -> Done {
             if (auto r = set_nonempty_string(f, out.dir); !r) {
               return r;
             }
             out.dir = resolve(ctx.base_dir, out.dir);
             return {};
           }},
          {"max_size",
           [&](const Value& f) {
             max_size = f;
             return set_size(f, out.max_size);
           }},
          {"chunk_size",
           [&](const Value& f) -> Done {
             if (auto r = set_size(f, out.chunk_size); !r) {
               return r;
             }
             if (out.chunk_size == 0 || out.chunk_size % kChunkAlign != 0) {
               return unexpected(f.fail("must be a non-zero multiple of 4096 bytes, got " +
                                        in_quotes(f.node.Scalar())));
             }
             if (out.chunk_size > kMaxChunk) {
               return unexpected(f.fail("must be at most 1GiB, got " + in_quotes(f.node.Scalar())));
             }
             return {};
           }},
          {"min_free", [&](const Value& f) { return set_size(f, out.min_free); }},
      });
  if (!seen) {
    return unexpected(seen.error());
  }
  // Checked after the walk: the two keys may come in either order. The default max_size is far
  // above any valid chunk_size, so only an explicit max_size can be too small.
  if (max_size && out.max_size < out.chunk_size) {
    return unexpected(max_size->fail("must be at least cache.chunk_size (" +
                                     std::to_string(out.chunk_size) + " bytes), got " +
                                     in_quotes(max_size->node.Scalar())));
  }
  return {};
}

Done read_fill(const Value& v, Fill& out) {
  return read_section(
      v, {{"parallel", [&](const Value& f) { return set_int(f, 1, 64, out.parallel); }},
          {"memory_spill", [&](const Value& f) { return set_size(f, out.memory_spill); }}});
}

Done read_log(const Value& v, const Context& ctx, Log& out) {
  return read_section(
      v, {
             {"level",
              [&](const Value& f) -> Done {
                if (auto r = set_string(f, out.level); !r) {
                  return r;
                }
                static constexpr std::string_view kLevels[] = {"trace", "debug", "info", "warn",
                                                               "error"};
                if (std::find(std::begin(kLevels), std::end(kLevels), out.level) ==
                    std::end(kLevels)) {
                  return unexpected(f.fail("expected one of trace, debug, info, warn, error, got " +
                                           in_quotes(out.level)));
                }
                return {};
              }},
             {"access_log",
              [&](const Value& f) -> Done {
                if (auto r = set_string(f, out.access_log); !r) {
                  return r;
                }
                if (out.access_log != "off" && out.access_log != "stdout") {
                  out.access_log = resolve(ctx.base_dir, out.access_log);
                }
                return {};
              }},
             {"format",
              [&](const Value& f) -> Done {
                std::string text;
                if (auto r = set_string(f, text); !r) {
                  return r;
                }
                if (text == "combined") {
                  out.format = LogFormat::kCombined;
                } else if (text == "json") {
                  out.format = LogFormat::kJson;
                } else {
                  return unexpected(f.fail("expected combined or json, got " + in_quotes(text)));
                }
                return {};
              }},
         });
}


// Checks scheme and shape and drops trailing slashes so request paths can be appended. Messages
// never echo an endpoint carrying credentials.
Result<std::string, std::string> normalize_endpoint(std::string_view text) {
  // Credentials first: every other message quotes the endpoint.
  const std::size_t sep = text.find("://");
  const std::string_view after = sep == std::string_view::npos ? text : text.substr(sep + 3);
  if (after.substr(0, after.find_first_of("/?#")).find('@') != std::string_view::npos) {
    return unexpected(std::string(
        "must not contain credentials; use access_key_file and secret_key_file instead"));
  }
  std::string_view rest;
  std::string scheme;
  const std::string low = lowercase(text.substr(0, 8));
  if (low.starts_with("http://")) {
    scheme = "http://";
    rest = text.substr(7);
  } else if (low.starts_with("https://")) {
    scheme = "https://";
    rest = text.substr(8);
  } else {
    return unexpected("must start with http:// or https://, got " + in_quotes(text));
  }
  const std::size_t authority_end = std::min(rest.find_first_of("/?#"), rest.size());
  const std::string_view authority = rest.substr(0, authority_end);
  for (char c : text) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return unexpected("must not contain spaces or control characters, got " + in_quotes(text));
    }
  }
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return unexpected("must not have a query or fragment, got " + in_quotes(text));
  }
  if (authority.empty()) {
    return unexpected("has no host, got " + in_quotes(text));
  }
  // A port follows the last ':' unless that ':' is inside an IPv6 literal.
  const std::size_t colon = authority.rfind(':');
  const std::size_t bracket = authority.rfind(']');
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon > bracket)) {
    const std::string_view port = authority.substr(colon + 1);
    int n = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
    if (port.empty() || ec != std::errc() || end != port.data() + port.size() || n < 1 ||
        n > 65535 || colon == 0) {
      return unexpected("has a bad host or port, got " + in_quotes(text));
    }
  }
  std::string_view path = rest.substr(authority_end);
  while (path.ends_with('/')) {
    path.remove_suffix(1);
  }
  return scheme + std::string(authority) + std::string(path);
}

// "my-walrus" -> "TUSK_MY_WALRUS_<SUFFIX>": environment names allow only [A-Z0-9_].
std::string env_name(const std::string& upstream, std::string_view suffix) {
  std::string name = "TUSK_";
  for (char c : upstream) {
    name += is_alnum(c) ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : '_';
  }
  name += "_";
  name += suffix;
  return name;
}

// A secret in a file that group or others may use is still read (refusing would take a running
// service down over a chmod), but the operator is told, as ssh does for private keys.
void warn_if_open_to_others(const Value& v, const Context& ctx, const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || (st.st_mode & 077) == 0) {
    return;
  }
  const char* how = (st.st_mode & 044) ? "readable" : (st.st_mode & 022) ? "writable" : "usable";
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  ctx.warnings.push_back(
      v.fail("key file '" + path + "' is " + how + " by others (mode " + mode + "); chmod 600 it"));
}

// Reads one key from the file named at `v`. `found` tells the caller that the environment must
// not be consulted even though the key is still to be checked for emptiness.
Done set_key_from_file(const Value& v, const Context& ctx, std::string& out, bool& found) {
  auto file = read_string(v);
  if (!file) {
    return unexpected(file.error());
  }
  if (file->empty()) {
    return unexpected(v.fail("must not be empty"));
  }
  const std::string path = resolve(ctx.base_dir, *file);
  auto data = read_whole_file(path, kMaxKeyFileBytes);
  if (!data) {
    return unexpected(v.fail("cannot read '" + path + "': " + data.error()));
  }
  out = strip_one_line_break(std::move(*data));
  if (out.empty()) {
    return unexpected(v.fail("key file '" + path + "' is empty"));
  }
  found = true;
  warn_if_open_to_others(v, ctx, path);
  return {};
}

Check<Upstream> read_upstream(const std::string& name, const Value& v, const Context& ctx) {
  Upstream up;
  up.name = name;
  bool access_from_file = false;
  bool secret_from_file = false;
  auto seen = read_fields(
      v, {
             {"endpoint",
              [&](const Value& f) -> Done {
                auto s = read_string(f);
                if (!s) {
                  return unexpected(s.error());
                }
                auto e = normalize_endpoint(*s);
                if (!e) {
                  return unexpected(f.fail(e.error()));
                }
                up.endpoint = std::move(*e);
                return {};
              }},
             {"signature",
              [&](const Value& f) {
                return set_choice(f,
                                  {{"v2", Signature::kV2},
                                   {"v4", Signature::kV4},
                                   {"none", Signature::kNone}},
                                  up.signature);
              }},
             {"region", [&](const Value& f) { return set_nonempty_string(f, up.region); }},
             {"access_key_file",
              [&](const Value& f) {
                return set_key_from_file(f, ctx, up.access_key, access_from_file);
              }},
             {"secret_key_file",
              [&](const Value& f) {
                return set_key_from_file(f, ctx, up.secret_key, secret_from_file);
              }},
             {"connect_timeout",
              [&](const Value& f) { return set_millis(f, Zero::kRejected, up.connect_timeout); }},
             {"stall_timeout",
              [&](const Value& f) { return set_millis(f, Zero::kRejected, up.stall_timeout); }},
             {"retries", [&](const Value& f) { return set_int(f, 0, 20, up.retries); }},
             {"tls_verify", [&](const Value& f) { return set_bool(f, up.tls_verify); }},
             {"forward_headers",
              [&](const Value& f) { return set_forward_headers(f, up.forward_headers); }},
             {"ca_file",
              [&](const Value& f) -> Done {
                if (auto r = set_string(f, up.ca_file); !r) {
                  return r;
                }
                up.ca_file = resolve(ctx.base_dir, up.ca_file);
                return {};
              }},
         });
  if (!seen) {
    return unexpected(seen.error());
  }
  if (auto r = require(v, *seen, "endpoint"); !r) {
    return unexpected(r.error());
  }
  // A file wins over the environment; an empty variable counts as unset.
  const std::string access_env = env_name(name, "ACCESS_KEY");
  const std::string secret_env = env_name(name, "SECRET_KEY");
  if (!access_from_file) {
    up.access_key = ctx.env(access_env).value_or("");
  }
  if (!secret_from_file) {
    up.secret_key = ctx.env(secret_env).value_or("");
  }
  if (up.signature != Signature::kNone) {
    const char* sig = up.signature == Signature::kV2 ? "v2" : "v4";
    if (up.access_key.empty()) {
      return unexpected(v.fail(std::string("signature ") + sig +
                               " needs an access key: set access_key_file or " + access_env));
    }
    if (up.secret_key.empty()) {
      return unexpected(v.fail(std::string("signature ") + sig +
                               " needs a secret key: set secret_key_file or " + secret_env));
    }
  }
  return up;
}

Done read_upstreams(const Value& v, const Context& ctx, std::map<std::string, Upstream>& out) {
  if (v.node.IsNull()) {
    return {};
  }
  if (!v.node.IsMap()) {
    return unexpected(v.fail("expected a map of named upstreams, got " + describe(v.node)));
  }
  for (auto it = v.node.begin(); it != v.node.end(); ++it) {
    const YAML::Node key = it->first;  // a copy: `it->` is a temporary proxy
    if (!key.IsScalar() || key.Scalar().empty()) {
      return unexpected(fault_at(key.Mark(), "upstreams: names must be non-empty strings"));
    }
    const std::string& name = key.Scalar();
    if (out.count(name) != 0) {
      return unexpected(fault_at(key.Mark(), "duplicate key " + in_quotes(name) + " in upstreams"));
    }
    // Errors about the upstream as a whole (missing endpoint or keys) point at its name.
    auto up = read_upstream(name, Value{it->second, key.Mark(), "upstreams." + name}, ctx);
    if (!up) {
      return unexpected(up.error());
    }
    out.emplace(name, std::move(*up));
  }
  return {};
}

Done read_peers(const Value& v, Peers& out) {
  Value members{YAML::Node(), YAML::Mark::null_mark(), child_path(v.path, "members")};
  bool have_members = false;
  auto seen = read_fields(
      v, {{"self", [&](const Value& f) { return set_nonempty_string(f, out.self); }},
          {"members",
           [&](const Value& f) -> Done {
             members = f;
             have_members = true;
             return {};
           }},
          {"connect_timeout",
           [&](const Value& f) { return set_millis(f, Zero::kRejected, out.connect_timeout); }},
          {"down_for", [&](const Value& f) { return set_seconds(f, Zero::kRejected, out.down_for); }}});
  if (!seen) {
    return unexpected(seen.error());
  }
  if (v.node.IsNull()) {
    return {};
  }
  if (auto r = require(v, *seen, "self"); !r) {
    return r;
  }
  if (auto r = require(v, *seen, "members"); !r) {
    return r;
  }
  if (!members.node.IsMap() || members.node.size() == 0) {
    return unexpected(members.fail("expected a map of peer names to base URLs, got " +
                                   describe(members.node)));
  }
  for (auto it = members.node.begin(); it != members.node.end(); ++it) {
    const YAML::Node key = it->first;
    if (!key.IsScalar() || key.Scalar().empty()) {
      return unexpected(fault_at(key.Mark(), "peers.members: names must be non-empty strings"));
    }
    const std::string& name = key.Scalar();
    if (out.members.count(name) != 0) {
      return unexpected(fault_at(key.Mark(), "duplicate peer " + in_quotes(name)));
    }
    Value url{it->second, it->second.Mark(), "peers.members." + name};
    std::string text;
    if (auto r = set_nonempty_string(url, text); !r) {
      return r;
    }
    auto normal = normalize_endpoint(text);
    if (!normal) {
      return unexpected(url.fail(normal.error()));
    }
    if (normal->find('/', normal->find("://") + 3) != std::string::npos) {
      return unexpected(url.fail("a peer URL is scheme://host:port without a path, got " +
                                 in_quotes(*normal)));
    }
    out.members.emplace(name, std::move(*normal));
  }
  if (out.members.count(out.self) == 0) {
    return unexpected(v.fail("self " + in_quotes(out.self) + " is not one of the members"));
  }
  return {};
}

Done check_route_path(const Value& v, std::string& out) {
  if (auto r = set_string(v, out); !r) {
    return r;
  }
  if (!out.starts_with('/')) {
    return unexpected(v.fail("must start with '/', got " + in_quotes(out)));
  }
  return {};
}

Done set_host(const Value& v, std::string& out) {
  auto s = read_string(v);
  if (!s) {
    return unexpected(s.error());
  }
  const std::string host = lowercase(*s);
  const bool v6 = host.starts_with('[') && host.ends_with(']');
  if (!v6 && host.find(':') != std::string::npos) {
    return unexpected(v.fail("must not include a port (ports are ignored), got " + in_quotes(*s)));
  }
  out = host;
  return {};
}

// A region or service name of a credential scope: 1..64 of a-z 0-9 -.
Done set_aws_scope(const Value& v, std::string& out) {
  auto s = read_string(v);
  if (!s) {
    return unexpected(s.error());
  }
  const bool ok = !s->empty() && s->size() <= 64 && std::all_of(s->begin(), s->end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
  });
  if (!ok) {
    return unexpected(v.fail("expected 1..64 of a-z 0-9 -, got " + in_quotes(*s)));
  }
  out = *s;
  return {};
}

// A route's token or client-key file: read whole (bounded), parsed by `parse`, warned about when
// others may read it. Errors name the file and the line, never a secret.
template <typename T, typename Parse>
Done read_auth_file(const Value& v, const Context& ctx, std::string& path_out, T& out,
                    Parse parse) {
  auto file = read_string(v);
  if (!file) {
    return unexpected(file.error());
  }
  if (file->empty()) {
    return unexpected(v.fail("must not be empty"));
  }
  const std::string path = resolve(ctx.base_dir, *file);
  auto data = read_whole_file(path, kMaxAuthFileBytes);
  if (!data) {
    return unexpected(v.fail("cannot read '" + path + "': " + data.error()));
  }
  auto parsed = parse(*data);
  if (!parsed) {
    return unexpected(v.fail("'" + path + "': " + parsed.error()));
  }
  warn_if_open_to_others(v, ctx, path);
  path_out = path;
  out = std::move(*parsed);
  return {};
}

// The access-control keys of a route must agree with its `auth`.
Done check_route_auth(const Value& v, const std::set<std::string>& seen, const Route& route) {
  const bool token = route.auth == Auth::kToken;
  const bool presigned = route.auth == Auth::kPresigned;
  if (token && seen.count("auth_token_file") == 0) {
    return unexpected(v.fail("auth: token needs auth_token_file"));
  }
  if (presigned && seen.count("client_keys_file") == 0) {
    return unexpected(v.fail("auth: presigned needs client_keys_file"));
  }
  if (!token && seen.count("auth_token_file") != 0) {
    return unexpected(v.fail("auth_token_file is only for auth: token"));
  }
  if (!presigned) {
    for (std::string_view key : {"client_keys_file", "auth_region", "auth_service"}) {
      if (seen.count(std::string(key)) != 0) {
        return unexpected(v.fail(std::string(key) + " is only for auth: presigned"));
      }
    }
  }
  return {};
}

Check<Route> read_route(const Value& v, const std::map<std::string, Upstream>& upstreams,
                        const Context& ctx) {
  Route route;
  route.line = v.mark.is_null() ? 0 : v.mark.line + 1;
  std::optional<Value> key_node;
  std::optional<Value> key_prefix_node;
  std::optional<Value> upstream_node;
  auto seen = read_fields(
      v, {
             {"path", [&](const Value& f) { return check_route_path(f, route.path); }},
             {"prefix", [&](const Value& f) { return check_route_path(f, route.prefix); }},
             {"host", [&](const Value& f) { return set_host(f, route.host); }},
             {"upstream",
              [&](const Value& f) {
                upstream_node = f;
                return set_nonempty_string(f, route.upstream);
              }},
             {"bucket", [&](const Value& f) { return set_nonempty_string(f, route.bucket); }},
             {"key",
              [&](const Value& f) {
                key_node = f;
                return set_nonempty_string(f, route.key);
              }},
             {"key_prefix",
              [&](const Value& f) {
                key_prefix_node = f;
                return set_string(f, route.key_prefix);
              }},
             {"ttl", [&](const Value& f) { return set_seconds(f, Zero::kAllowed, route.ttl); }},
             {"ttl_override", [&](const Value& f) { return set_bool(f, route.ttl_override); }},
             {"grace", [&](const Value& f) { return set_seconds(f, Zero::kAllowed, route.grace); }},
             {"query",
              [&](const Value& f) {
                return set_choice(f, {{"ignore", Query::kIgnore}, {"key", Query::kKey}},
                                  route.query);
              }},
             {"prefetch",
              [&](const Value& f) {
                return set_choice(f, {{"whole", Prefetch::kWhole}, {"none", Prefetch::kNone}},
                                  route.prefetch);
              }},
             {"allow", [&](const Value& f) { return set_cidr_list(f, route.allow); }},
             {"auth",
              [&](const Value& f) {
                return set_choice(
                    f,
                    {{"none", Auth::kNone}, {"token", Auth::kToken}, {"presigned", Auth::kPresigned}},
                    route.auth);
              }},
             {"auth_token_file",
              [&](const Value& f) {
                return read_auth_file(f, ctx, route.auth_token_file, route.tokens,
                                      parse_token_file);
              }},
             {"client_keys_file",
              [&](const Value& f) {
                return read_auth_file(f, ctx, route.client_keys_file, route.client_keys,
                                      parse_client_keys);
              }},
             {"auth_region", [&](const Value& f) { return set_aws_scope(f, route.auth_region); }},
             {"auth_service",
              [&](const Value& f) { return set_aws_scope(f, route.auth_service); }},
         });
  if (!seen) {
    return unexpected(seen.error());
  }
  if (auto r = check_route_auth(v, *seen, route); !r) {
    return unexpected(r.error());
  }
  const bool exact = seen->count("path") != 0;
  const bool prefix = seen->count("prefix") != 0;
  if (exact == prefix) {
    return unexpected(v.fail(exact ? "has both 'path' and 'prefix'; set exactly one"
                                   : "needs 'path' (exact) or 'prefix'"));
  }
  for (std::string_view required : {"upstream", "bucket"}) {
    if (auto r = require(v, *seen, required); !r) {
      return unexpected(r.error());
    }
  }
  if (exact) {
    if (auto r = require(v, *seen, "key"); !r) {
      return unexpected(r.error());
    }
    if (key_prefix_node) {
      return unexpected(key_prefix_node->fail("is only for prefix routes; exact routes use 'key'"));
    }
  } else if (key_node) {
    return unexpected(
        key_node->fail("is only for exact-path routes; prefix routes use 'key_prefix'"));
  }
  if (upstreams.count(route.upstream) == 0) {
    return unexpected(
        upstream_node->fail("no upstream named " + in_quotes(route.upstream) + " in upstreams"));
  }
  return route;
}

Done read_routes(const Value& v, const std::map<std::string, Upstream>& upstreams,
                 const Context& ctx, std::vector<Route>& out) {
  if (v.node.IsNull()) {
    return {};
  }
  if (!v.node.IsSequence()) {
    return unexpected(v.fail("expected a list of routes, got " + describe(v.node)));
  }
  // (host, path or prefix) -> line of the first route, so a shadowed route is reported with the
  // one shadowing it.
  std::map<std::pair<std::string, std::string>, int> exact_seen;
  std::map<std::pair<std::string, std::string>, int> prefix_seen;
  for (std::size_t i = 0; i < v.node.size(); ++i) {
    const YAML::Node item = v.node[i];
    const Value route_value{item, item.Mark(), "routes[" + std::to_string(i) + "]"};
    auto route = read_route(route_value, upstreams, ctx);
    if (!route) {
      return unexpected(route.error());
    }
    const bool exact = !route->path.empty();
    auto& seen = exact ? exact_seen : prefix_seen;
    const std::string& where = exact ? route->path : route->prefix;
    auto [it, inserted] = seen.emplace(std::make_pair(route->host, where), route->line);
    if (!inserted) {
      const YAML::Node n = item[exact ? "path" : "prefix"];
      return unexpected(fault_at(
          n.Mark(), route_value.path + ": duplicate " + (exact ? "path " : "prefix ") +
                        in_quotes(where) + (route->host.empty() ? "" : " for host " + route->host) +
                        " (first at line " + std::to_string(it->second) + ")"));
    }
    out.push_back(std::move(*route));
  }
  return {};
}

Check<Config> read_config(const YAML::Node& root, const Context& ctx) {
  Config config;
  // First pass: only find the sections, so unknown top-level keys are reported wherever they are.
  // Sections are then read in dependency order (routes name upstreams; admin must not collide
  // with server), whatever their order in the file.
  std::map<std::string, Value> sections;
  std::vector<Field> fields;
  for (std::string_view name :
       {"server", "admin", "cache", "fill", "log", "peers", "upstreams", "routes"}) {
    fields.push_back({name, [&sections, name](const Value& f) -> Done {
                        sections.emplace(std::string(name), f);
                        return {};
                      }});
  }
  auto seen = read_fields(Value{root, root.Mark(), ""}, fields);
  if (!seen) {
    return unexpected(seen.error());
  }
  auto section = [&](const char* name) {
    auto it = sections.find(name);
    return it != sections.end() ? it->second : Value{YAML::Node(), YAML::Mark::null_mark(), name};
  };
  Done r;
  if (r = read_server(section("server"), config.server); !r) {
    return unexpected(r.error());
  }
  if (config.server.proxy_protocol && config.server.trusted_proxies.empty()) {
    return unexpected(section("server").fail(
        "proxy_protocol needs trusted_proxies (the balancers allowed to send it)"));
  }
  if (r = read_admin(section("admin"), ctx, config.server, config.admin); !r) {
    return unexpected(r.error());
  }
  if (r = read_cache(section("cache"), ctx, config.cache); !r) {
    return unexpected(r.error());
  }
  if (r = read_fill(section("fill"), config.fill); !r) {
    return unexpected(r.error());
  }
  if (r = read_log(section("log"), ctx, config.log); !r) {
    return unexpected(r.error());
  }
  if (r = read_peers(section("peers"), config.peers); !r) {
    return unexpected(r.error());
  }
  if (r = read_upstreams(section("upstreams"), ctx, config.upstreams); !r) {
    return unexpected(r.error());
  }
  if (r = read_routes(section("routes"), config.upstreams, ctx, config.routes); !r) {
    return unexpected(r.error());
  }
  return config;
}

// Multiplier of a size unit, case-insensitively; 0 when unknown. Single letters are binary, as in
// nginx and Varnish; "KB"/"MB"/... are decimal, "KiB"/"MiB"/... binary.
std::uint64_t size_unit(std::string_view unit) {
  static constexpr std::pair<std::string_view, std::uint64_t> kUnits[] = {
      {"", 1},
      {"b", 1},
      {"k", kKiB},
      {"kb", 1000},
      {"kib", kKiB},
      {"m", kMiB},
      {"mb", 1000ull * 1000},
      {"mib", kMiB},
      {"g", kGiB},
      {"gb", 1000ull * 1000 * 1000},
      {"gib", kGiB},
      {"t", kTiB},
      {"tb", 1000ull * 1000 * 1000 * 1000},
      {"tib", kTiB},
  };
  const std::string low = lowercase(unit);
  for (const auto& [name, mult] : kUnits) {
    if (name == low) {
      return mult;
    }
  }
  return 0;
}

std::size_t count_digits(std::string_view text, std::size_t from) {
  std::size_t i = from;
  while (i < text.size() && is_digit(text[i])) {
    ++i;
  }
  return i - from;
}

}  // namespace

std::string ConfigError::str() const {
  if (line <= 0) {
    return file + ": " + message;
  }
  if (column <= 0) {
    return file + ":" + std::to_string(line) + ": " + message;
  }
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

EnvLookup process_env() {
  return [](const std::string& name) -> std::optional<std::string> {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) {
      return std::nullopt;
    }
    return std::string(value);
  };
}

Result<std::uint64_t, std::string> parse_size(std::string_view text) {
  if (text.empty()) {
    return unexpected(std::string("empty size"));
  }
  if (text.front() == '-') {
    return unexpected("size must not be negative, got " + in_quotes(text));
  }
  const std::string bad = "invalid size " + in_quotes(text) + ": expected a number and a unit";
  const std::size_t int_len = count_digits(text, 0);
  if (int_len == 0) {
    return unexpected(bad);
  }
  std::size_t pos = int_len;
  std::string_view frac;
  if (pos < text.size() && text[pos] == '.') {
    const std::size_t frac_len = count_digits(text, pos + 1);
    // 18 digits keep frac * unit inside 128 bits.
    if (frac_len == 0 || frac_len > 18) {
      return unexpected(bad);
    }
    frac = text.substr(pos + 1, frac_len);
    pos += 1 + frac_len;
  }
  while (pos < text.size() && text[pos] == ' ') {
    ++pos;
  }
  const std::uint64_t mult = size_unit(text.substr(pos));
  if (mult == 0) {
    return unexpected("invalid size " + in_quotes(text) +
                      ": unknown unit (use B, K, KB, KiB, M, MB, MiB, G, GB, GiB, T, TB, TiB)");
  }
  std::uint64_t whole = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + int_len, whole);
  const std::string too_large = "size " + in_quotes(text) + " is too large";
  if (ec == std::errc::result_out_of_range) {
    return unexpected(too_large);
  }
  unsigned __int128 total = static_cast<unsigned __int128>(whole) * mult;
  if (!frac.empty()) {
    unsigned __int128 num = 0;
    unsigned __int128 den = 1;
    for (char c : frac) {
      num = num * 10 + static_cast<unsigned>(c - '0');
      den *= 10;
    }
    if (mult == 1 && num != 0) {
      return unexpected("invalid size " + in_quotes(text) + ": a byte count has no fraction");
    }
    // Rounds down: "1.7GiB" is not a whole number of bytes and nobody minds the missing byte.
    total += num * mult / den;
  }
  if (total > std::numeric_limits<std::uint64_t>::max()) {
    return unexpected(too_large);
  }
  return static_cast<std::uint64_t>(total);
}

Result<Millis, std::string> parse_duration(std::string_view text) {
  // Units from largest to smallest; a duration lists them in this order, each at most once.
  static constexpr std::pair<std::string_view, std::int64_t> kUnits[] = {
      {"w", 7 * 24 * 3600 * 1000ll},
      {"d", 24 * 3600 * 1000ll},
      {"h", 3600 * 1000ll},
      {"m", 60 * 1000ll},
      {"s", 1000ll},
      {"ms", 1ll},
  };
  constexpr std::size_t kNoUnit = std::size(kUnits);
  if (text.empty()) {
    return unexpected(std::string("empty duration"));
  }
  if (text.front() == '-') {
    return unexpected("duration must not be negative, got " + in_quotes(text));
  }
  const std::string bad =
      "invalid duration " + in_quotes(text) + ": expected e.g. 250ms, 30s, 1h30m";
  const std::string too_large = "duration " + in_quotes(text) + " is too large";
  std::int64_t total = 0;
  std::size_t last_unit = kNoUnit;  // index into kUnits of the previous part; none yet
  std::size_t pos = 0;
  while (pos < text.size()) {
    const std::size_t digits = count_digits(text, pos);
    if (digits == 0) {
      return unexpected(bad);
    }
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + digits, n);
    if (ec == std::errc::result_out_of_range) {
      return unexpected(too_large);
    }
    pos += digits;
    if (pos < text.size() && text[pos] == '.') {
      return unexpected("invalid duration " + in_quotes(text) +
                        ": fractions are not supported (write 1h30m, not 1.5h)");
    }
    std::size_t unit_end = pos;
    while (unit_end < text.size() && !is_digit(text[unit_end])) {
      ++unit_end;
    }
    const std::string_view unit = text.substr(pos, unit_end - pos);
    if (unit.empty()) {
      // "0" means nothing whatever the unit; any other bare number could be seconds or millis.
      if (last_unit == kNoUnit && n == 0) {
        return Millis{0};
      }
      return unexpected("invalid duration " + in_quotes(text) +
                        ": a number needs a unit (ms, s, m, h, d, w)");
    }
    std::size_t u = 0;
    while (u < kNoUnit && kUnits[u].first != unit) {
      ++u;
    }
    if (u == kNoUnit) {
      return unexpected("invalid duration " + in_quotes(text) + ": unknown unit " +
                        in_quotes(unit) + " (use ms, s, m, h, d, w)");
    }
    if (last_unit != kNoUnit && u <= last_unit) {
      return unexpected("invalid duration " + in_quotes(text) +
                        ": units must go from largest to smallest, each once");
    }
    std::int64_t part = 0;
    if (__builtin_mul_overflow(n, kUnits[u].second, &part) ||
        __builtin_add_overflow(total, part, &total)) {
      return unexpected(too_large);
    }
    last_unit = u;
    pos = unit_end;
  }
  return Millis{total};
}

Result<HostPort, std::string> parse_listen(std::string_view text) {
  const std::string bad = "invalid listen address " + in_quotes(text);
  HostPort out;
  std::string_view port;
  if (text.starts_with('[')) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return unexpected(bad + ": expected [ipv6]:port");
    }
    out.host = std::string(text.substr(1, close - 1));
    in6_addr addr{};
    if (inet_pton(AF_INET6, out.host.c_str(), &addr) != 1) {
      return unexpected(bad + ": " + in_quotes(out.host) + " is not an IPv6 address");
    }
    port = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return unexpected(bad + ": expected host:port");
    }
    out.host = std::string(text.substr(0, colon));
    if (out.host.find(':') != std::string::npos) {
      return unexpected(bad + ": IPv6 addresses go in brackets, e.g. [::1]:8080");
    }
    if (out.host.empty()) {
      return unexpected(bad + ": missing host (use 0.0.0.0 or [::] for all addresses)");
    }
    for (char c : out.host) {
      if (!is_alnum(c) && c != '.' && c != '-') {
        return unexpected(bad + ": invalid host " + in_quotes(out.host));
      }
    }
    port = text.substr(colon + 1);
  }
  const bool all_digits =
      !port.empty() && port.size() <= 5 && std::all_of(port.begin(), port.end(), is_digit);
  if (all_digits) {
    (void)std::from_chars(port.data(), port.data() + port.size(), out.port);
  }
  if (!all_digits || out.port < 1 || out.port > 65535) {
    return unexpected(bad + ": port must be 1..65535");
  }
  return out;
}

namespace {

// Counts the documents of a stream without building them (the caller stops at two). yaml-cpp 0.7's
// LoadAll loops forever, allocating, on some malformed streams (found by tests/fuzz: a stray
// ", x\\\y: [ ... ]" line); one document is always parsed to its end, so a bounded count
// followed by YAML::Load keeps loading bounded in time and memory.
class DocumentCounter : public YAML::EventHandler {
 public:
  int documents = 0;
  YAML::Mark second;  // where the second document starts
  void OnDocumentStart(const YAML::Mark& mark) override {
    if (++documents == 2) {
      second = mark;
    }
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {}
  void OnMapEnd() override {}
};

}  // namespace

Result<Config, ConfigError> load_string(std::string_view yaml, const std::string& name,
                                        const EnvLookup& env, const std::string& base_dir) {
  auto error = [&](Fault f) {
    return unexpected(ConfigError{name, f.line, f.column, std::move(f.message)});
  };
  // yaml-cpp reports both syntax errors and surprises while walking nodes with exceptions; none
  // may leave conf/.
  try {
    const std::string text(yaml);
    DocumentCounter counter;
    {
      std::istringstream in(text);
      YAML::Parser parser(in);
      while (counter.documents < 2 && parser.HandleNextDocument(counter)) {
      }
    }
    if (counter.documents > 1) {
      return error(fault_at(counter.second, "expected one YAML document, found 2 or more"));
    }
    std::vector<Fault> warnings;
    const Context ctx{env, base_dir, warnings};
    auto config = read_config(counter.documents == 0 ? YAML::Node() : YAML::Load(text), ctx);
    if (!config) {
      return error(std::move(config).error());
    }
    config->source = name;
    for (Fault& w : warnings) {
      config->warnings.push_back(ConfigError{name, w.line, w.column, std::move(w.message)}.str());
    }
    return std::move(config).value();
  } catch (const YAML::Exception& e) {
    return error(fault_at(e.mark, "YAML error: " + e.msg));
  }
}

Result<Config, ConfigError> load_file(const std::string& path, const EnvLookup& env) {
  // A configuration is small; the cap only guards against being pointed at a disk image.
  constexpr std::size_t kMaxConfigBytes = 16 * kMiB;
  auto text = read_whole_file(path, kMaxConfigBytes);
  if (!text) {
    return unexpected(ConfigError{path, 0, 0, "cannot read configuration: " + text.error()});
  }
  std::string base_dir = std::filesystem::path(path).parent_path().string();
  return load_string(*text, path, env, base_dir.empty() ? "." : base_dir);
}

}  // namespace conf
