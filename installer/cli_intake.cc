// `tusk subscribe add|ls|remove|sync` and `tusk worker`: endorsed image-list subscriptions and
// the worker that registers what they enqueue (subscription.h, worker.h, queue.h). Option
// plumbing only.
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>
#include <thread>

#include "installer/cli.h"
#include "installer/http.h"
#include "installer/imagelist.h"
#include "installer/queue.h"
#include "installer/subscription.h"
#include "installer/worker.h"

namespace installer {
namespace {

constexpr const char* kDefaultCaDir = "/etc/grid-security/certificates";  // vmcatcher's

std::atomic<bool> g_stop{false};  // set by SIGINT/SIGTERM: the worker stops between events

std::string queue_url(const std::string& flag, const EnvFn& env) {
  return flag.empty() ? env_or(env, "TUSK_QUEUE") : flag;
}

struct SubscribeArgs {
  std::string registry, url, token, endorser_dn, ca_dir, queue;
  bool json = false;
};

int subscribe_add(const SubscribeArgs& a, const EnvFn& env) {
  if (a.url.rfind("http://", 0) != 0 && a.url.rfind("https://", 0) != 0) {
    return report(Error{Errc::kUsage, "the list URL must be http:// or https://"});
  }
  auto store = SubscriptionStore::open(a.registry.empty() ? default_registry_dir(env) : a.registry);
  if (!store) return report(store.error());
  Subscription* s = store->find(a.url);
  const bool updated = s != nullptr;
  if (!s) {
    store->all().push_back(Subscription{});
    s = &store->all().back();
    s->url = a.url;
    s->added = std::time(nullptr);
  }
  s->token = a.token;
  s->endorser_dn = a.endorser_dn;
  s->ca_dir = a.ca_dir.empty() ? kDefaultCaDir : a.ca_dir;
  if (auto w = store->save(); !w) return report(w.error());
  std::printf("%s %s (endorser %s, CA dir %s)\n", updated ? "Updated" : "Subscribed to",
              a.url.c_str(), s->endorser_dn.empty() ? "any trusted signer" : s->endorser_dn.c_str(),
              s->ca_dir.c_str());
  return 0;
}

int subscribe_ls(const SubscribeArgs& a, const EnvFn& env) {
  auto store = SubscriptionStore::open(a.registry.empty() ? default_registry_dir(env) : a.registry);
  if (!store) return report(store.error());
  if (a.json) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const auto& s : store->all()) {
      arr.push_back({{"url", s.url},
                     {"token", !s.token.empty()},  // whether one is set, never its value
                     {"endorser_dn", s.endorser_dn},
                     {"ca_dir", s.ca_dir},
                     {"synced", time_text(s.synced)},
                     {"list", s.list_identifier},
                     {"version", s.list_version},
                     {"expires", time_text(s.list_expires)},
                     {"images", s.images.size()},
                     {"last_error", s.last_error}});
    }
    std::printf("%s\n", arr.dump(2).c_str());
    return 0;
  }
  for (const auto& s : store->all()) {
    std::printf(
        "%s\n  endorser: %s\n  CA dir: %s\n  token: %s\n  synced: %s (%zu images, list %s"
        " version %s, expires %s)\n",
        s.url.c_str(), s.endorser_dn.empty() ? "any trusted signer" : s.endorser_dn.c_str(),
        s.ca_dir.c_str(), s.token.empty() ? "none" : "set", time_text(s.synced).c_str(),
        s.images.size(), s.list_identifier.empty() ? "-" : s.list_identifier.c_str(),
        s.list_version.empty() ? "-" : s.list_version.c_str(), time_text(s.list_expires).c_str());
    if (!s.last_error.empty()) std::printf("  last error: %s\n", s.last_error.c_str());
  }
  return 0;
}

int subscribe_remove(const SubscribeArgs& a, const EnvFn& env) {
  auto store = SubscriptionStore::open(a.registry.empty() ? default_registry_dir(env) : a.registry);
  if (!store) return report(store.error());
  auto& all = store->all();
  const auto before = all.size();
  std::erase_if(all, [&](const Subscription& s) { return s.url == a.url; });
  if (all.size() == before) {
    return report(Error{Errc::kUsage, "not subscribed to " + a.url});
  }
  if (auto w = store->save(); !w) return report(w.error());
  std::printf("Unsubscribed from %s (what it registered stays; `tusk images` lists it)\n",
              a.url.c_str());
  return 0;
}

int subscribe_sync(const SubscribeArgs& a, const EnvFn& env) {
  const std::string registry = a.registry.empty() ? default_registry_dir(env) : a.registry;
  auto store = SubscriptionStore::open(registry);
  if (!store) return report(store.error());
  auto queue = open_queue(queue_url(a.queue, env), registry);
  if (!queue) return report(queue.error());
  auto http = Http::create();
  if (!http) return report(http.error());
  FetchFn fetch = [&](const std::string& url,
                      const Headers& h) -> Result<std::pair<int, std::string>> {
    auto r = http->request("GET", url, h, {}, kMaxSignedMessageBytes);
    if (!r) return conf::unexpected(r.error());
    return std::pair<int, std::string>{r->status, std::move(r->body)};
  };
  auto reports = sync_subscriptions(*store, **queue, fetch, std::time(nullptr));
  if (!reports) return report(reports.error());
  int rc = 0;
  for (const auto& r : *reports) {
    if (!r.error.empty()) {
      std::fprintf(stderr, "tusk: error: %s: %s (nothing enqueued from it)\n", r.url.c_str(),
                   r.error.c_str());
      rc = 1;
      continue;
    }
    for (const auto& [id, kind] : r.enqueued) {
      std::printf("enqueued %s (%s) from %s\n", id.c_str(), kind.c_str(), r.url.c_str());
    }
    for (const auto& id : r.removed) {
      std::printf("removed %s from %s (its registration stays)\n", id.c_str(), r.url.c_str());
    }
    if (r.enqueued.empty()) {
      std::fprintf(stderr, "%s: no new or changed images\n", r.url.c_str());
    }
  }
  if (reports->empty()) {
    std::fprintf(stderr, "no subscriptions: add one with `tusk subscribe add URL`\n");
  }
  return rc;
}

struct WorkerArgs {
  CloudArgs cloud;
  std::string queue, kernel, ramdisk;
  bool once = false;
  int max_attempts = 5;
  int backoff_s = 30;
  bool no_progress = false;
};

int worker(const WorkerArgs& a, const EnvFn& env) {
  WorkerOptions w;
  if (auto r = a.cloud.apply(w.base, env); !r) return report(r.error());
  w.base.disk_kernel_id = a.kernel;
  w.base.disk_ramdisk_id = a.ramdisk;
  w.max_attempts = a.max_attempts;
  w.backoff = std::chrono::seconds(a.backoff_s);
  auto queue = open_queue(queue_url(a.queue, env), w.base.registry_dir);
  if (!queue) return report(queue.error());
  InstallIo io;
  io.log = log_line;
  io.tty = ::isatty(STDERR_FILENO) == 1;
  io.progress = a.no_progress ? nullptr : stderr;
  std::signal(SIGINT, [](int) { g_stop = true; });
  std::signal(SIGTERM, [](int) { g_stop = true; });
  log_line("tusk worker: taking events from " + (*queue)->describe() +
           (a.once ? " (one event)" : " (SIGTERM or ^C stops it between events)"));
  int failures = 0;
  while (!g_stop) {
    auto r = work_one(**queue, w, io, std::chrono::seconds(a.once ? 2 : 1), install_image);
    if (!r && !a.once) {
      // A broker that went away (or closed the channel of a very long install: RabbitMQ's
      // consumer_timeout): the event comes back and the registry answers it. Keep serving.
      log_line("tusk worker: queue error: " + r.error().message + "; retrying in 5 s");
      for (int i = 0; i < 50 && !g_stop; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;
    }
    if (!r) return report(r.error());
    switch (r->outcome) {
      case WorkOutcome::kIdle:
        if (a.once) {
          log_line("tusk worker: nothing is queued");
          return 0;
        }
        continue;
      case WorkOutcome::kRegistered:
        std::printf("registered %s: %s\n", r->identifier.c_str(), r->emi.c_str());
        std::fflush(stdout);
        break;
      case WorkOutcome::kRetried:
        ++failures;
        log_line("tusk worker: " + r->identifier + " failed (attempt " +
                 std::to_string(r->attempts) + " of " + std::to_string(w.max_attempts) +
                 "), retried in " +
                 std::to_string(std::chrono::duration_cast<std::chrono::seconds>(
                                    retry_delay(w, r->attempts - 1))
                                    .count()) +
                 " s: " + r->error);
        break;
      case WorkOutcome::kParked:
        ++failures;
        log_line("tusk worker: " + (r->identifier.empty() ? "an event" : r->identifier) +
                 " parked after " + std::to_string(r->attempts) + " attempts: " + r->error);
        break;
    }
    if (a.once) return failures > 0 ? 1 : 0;
  }
  log_line("tusk worker: stopped");
  return 0;
}

}  // namespace

std::vector<Command> add_intake_commands(CLI::App& app, const EnvFn& env) {
  auto sa = std::make_shared<SubscribeArgs>();
  auto* sub = app.add_subcommand("subscribe", "endorsed image-list subscriptions (vmcatcher)");
  sub->require_subcommand(1);
  sub->add_option("--registry", sa->registry, "registry folder (TUSK_REGISTRY)");
  auto* add = sub->add_subcommand("add", "subscribe to a signed image list (or update one)");
  add->add_option("URL", sa->url, "where the S/MIME-signed list is")->required();
  add->add_option("--token", sa->token, "sent as Authorization: Bearer (stored 0600)");
  add->add_option("--endorser-dn", sa->endorser_dn, "the signer must be this DN (/C=../CN=..)");
  add->add_option("--ca-dir", sa->ca_dir,
                  std::string("trusted CA certificates (default ") + kDefaultCaDir + ")");
  auto* ls = sub->add_subcommand("ls", "list subscriptions");
  ls->add_flag("--json", sa->json, "JSON");
  auto* rm = sub->add_subcommand("remove", "unsubscribe (registered images stay)");
  rm->add_option("URL", sa->url, "the list URL")->required();
  auto* sync = sub->add_subcommand("sync", "fetch, verify and diff every list; enqueue changes");
  sync->add_option("--queue", sa->queue, "amqp://USER:PASS@HOST:PORT[/VHOST] (TUSK_QUEUE)");
  for (auto* v : {add, ls, rm, sync}) v->fallthrough();

  auto wa = std::make_shared<WorkerArgs>();
  auto* work = app.add_subcommand("worker", "register the images the queue holds");
  work->add_flag("--once", wa->once, "one event, then exit (exit 1 if it failed)");
  work->add_option("--queue", wa->queue, "amqp://USER:PASS@HOST:PORT[/VHOST] (TUSK_QUEUE)");
  work->add_option("--kernel", wa->kernel, "kernel (eki-…) to register disk images with");
  work->add_option("--ramdisk", wa->ramdisk, "ramdisk (eri-…) to register disk images with");
  work->add_option("--max-attempts", wa->max_attempts, "deliveries before an event is parked")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  work->add_option("--backoff", wa->backoff_s, "first retry delay in seconds (doubles)")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  work->add_flag("--no-progress", wa->no_progress, "no progress display");
  wa->cloud.add(work, /*bucket_required=*/true);

  return {
      {add, [sa, &env] { return subscribe_add(*sa, env); }},
      {ls, [sa, &env] { return subscribe_ls(*sa, env); }},
      {rm, [sa, &env] { return subscribe_remove(*sa, env); }},
      {sync, [sa, &env] { return subscribe_sync(*sa, env); }},
      {work, [wa, &env] { return worker(*wa, env); }},
  };
}

}  // namespace installer
