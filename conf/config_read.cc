// The YAML reading machinery of conf/config_read.h: scalar readers, mappings, files named in the
// configuration. Every check returns a Fault; none throws on its own, but yaml-cpp may (load_string
// catches). Messages that involve a key file name its path, never what it holds.

#include "conf/config_read.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <memory>
#include <system_error>

namespace conf::detail {
namespace {

// Values quoted in messages are cut so one bad line cannot flood the log.
constexpr std::size_t kMaxQuoted = 80;

std::string errno_text(int err) { return std::generic_category().message(err); }

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

struct FileCloser {
  void operator()(std::FILE* f) const { std::fclose(f); }
};

std::string in_where(const std::string& where) {
  return where.empty() ? "at top level" : "in " + where;
}

}  // namespace

Fault fault_at(const YAML::Mark& mark, std::string message) {
  if (mark.is_null()) {
    return Fault{0, 0, std::move(message)};
  }
  return Fault{mark.line + 1, mark.column + 1, std::move(message)};
}

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

std::string lowercase(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), lower);
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_digit(c) || (lower(c) >= 'a' && lower(c) <= 'z'); }

std::string resolve(const std::string& base_dir, const std::string& path) {
  if (path.empty() || path.front() == '/' || base_dir.empty() || base_dir == ".") {
    return path;
  }
  return base_dir.back() == '/' ? base_dir + path : base_dir + "/" + path;
}

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

Check<NamedFile> read_named_file(const Value& v, const Context& ctx, std::size_t limit) {
  auto file = read_string(v);
  if (!file) {
    return unexpected(file.error());
  }
  if (file->empty()) {
    return unexpected(v.fail("must not be empty"));
  }
  NamedFile out{resolve(ctx.base_dir, *file), {}};
  auto data = read_whole_file(out.path, limit);
  if (!data) {
    return unexpected(v.fail("cannot read '" + out.path + "': " + data.error()));
  }
  out.data = std::move(*data);
  return out;
}

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

Done set_cidr_list(const Value& v, CidrList& out) {
  if (!v.node.IsSequence()) {
    return unexpected(
        v.fail("expected a list of addresses or CIDR ranges, got " + describe(v.node)));
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

// ---- mappings ----

std::string child_path(const std::string& where, std::string_view key) {
  return where.empty() ? std::string(key) : where + "." + std::string(key);
}

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

}  // namespace conf::detail
