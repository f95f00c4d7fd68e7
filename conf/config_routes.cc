// The `routes:` section: which requests go to which upstream bucket and key, and who may read
// them (`allow`, `auth` with its token or client-key file). Tricky: a route is checked as a whole
// after its keys are read (path xor prefix, key only for exact routes, auth keys matching `auth`),
// and a route shadowed by an earlier one is an error naming both lines.

#include <algorithm>
#include <optional>

#include "conf/client_auth.h"
#include "conf/config_read.h"

namespace conf::detail {
namespace {

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
  auto file = read_named_file(v, ctx, kMaxAuthFileBytes);
  if (!file) {
    return unexpected(file.error());
  }
  auto parsed = parse(file->data);
  if (!parsed) {
    return unexpected(v.fail("'" + file->path + "': " + parsed.error()));
  }
  warn_if_open_to_others(v, ctx, file->path);
  path_out = std::move(file->path);
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
      v,
      {
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
             return set_choice(f, {{"ignore", Query::kIgnore}, {"key", Query::kKey}}, route.query);
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
             auto digests = [](std::string_view text) {
               auto tokens = parse_token_file(text);
               if (tokens) {
                 for (std::string& t : *tokens) {
                   t = token_digest(t);
                 }
               }
               return tokens;
             };
             return read_auth_file(f, ctx, route.auth_token_file, route.token_digests, digests);
           }},
          {"client_keys_file",
           [&](const Value& f) {
             return read_auth_file(f, ctx, route.client_keys_file, route.client_keys,
                                   parse_client_keys);
           }},
          {"auth_region", [&](const Value& f) { return set_aws_scope(f, route.auth_region); }},
          {"auth_service", [&](const Value& f) { return set_aws_scope(f, route.auth_service); }},
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
}  // namespace

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

}  // namespace conf::detail
