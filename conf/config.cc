// Turns tuskd's YAML configuration into the validated structs of config.h: the small sections
// (server, admin, cache, fill, log), the order in which all sections are read, and loading.
// The reading machinery is in config_read.h; upstreams and peers, routes, and the pure value
// parsers have their own files. Tricky: yaml-cpp throws and counts lines from 0, and it marks an
// empty value at the *next* token (possibly lines later), so errors about an empty value point at
// its key instead. Every check returns a Fault that load_string turns into a ConfigError. Key
// files and environment values are secrets: messages name the path or the variable, never what
// was read.

#include "conf/config.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iterator>
#include <optional>
#include <sstream>
#include <utility>

#include "conf/config_read.h"

namespace conf {
namespace detail {
namespace {

// Chunks are whole disk blocks; above 1GiB one chunk is a whole VM image and chunking is moot.
constexpr std::uint64_t kChunkAlign = 4096;
constexpr std::uint64_t kMaxChunk = kGiB;

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

}  // namespace
}  // namespace detail

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

namespace {

using detail::Context;
using detail::Fault;
using detail::fault_at;
using detail::kMiB;
using detail::read_config;
using detail::read_whole_file;

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
