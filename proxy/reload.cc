#include "proxy/reload.h"

#include <spdlog/spdlog.h>

#include <condition_variable>
#include <fstream>
#include <sstream>

#include "proxy/fetch.h"
#include "s3/client.h"

namespace proxy {

std::vector<std::string> restart_needed(const conf::Config& running, const conf::Config& next) {
  std::vector<std::string> out;
  auto check = [&out](bool same, const char* name) {
    if (!same) {
      out.emplace_back(name);
    }
  };
  const conf::Server& a = running.server;
  const conf::Server& b = next.server;
  check(a.listen == b.listen, "server.listen");
  check(a.workers == b.workers, "server.workers");
  check(a.max_connections == b.max_connections, "server.max_connections");
  check(a.idle_timeout == b.idle_timeout, "server.idle_timeout");
  check(a.header_timeout == b.header_timeout, "server.header_timeout");
  check(a.send_timeout == b.send_timeout, "server.send_timeout");
  check(a.max_header_size == b.max_header_size, "server.max_header_size");
  check(a.drain_delay == b.drain_delay, "server.drain_delay");
  check(a.drain_timeout == b.drain_timeout, "server.drain_timeout");
  check(a.proxy_protocol == b.proxy_protocol, "server.proxy_protocol");
  check(running.admin.listen == next.admin.listen, "admin.listen");
  check(running.cache.dir == next.cache.dir, "cache.dir");
  check(running.cache.max_size == next.cache.max_size, "cache.max_size");
  check(running.cache.chunk_size == next.cache.chunk_size, "cache.chunk_size");
  check(running.cache.min_free == next.cache.min_free, "cache.min_free");
  check(running.fill.memory_spill == next.fill.memory_spill, "fill.memory_spill");
  check(running.log.access_log == next.log.access_log, "log.access_log");
  check(running.log.format == next.log.format, "log.format");
  check(running.peers == next.peers, "peers");
  return out;
}

conf::Result<std::string, std::string> read_token_file(const std::string& path) {
  if (path.empty()) {
    return std::string();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return conf::unexpected("cannot read admin.token_file " + path);
  }
  std::string token(4097, '\0');
  in.read(token.data(), static_cast<std::streamsize>(token.size()));
  token.resize(static_cast<std::size_t>(in.gcount()));
  if (token.size() > 4096) {
    return conf::unexpected("admin.token_file " + path + " is longer than 4 KiB");
  }
  if (token.ends_with("\r\n")) {
    token.resize(token.size() - 2);
  } else if (token.ends_with('\n')) {
    token.pop_back();
  }
  if (token.empty()) {
    return conf::unexpected("admin.token_file " + path + " is empty");
  }
  return token;
}

Reloader::Reloader(std::string path, Services& svc, EventLoop& fetch)
    : path_(std::move(path)), svc_(svc), fetch_(fetch) {}

ReloadResult Reloader::reload() {
  std::lock_guard guard(mu_);
  ReloadResult out;
  auto refuse = [&](std::string why) {
    out.ok = false;
    out.error = std::move(why);
    out.generation = svc_.live()->generation;
    svc_.metrics.config_reload(false);
    spdlog::error("reload refused, the running configuration stays: {}", out.error);
    return out;
  };
  auto loaded = conf::load_file(path_);
  if (!loaded) {
    return refuse(loaded.error().str());
  }
  auto token = read_token_file(loaded->admin.token_file);
  if (!token) {
    return refuse(token.error());
  }
  for (const std::string& w : loaded->warnings) {
    spdlog::warn("{}", w);
  }
  auto next = std::make_shared<const conf::Config>(std::move(*loaded));
  const std::shared_ptr<const Live> current = svc_.live();

  // New clients for the upstreams that changed, made and installed on the fetch loop (their
  // transfers run there); unchanged ones keep their connections.
  std::string error;
  {
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    fetch_.post([&] {
      FillTable::Origins origins;
      for (const auto& [name, up] : next->upstreams) {
        auto old = current->config->upstreams.find(name);
        if (old != current->config->upstreams.end() && old->second == up) {
          continue;
        }
        auto client = s3::Client::create(fetch_.base(), up);
        if (!client) {
          error = "upstream '" + name + "': " + client.error().message;
          break;
        }
        origins[name] = client_origin(std::move(client).value(), &svc_.metrics);
      }
      if (error.empty()) {
        svc_.fills.set_origins(std::move(origins));
      }
      std::lock_guard lock(mu);
      done = true;
      cv.notify_all();
    });
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  if (!error.empty()) {
    return refuse(error);
  }
  out.restart_needed = restart_needed(svc_.config, *next);
  svc_.fills.set_parallel(next->fill.parallel);
  spdlog::set_level(spdlog::level::from_str(next->log.level));
  out.generation = current->generation + 1;
  svc_.set_live(std::make_shared<const Live>(next, std::move(*token), out.generation));
  out.ok = true;
  svc_.metrics.config_reload(true);
  std::string restart;
  for (const auto& s : out.restart_needed) {
    restart += (restart.empty() ? "" : ", ") + s;
  }
  spdlog::info("configuration {} reloaded (generation {}: {} upstreams, {} routes){}", path_,
               out.generation, next->upstreams.size(), next->routes.size(),
               restart.empty() ? "" : "; changed but applied only after a restart: " + restart);
  return out;
}

}  // namespace proxy
