// `tusk queue ls|drain`: what waits on the work queue between `tusk subscribe sync` and `tusk
// worker`, and dropping all of it. The queue is the embedded one beside the registry unless
// --queue / TUSK_QUEUE names a RabbitMQ (amqp://...). Option plumbing only: installer/queue.h.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "installer/cli.h"
#include "installer/queue.h"

namespace installer {
namespace {

struct QueueArgs {
  std::string queue, registry;
  bool json = false;
};

Result<std::unique_ptr<Queue>> open_from(const QueueArgs& a, const EnvFn& env) {
  std::string url = a.queue.empty() ? env_or(env, "TUSK_QUEUE") : a.queue;
  std::string registry = a.registry.empty() ? default_registry_dir(env) : a.registry;
  return open_queue(url, registry);
}

// The event's "identifier" (the image list's dc:identifier); "-" for a body without one.
std::string identifier_of(const std::string& body) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object()) {
    auto it = j.find("identifier");
    if (it != j.end() && it->is_string() && !it->get<std::string>().empty()) {
      return it->get<std::string>();
    }
  }
  return "-";
}

int queue_ls(const QueueArgs& a, const EnvFn& env) {
  auto q = open_from(a, env);
  if (!q) return report(q.error());
  auto all = (*q)->list();
  if (!all) return report(all.error());
  if (a.json) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const auto& m : *all) {
      auto body = nlohmann::ordered_json::parse(m.body, nullptr, false);
      arr.push_back({{"identifier", identifier_of(m.body)},
                     {"state", m.state},
                     {"attempts", m.attempts},
                     {"last_error", m.last_error},
                     {"body", body.is_discarded() ? nlohmann::ordered_json(m.body) : body}});
    }
    std::printf("%s\n",
                arr.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
    return 0;
  }
  for (const auto& m : *all) {
    std::printf("%-38s %-8s %3d  %s\n", identifier_of(m.body).c_str(), m.state.c_str(), m.attempts,
                m.last_error.empty() ? "-" : m.last_error.c_str());
  }
  return 0;
}

int queue_drain(const QueueArgs& a, const EnvFn& env) {
  auto q = open_from(a, env);
  if (!q) return report(q.error());
  auto n = (*q)->drain();
  if (!n) return report(n.error());
  std::printf("removed %zu message%s from %s\n", *n, *n == 1 ? "" : "s", (*q)->describe().c_str());
  return 0;
}

void add_queue_options(CLI::App* app, QueueArgs& a) {
  app->add_option("--queue", a.queue,
                  "amqp://USER:PASS@HOST:PORT[/VHOST] (TUSK_QUEUE); default: the embedded queue "
                  "beside the registry");
  app->add_option("--registry", a.registry,
                  "registry folder (TUSK_REGISTRY, ~/.local/share/tusk/registry)");
}

}  // namespace

std::vector<Command> add_queue_commands(CLI::App& app, const EnvFn& env) {
  auto args = std::make_shared<QueueArgs>();
  auto* queue = app.add_subcommand("queue", "the work queue of image events (ls, drain)");
  queue->require_subcommand(1);
  auto* ls = queue->add_subcommand(
      "ls",
      "list waiting events in delivery order, parked last: identifier, state, attempts, "
      "last error");
  add_queue_options(ls, *args);
  ls->add_flag("--json", args->json, "a JSON array (with each event's body)");
  auto* drain = queue->add_subcommand("drain", "remove every waiting event; prints how many");
  add_queue_options(drain, *args);
  return {Command{ls, [args, env] { return queue_ls(*args, env); }},
          Command{drain, [args, env] { return queue_drain(*args, env); }}};
}

}  // namespace installer
