// The `upstreams:` and `peers:` sections: where fills come from. Both name base URLs that
// normalize_endpoint checks. Tricky: upstream keys are secrets, from a key file or else the
// environment (TUSK_<NAME>_ACCESS_KEY); messages name the file or the variable, never a key, and
// an endpoint carrying credentials is refused without being quoted.

#include <algorithm>
#include <cctype>
#include <charconv>
#include <iterator>

#include "conf/config_read.h"

namespace conf::detail {
namespace {

// A key is a few dozen bytes; anything much larger is the wrong file.
constexpr std::size_t kMaxKeyFileBytes = 64 * 1024;

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

// upstreams.<name>.forward_headers: a list of header names, lower-cased. Refused: what would
// leak a client's credentials upstream (Authorization, Cookie, Proxy-Authorization), hop-by-hop
// fields, Host, and the fields tusk writes itself (a forwarded one would override or duplicate
// them): Range, If-*, Content-Length, Expect, x-amz-*, X-Tusk-Peer.
Done set_forward_headers(const Value& v, std::vector<std::string>& out) {
  static constexpr std::string_view kRefused[] = {
      "authorization",
      "cookie",
      "proxy-authorization",
      "host",
      "connection",
      "keep-alive",
      "proxy-connection",
      "te",
      "trailer",
      "transfer-encoding",
      "upgrade",
      "proxy-authenticate",
      "range",
      "if-match",
      "if-none-match",
      "if-modified-since",
      "if-unmodified-since",
      "if-range",
      "content-length",
      "expect",
      "x-tusk-peer",
      "date",
  };
  if (!v.node.IsSequence()) {
    return unexpected(v.fail("expected a list of header names, got " + describe(v.node)));
  }
  if (v.node.size() > Upstream::kMaxForwardHeaders) {
    return unexpected(
        v.fail("at most " + std::to_string(Upstream::kMaxForwardHeaders) + " header names"));
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

// Reads one key from the file named at `v`. `found` tells the caller that the environment must
// not be consulted even though the key is still to be checked for emptiness.
Done set_key_from_file(const Value& v, const Context& ctx, std::string& out, bool& found) {
  auto file = read_named_file(v, ctx, kMaxKeyFileBytes);
  if (!file) {
    return unexpected(file.error());
  }
  out = strip_one_line_break(std::move(file->data));
  if (out.empty()) {
    return unexpected(v.fail("key file '" + file->path + "' is empty"));
  }
  found = true;
  warn_if_open_to_others(v, ctx, file->path);
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
                return set_choice(
                    f, {{"v2", Signature::kV2}, {"v4", Signature::kV4}, {"none", Signature::kNone}},
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

}  // namespace

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
    // The cache keys an object by endpoint, bucket and key: two upstreams of one endpoint share
    // their cached objects, so they must read as one identity. Otherwise an object one of them
    // may read would be served through the other's routes (a public upstream beside a keyed
    // one would hand out the keyed one's private objects).
    for (const auto& [other_name, other] : out) {
      if (other.endpoint == up->endpoint &&
          (other.signature != up->signature || other.access_key != up->access_key)) {
        return unexpected(fault_at(
            key.Mark(), "upstreams." + name + ": same endpoint as upstream " +
                            in_quotes(other_name) +
                            " but another identity (signature or access key); they would share "
                            "cached objects: use one upstream for both, or give each its own "
                            "endpoint"));
      }
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
          {"down_for",
           [&](const Value& f) { return set_seconds(f, Zero::kRejected, out.down_for); }}});
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
    return unexpected(
        members.fail("expected a map of peer names to base URLs, got " + describe(members.node)));
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
      return unexpected(
          url.fail("a peer URL is scheme://host:port without a path, got " + in_quotes(*normal)));
    }
    out.members.emplace(name, std::move(*normal));
  }
  if (out.members.count(out.self) == 0) {
    return unexpected(v.fail("self " + in_quotes(out.self) + " is not one of the members"));
  }
  return {};
}

}  // namespace conf::detail
