// LMDB registry and per-key flocks. Tricky: LMDB's own lock only serialises writers for the
// length of a transaction; the install itself takes minutes, so its exclusion is the flock on
// locks/<sha1 of key>.lock, which the kernel releases when the owner dies (crash = lock gone,
// record left in-progress = cleanup on the next attempt).
#include "installer/registry.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "installer/crypto.h"

namespace installer {
namespace {

namespace lmdb = cache::lmdb;

conf::Unexpected<Error> lmdb_failure(std::string_view what, const lmdb::Error& e) {
  return fail(Errc::kIo, std::string(what) + ": " + e.message);
}

// A transaction on the records, which live in LMDB's unnamed database.
struct Session {
  lmdb::Txn txn;
  lmdb::Dbi dbi = 0;
  const char* what = "";  // for error messages
};

Result<Session> begin(const lmdb::Env& env, bool write) {
  const char* what = write ? "registry write" : "registry read";
  auto txn = write ? lmdb::Txn::write(env) : lmdb::Txn::read(env);
  if (!txn) {
    return lmdb_failure(what, txn.error());
  }
  auto dbi = txn->open_dbi(nullptr, /*create=*/false);
  if (!dbi) {
    return lmdb_failure(what, dbi.error());
  }
  return Session{std::move(*txn), *dbi, what};
}

}  // namespace

const char* install_state_name(InstallState s) {
  switch (s) {
    case InstallState::kInProgress:
      return "in-progress";
    case InstallState::kFailed:
      return "failed";
    case InstallState::kDone:
      return "done";
  }
  return "in-progress";
}

std::string encode_record(const InstallRecord& r) {
  nlohmann::ordered_json j;
  j["v"] = 1;
  j["state"] = install_state_name(r.state);
  j["pid"] = r.pid;
  j["pid_start"] = r.pid_start;
  j["started"] = r.started;
  j["finished"] = r.finished;
  j["image"] = r.image;
  j["guid"] = r.guid;
  j["source"] = r.source;
  if (!r.content.empty()) j["content"] = r.content;
  j["bucket"] = r.bucket;
  j["work_dir"] = r.work_dir;
  j["eki"] = r.eki;
  j["eri"] = r.eri;
  j["emi"] = r.emi;
  j["pending_keys"] = r.pending_keys;
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

std::optional<InstallRecord> decode_record(std::string_view data) {
  auto j = nlohmann::json::parse(data.begin(), data.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || j.value("v", 0) != 1) {
    return std::nullopt;
  }
  try {
    InstallRecord r;
    std::string state = j.value("state", "");
    r.state = state == "done"     ? InstallState::kDone
              : state == "failed" ? InstallState::kFailed
                                  : InstallState::kInProgress;
    r.pid = j.value("pid", 0);
    r.pid_start = j.value("pid_start", std::uint64_t{0});
    r.started = j.value("started", std::int64_t{0});
    r.finished = j.value("finished", std::int64_t{0});
    r.image = j.value("image", "");
    r.guid = j.value("guid", "");
    r.source = j.value("source", "");
    r.content = j.value("content", "");
    r.bucket = j.value("bucket", "");
    r.work_dir = j.value("work_dir", "");
    r.eki = j.value("eki", "");
    r.eri = j.value("eri", "");
    r.emi = j.value("emi", "");
    r.pending_keys = j.value("pending_keys", std::vector<std::string>{});
    return r;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;  // wrong types inside a v1 record: treat as absent
  }
}

std::string registry_key(std::string_view image, std::string_view guid) {
  return std::string(image) + "@" + std::string(guid);
}

std::uint64_t process_start_time(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) {
    return 0;
  }
  // Field 2 (comm) may contain spaces: skip past its closing parenthesis.
  auto close = line.rfind(')');
  if (close == std::string::npos) {
    return 0;
  }
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  // After comm: state is field 3; starttime is field 22 → the 20th token here.
  for (int i = 3; i <= 22; ++i) {
    if (!(rest >> field)) {
      return 0;
    }
  }
  return std::strtoull(field.c_str(), nullptr, 10);
}

bool process_alive(int pid, std::uint64_t start) {
  if (pid <= 0) {
    return false;
  }
  if (::kill(pid, 0) != 0 && errno != EPERM) {
    return false;
  }
  return start == 0 || process_start_time(pid) == start;
}

KeyLock& KeyLock::operator=(KeyLock&& o) noexcept {
  if (fd_ >= 0) {
    ::close(fd_);
  }
  fd_ = std::exchange(o.fd_, -1);
  return *this;
}

KeyLock::~KeyLock() {
  if (fd_ >= 0) {
    ::close(fd_);  // releases the flock
  }
}

Registry::Registry(Registry&&) noexcept = default;
Registry& Registry::operator=(Registry&&) noexcept = default;
Registry::~Registry() = default;

Result<Registry> Registry::open(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(dir) / "locks", ec);
  if (ec) {
    return fail(Errc::kIo, "registry " + dir + ": " + ec.message());
  }
  lmdb::EnvOptions o;
  o.map_size = 1ull << 30;  // sparse: records with long presigned URLs are kilobytes each
  o.mode = 0644;
  auto env = lmdb::Env::open(dir, o);
  if (!env) {
    return lmdb_failure("registry " + dir, env.error());
  }
  Registry r;
  r.dir_ = dir;
  r.env_ = std::move(*env);
  return r;
}

Result<std::optional<InstallRecord>> Registry::get(const std::string& key) {
  auto s = begin(env_, /*write=*/false);
  if (!s) {
    return conf::unexpected(std::move(s).error());
  }
  auto value = s->txn.get(s->dbi, key);
  if (!value) {
    return lmdb_failure(s->what, value.error());
  }
  if (!*value) {
    return std::optional<InstallRecord>();
  }
  return decode_record(**value);
}

Result<void> Registry::put(const std::string& key, const InstallRecord& r) {
  auto s = begin(env_, /*write=*/true);
  if (!s) {
    return conf::unexpected(std::move(s).error());
  }
  if (auto w = s->txn.put(s->dbi, key, encode_record(r)); !w) {
    return lmdb_failure(s->what, w.error());
  }
  if (auto w = s->txn.commit(); !w) {
    return lmdb_failure(s->what, w.error());
  }
  return {};
}

Result<void> Registry::erase(const std::string& key) {
  auto s = begin(env_, /*write=*/true);
  if (!s) {
    return conf::unexpected(std::move(s).error());
  }
  if (auto w = s->txn.del(s->dbi, key); !w) {  // an absent key is fine
    return lmdb_failure(s->what, w.error());
  }
  if (auto w = s->txn.commit(); !w) {
    return lmdb_failure(s->what, w.error());
  }
  return {};
}

Result<std::vector<std::pair<std::string, InstallRecord>>> Registry::list() {
  auto s = begin(env_, /*write=*/false);
  if (!s) {
    return conf::unexpected(std::move(s).error());
  }
  auto cursor = lmdb::Cursor::open(s->txn, s->dbi);
  if (!cursor) {
    return lmdb_failure(s->what, cursor.error());
  }
  std::vector<std::pair<std::string, InstallRecord>> out;
  for (auto e = cursor->first();; e = cursor->next()) {
    if (!e) {
      return lmdb_failure(s->what, e.error());
    }
    if (!*e) {
      break;
    }
    if (auto rec = decode_record((*e)->value)) {
      out.emplace_back(std::string((*e)->key), std::move(*rec));
    }
  }
  return out;
}

// The key's lock file opened (its own file description, so threads of one process exclude each
// other too), and flocked: blocking or not.
static Result<std::optional<KeyLock>> lock_file(const std::string& path, bool wait) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return fail(Errc::kIo, "lock " + path + ": " + std::strerror(errno));
  }
  KeyLock lock(fd);
  while (::flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0) {
    if (!wait && errno == EWOULDBLOCK) {
      return std::optional<KeyLock>();
    }
    if (errno != EINTR) {
      return fail(Errc::kIo, "lock " + path + ": " + std::strerror(errno));
    }
  }
  return std::optional<KeyLock>(std::move(lock));
}

Result<KeyLock> Registry::lock(const std::string& key, const std::function<void()>& on_wait) {
  const std::string path = dir_ + "/locks/" + sha1_hex(key) + ".lock";
  auto now = lock_file(path, /*wait=*/false);
  if (!now) return conf::unexpected(now.error());
  if (*now) return std::move(**now);
  if (on_wait) {
    on_wait();
  }
  auto later = lock_file(path, /*wait=*/true);
  if (!later) return conf::unexpected(later.error());
  return std::move(**later);
}

Result<std::optional<KeyLock>> Registry::try_lock(const std::string& key) {
  return lock_file(dir_ + "/locks/" + sha1_hex(key) + ".lock", /*wait=*/false);
}

Result<Registry*> use_registry(Registry* shared, const std::string& dir,
                               std::optional<Registry>& own) {
  if (shared != nullptr) {
    return shared;
  }
  auto r = Registry::open(dir);
  if (!r) {
    return conf::unexpected(r.error());
  }
  own.emplace(std::move(*r));
  return &*own;
}

std::string default_registry_dir(
    const std::function<std::optional<std::string>(const char*)>& env) {
  if (auto r = env("TUSK_REGISTRY"); r && !r->empty()) {
    return *r;
  }
  if (auto d = env("XDG_DATA_HOME"); d && !d->empty()) {
    return *d + "/tusk/registry";
  }
  std::string home = env("HOME").value_or(".");
  return home + "/.local/share/tusk/registry";
}

}  // namespace installer
