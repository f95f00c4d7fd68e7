// Internal to conf/, not part of the public API (that is conf/config.h): the YAML reading
// machinery that every section of the configuration uses, and the section readers that live in
// their own files. Only conf/config*.cc include it, which keeps yaml-cpp out of conf/config.h.
// Tricky: yaml-cpp counts lines from 0 and marks an empty value at the *next* token, so a Value
// carries its own mark (its key's, when the value is empty) and Faults are 1-based.

#pragma once

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "conf/cidr.h"
#include "conf/config.h"
#include "conf/result.h"

namespace conf::detail {

inline constexpr std::uint64_t kKiB = 1024;
inline constexpr std::uint64_t kMiB = kKiB * 1024;
inline constexpr std::uint64_t kGiB = kMiB * 1024;
inline constexpr std::uint64_t kTiB = kGiB * 1024;

// A failed check: where (1-based, 0 when nowhere) and what. The file name is added by load_string.
struct Fault {
  int line = 0;
  int column = 0;
  std::string message;
};
template <class T>
using Check = Result<T, Fault>;
using Done = Result<void, Fault>;

// A null mark (a section absent from the file) gives a Fault with no place.
Fault fault_at(const YAML::Mark& mark, std::string message);

// A value being read, the place to blame for it, and its dotted name ("server.workers").
struct Value {
  YAML::Node node;
  YAML::Mark mark;
  std::string path;

  Fault fail(const std::string& what) const { return fault_at(mark, path + ": " + what); }
};

// Everything the readers need besides the YAML: passed down, never global. Lives as long as one
// load_string call.
struct Context {
  const EnvLookup& env;
  const std::string& base_dir;
  std::vector<Fault>& warnings;  // collected while reading; load_string names the file
};

// ---- text ----

// 'text', cut after 80 characters so one bad line cannot flood the log.
std::string in_quotes(std::string_view text);
// A node for a message: its scalar in quotes, "a list", "a map" or "nothing".
std::string describe(const YAML::Node& node);
// ASCII only, whatever the locale.
std::string lowercase(std::string_view text);
bool is_digit(char c);
bool is_alnum(char c);

// ---- files ----

// Relative paths in the configuration mean "next to the configuration file", not "wherever the
// daemon was started from". A base of "." leaves them as written.
std::string resolve(const std::string& base_dir, const std::string& path);

// Reads a whole file of at most `limit` bytes. The error is errno's text or "file is too large",
// without the path (callers add it).
Result<std::string, std::string> read_whole_file(const std::string& path, std::size_t limit);

// A file named in the configuration: its path resolved against Context::base_dir, and what it
// holds.
struct NamedFile {
  std::string path;
  std::string data;
};
// Reads the file named by the string at `v`, at most `limit` bytes. Errors (at `v`): not a
// string, "must not be empty", "cannot read '<path>': <reason>". Never quotes the contents.
Check<NamedFile> read_named_file(const Value& v, const Context& ctx, std::size_t limit);

// A secret in a file that group or others may use is still read (refusing would take a running
// service down over a chmod), but the operator is told, as ssh does for private keys: a warning
// at `v` in ctx.warnings.
void warn_if_open_to_others(const Value& v, const Context& ctx, const std::string& path);

// ---- scalar readers: each checks the YAML type, then the value; `out` is left alone on error ----

Check<std::string> read_string(const Value& v);
Check<std::int64_t> read_int(const Value& v, std::int64_t lo, std::int64_t hi);
Done set_string(const Value& v, std::string& out);
Done set_nonempty_string(const Value& v, std::string& out);
Done set_int(const Value& v, int lo, int hi, int& out);
// true/yes/on, false/no/off, case-insensitively.
Done set_bool(const Value& v, bool& out);
// parse_size's syntax.
Done set_size(const Value& v, std::uint64_t& out);

enum class Zero { kAllowed, kRejected };

// parse_duration's syntax.
Check<Millis> read_duration(const Value& v, Zero zero);
Done set_millis(const Value& v, Zero zero, Millis& out);
// Seconds fields are stored as such; silently rounding "1500ms" would hide a typo.
Done set_seconds(const Value& v, Zero zero, Seconds& out);

// parse_listen's syntax, the error at `v`.
Done check_listen(const Value& v, const std::string& address);
// An address or a list of them: at least one, no repeats.
Done set_listen_list(const Value& v, std::vector<std::string>& out);
// A list of CIDR ranges (`allow`, `trusted_proxies`): at least one, at most 1,024, no repeats.
Done set_cidr_list(const Value& v, CidrList& out);

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

// ---- mappings ----

// One key of a mapping and how to read its value.
struct Field {
  std::string_view key;
  std::function<Done(const Value&)> read;
};

// "where.key", or "key" at top level.
std::string child_path(const std::string& where, std::string_view key);

// Reads each key of the mapping in `v` with its Field; unknown and repeated keys are errors (a
// repeated key would otherwise silently win or lose depending on the parser). A null value is an
// empty mapping, so a section with everything commented out keeps its defaults. Returns the keys
// seen so the caller can insist on required ones.
Check<std::set<std::string>> read_fields(const Value& v, const std::vector<Field>& fields);
// read_fields for sections whose keys are all optional.
Done read_section(const Value& v, const std::vector<Field>& fields);
// "missing required key 'key'" at `v` unless `key` is in `seen`.
Done require(const Value& v, const std::set<std::string>& seen, std::string_view key);

// ---- sections read in their own files, called by read_config in config.cc ----

// config_upstreams.cc: `upstreams:` (endpoints, signing, keys from files or the environment).
Done read_upstreams(const Value& v, const Context& ctx, std::map<std::string, Upstream>& out);
// config_upstreams.cc: `peers:`.
Done read_peers(const Value& v, Peers& out);
// config_routes.cc: `routes:`, each naming one of `upstreams`, with its access control.
Done read_routes(const Value& v, const std::map<std::string, Upstream>& upstreams,
                 const Context& ctx, std::vector<Route>& out);

}  // namespace conf::detail
