// Subscriptions file, events and the sync loop. Tricky: the file is the only record of what was
// enqueued, so it is replaced atomically and its state advances one published event at a time.
#include "installer/subscription.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

namespace installer {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr std::size_t kMaxStoreBytes = 64u << 20;

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::int64_t num(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<std::int64_t>() : 0;
}

Result<void> write_atomically(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return fail(Errc::kIo, "create " + tmp + ": " + std::strerror(errno));
  }
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      return fail(Errc::kIo, "write " + tmp + ": " + std::strerror(e));
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    return fail(Errc::kIo, "sync " + tmp + ": " + std::strerror(errno));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return fail(Errc::kIo, "rename " + tmp + ": " + std::strerror(errno));
  }
  const std::string dir = fs::path(path).parent_path().string();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

}  // namespace

// --- the file -----------------------------------------------------------------------------------

std::string encode_subscriptions(const std::vector<Subscription>& subs) {
  ordered_json arr = ordered_json::array();
  for (const auto& s : subs) {
    ordered_json images = ordered_json::object();
    for (const auto& [id, st] : s.images) {
      images[id] = {{"sha512", st.sha512}, {"size", st.size}, {"uri", st.uri}};
    }
    arr.push_back({{"url", s.url},
                   {"token", s.token},
                   {"endorser_dn", s.endorser_dn},
                   {"ca_dir", s.ca_dir},
                   {"added", s.added},
                   {"synced", s.synced},
                   {"list_identifier", s.list_identifier},
                   {"list_version", s.list_version},
                   {"list_expires", s.list_expires},
                   {"last_error", s.last_error},
                   {"images", std::move(images)}});
  }
  ordered_json doc = {{"v", 1}, {"subscriptions", std::move(arr)}};
  return doc.dump(1, ' ', false, ordered_json::error_handler_t::replace) + "\n";
}

Result<std::vector<Subscription>> decode_subscriptions(std::string_view text) {
  auto doc = json::parse(text.begin(), text.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return fail(Errc::kFormat, "not JSON");
  }
  if (doc.value("v", 0) != 1) {
    return fail(Errc::kFormat, "unknown version (this tusk writes \"v\": 1)");
  }
  auto arr = doc.find("subscriptions");
  if (arr == doc.end() || !arr->is_array()) {
    return fail(Errc::kFormat, "no \"subscriptions\" array");
  }
  std::vector<Subscription> out;
  for (const auto& j : *arr) {
    if (!j.is_object() || str(j, "url").empty()) {
      return fail(Errc::kFormat, "a subscription without a url");
    }
    Subscription s;
    s.url = str(j, "url");
    s.token = str(j, "token");
    s.endorser_dn = str(j, "endorser_dn");
    s.ca_dir = str(j, "ca_dir");
    s.added = num(j, "added");
    s.synced = num(j, "synced");
    s.list_identifier = str(j, "list_identifier");
    s.list_version = str(j, "list_version");
    s.list_expires = num(j, "list_expires");
    s.last_error = str(j, "last_error");
    if (auto im = j.find("images"); im != j.end() && im->is_object()) {
      for (const auto& [id, st] : im->items()) {
        if (!st.is_object()) {
          return fail(Errc::kFormat, "image " + id + " of " + s.url + " is not an object");
        }
        auto size = st.find("size");
        s.images[id] = ImageState{
            str(st, "sha512"),
            size != st.end() && size->is_number_unsigned() ? size->get<std::uint64_t>() : 0,
            str(st, "uri")};
      }
    }
    out.push_back(std::move(s));
  }
  return out;
}

Result<SubscriptionStore> SubscriptionStore::open(const std::string& registry_dir) {
  std::error_code ec;
  fs::create_directories(registry_dir, ec);
  if (ec) {
    return fail(Errc::kIo, "create " + registry_dir + ": " + ec.message());
  }
  SubscriptionStore s;
  s.path_ = registry_dir + "/subscriptions.json";
  const std::string lock = registry_dir + "/subscriptions.lock";
  s.lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (s.lock_fd_ < 0) {
    return fail(Errc::kIo, "open " + lock + ": " + std::strerror(errno));
  }
  while (::flock(s.lock_fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      return fail(Errc::kIo, "lock " + lock + ": " + std::strerror(errno));
    }
  }
  std::ifstream in(s.path_, std::ios::binary);
  if (!in) {
    if (fs::exists(s.path_, ec)) {
      return fail(Errc::kIo, "cannot read " + s.path_);
    }
    return s;  // no subscriptions yet
  }
  std::string text;
  std::array<char, 65536> buf;
  while (in.read(buf.data(), buf.size()) || in.gcount() > 0) {
    text.append(buf.data(), static_cast<std::size_t>(in.gcount()));
    if (text.size() > kMaxStoreBytes) {
      return fail(Errc::kFormat,
                  s.path_ + " is larger than " + std::to_string(kMaxStoreBytes >> 20) + " MiB");
    }
  }
  auto subs = decode_subscriptions(text);
  if (!subs) {
    return fail(Errc::kFormat, s.path_ + ": " + subs.error().message + " (left as it is)");
  }
  s.subs_ = std::move(*subs);
  return s;
}

SubscriptionStore::SubscriptionStore(SubscriptionStore&& o) noexcept
    : path_(std::move(o.path_)),
      lock_fd_(std::exchange(o.lock_fd_, -1)),
      subs_(std::move(o.subs_)) {}

SubscriptionStore& SubscriptionStore::operator=(SubscriptionStore&& o) noexcept {
  if (this != &o) {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    path_ = std::move(o.path_);
    lock_fd_ = std::exchange(o.lock_fd_, -1);
    subs_ = std::move(o.subs_);
  }
  return *this;
}

SubscriptionStore::~SubscriptionStore() {
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the flock
}

Subscription* SubscriptionStore::find(const std::string& url) {
  for (auto& s : subs_) {
    if (s.url == url) return &s;
  }
  return nullptr;
}

Result<void> SubscriptionStore::save() {
  return write_atomically(path_, encode_subscriptions(subs_));
}

// --- events -------------------------------------------------------------------------------------

std::string encode_event(const ImageEvent& e) {
  const ImageListImage& i = e.image;
  ordered_json j = {{"v", 1},
                    {"identifier", i.identifier},
                    {"uri", i.uri},
                    {"size", i.size},
                    {"sha512", i.sha512},
                    {"format", i.format},
                    {"title", i.title},
                    {"description", i.description},
                    {"version", i.version},
                    {"arch", i.arch},
                    {"hypervisor", i.hypervisor},
                    {"kind", e.kind},
                    {"list", e.list},
                    {"subscription", e.subscription},
                    {"enqueued", e.enqueued}};
  return j.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

Result<ImageEvent> decode_event(std::string_view body) {
  auto j = json::parse(body.begin(), body.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return fail(Errc::kFormat, "the event is not a JSON object");
  }
  if (j.value("v", 0) != 1) {
    return fail(Errc::kFormat, "the event has an unknown version");
  }
  // The image fields are checked by the image-list parser's own rules: wrap them as a list of
  // one, so an event is never trusted more than the list it came from.
  json one = {{"dc:identifier", str(j, "identifier")},
              {"hv:uri", str(j, "uri")},
              {"hv:size", j.contains("size") ? j["size"] : json()},
              {"sl:checksum:sha512", str(j, "sha512")}};
  for (auto [from, to] :
       {std::pair{"format", "hv:format"}, std::pair{"title", "dc:title"},
        std::pair{"description", "dc:description"}, std::pair{"version", "hv:version"},
        std::pair{"arch", "sl:arch"}, std::pair{"hypervisor", "hv:hypervisor"}}) {
    if (!str(j, from).empty()) one[to] = str(j, from);
  }
  json list = {{"hv:imagelist",
                {{"dc:identifier", "event"},
                 {"hv:version", "1"},
                 {"dc:date:created", "2000-01-01T00:00:00Z"},
                 {"dc:date:expires", "2000-01-01T00:00:00Z"},
                 {"hv:endorser", {{"hv:x509", {{"hv:dn", "/CN=event"}, {"hv:ca", "/CN=event"}}}}},
                 {"hv:images", json::array({{{"hv:image", one}}})}}}};
  auto parsed = parse_image_list(list.dump());
  if (!parsed) {
    return fail(Errc::kFormat, "the event's image is not valid: " + parsed.error().message);
  }
  ImageEvent e;
  e.image = std::move(parsed->images.at(0));
  e.kind = str(j, "kind");
  e.list = str(j, "list");
  e.subscription = str(j, "subscription");
  e.enqueued = num(j, "enqueued");
  return e;
}

// --- sync ---------------------------------------------------------------------------------------

Result<std::vector<SyncReport>> sync_subscriptions(SubscriptionStore& store, Queue& queue,
                                                   const FetchFn& fetch, std::int64_t now) {
  std::vector<SyncReport> reports;
  for (Subscription& sub : store.all()) {
    SyncReport rep;
    rep.url = sub.url;
    std::vector<std::pair<std::string, std::string>> headers;
    if (!sub.token.empty()) {
      headers.emplace_back("Authorization", "Bearer " + sub.token);
    }
    std::optional<ImageList> list;
    if (auto got = fetch(sub.url, headers); !got) {
      rep.error = "fetch: " + got.error().message;
    } else if (got->first != 200) {
      rep.error = "fetch: HTTP " + std::to_string(got->first);
    } else {
      VerifyOptions vo;
      vo.ca_dir = sub.ca_dir;
      vo.endorser_dn = sub.endorser_dn;
      vo.now = now;
      auto l = load_endorsed_list(got->second, vo);
      if (!l) {
        rep.error = l.error().message;
      } else {
        list = std::move(*l);
      }
    }
    if (list) {
      const ImageListDiff diff = diff_image_list(sub.images, *list);
      for (const auto& change : diff.changed) {
        ImageEvent ev;
        ev.subscription = sub.url;
        ev.list = list->identifier;
        ev.kind = change.kind == ImageChange::Kind::kNew ? "new" : "changed";
        ev.enqueued = now;
        ev.image = change.image;
        if (auto p = queue.publish(encode_event(ev)); !p) {
          sub.last_error = "publish: " + p.error().message;
          if (auto s = store.save(); !s) {
            return conf::unexpected(s.error());
          }
          return fail(p.error().code, "publishing " + change.image.identifier + " from " + sub.url +
                                          ": " + p.error().message);
        }
        const ImageListImage& i = change.image;
        sub.images[i.identifier] = ImageState{i.sha512, i.size, i.uri};
        rep.enqueued.emplace_back(i.identifier, ev.kind);
      }
      for (const auto& id : diff.removed) {
        sub.images.erase(id);
      }
      rep.removed = diff.removed;
      sub.synced = now;
      sub.list_identifier = list->identifier;
      sub.list_version = list->version;
      sub.list_expires = list->expires;
    }
    sub.last_error = rep.error;
    if (auto s = store.save(); !s) {
      return conf::unexpected(s.error());
    }
    reports.push_back(std::move(rep));
  }
  return reports;
}

}  // namespace installer
