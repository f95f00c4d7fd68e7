// Which queue a URL names, and the RabbitMQ URI parser (pure). Tricky: a URL carries a password,
// so no error here quotes the URL or any part of it; each says which part is wrong instead.
#include "installer/queue.h"

#include <filesystem>

#include "installer/queue_amqp.h"
#include "installer/queue_embedded.h"

namespace installer {
namespace {

conf::Unexpected<Error> bad_url(const std::string& why) {
  return fail(Errc::kUsage, "queue URL: " + why +
                                " (expected amqp://USER:PASS@HOST:PORT/VHOST, the URL is not "
                                "repeated here because it may hold a password)");
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// %XY-decodes `in`; nullopt on a truncated or non-hex escape.
std::optional<std::string> decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '%') {
      out.push_back(in[i]);
      continue;
    }
    if (i + 2 >= in.size()) {
      return std::nullopt;
    }
    int hi = hex(in[i + 1]), lo = hex(in[i + 2]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  return out;
}

bool has_control(std::string_view s) {
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

Result<AmqpUrl> parse_amqp_url(std::string_view url) {
  constexpr std::string_view kScheme = "amqp://";
  if (url.substr(0, 8) == "amqps://") {
    return bad_url("amqps (TLS) is not supported; use amqp://");
  }
  if (url.size() < kScheme.size() || url.substr(0, kScheme.size()) != kScheme) {
    return bad_url("it must start with amqp://");
  }
  if (has_control(url) || url.find(' ') != std::string_view::npos) {
    return bad_url("it contains spaces or control characters");
  }
  std::string_view rest = url.substr(kScheme.size());
  if (rest.find_first_of("?#") != std::string_view::npos) {
    return bad_url("query parameters and fragments are not supported");
  }
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view path = slash == std::string_view::npos ? "" : rest.substr(slash + 1);
  AmqpUrl u;
  if (auto at = authority.find('@'); at != std::string_view::npos) {
    std::string_view userinfo = authority.substr(0, at);
    authority.remove_prefix(at + 1);
    if (authority.find('@') != std::string_view::npos) {
      return bad_url("an '@' in the user or password must be written %40");
    }
    auto colon = userinfo.find(':');
    auto user = decode(userinfo.substr(0, colon));
    auto pass = colon == std::string_view::npos ? std::optional<std::string>("")
                                                : decode(userinfo.substr(colon + 1));
    if (!user || !pass) {
      return bad_url("a bad %-escape in the user or password");
    }
    if (user->empty()) {
      return bad_url("the user is empty");
    }
    u.user = std::move(*user);
    u.password = std::move(*pass);
  }
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) {
      return bad_url("an IPv6 address lacks its closing ']'");
    }
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return bad_url("unexpected text after the IPv6 address");
      }
      port = after.substr(1);
      if (port.empty()) {
        return bad_url("the port is empty");
      }
    }
  } else {
    auto colon = authority.find(':');
    auto host = decode(authority.substr(0, colon));
    if (!host) {
      return bad_url("a bad %-escape in the host");
    }
    u.host = std::move(*host);
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) {
        return bad_url("the port is empty");
      }
    }
  }
  if (u.host.empty()) {
    return bad_url("the host is missing");
  }
  if (!port.empty()) {
    int p = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || p > 65535) {
        return bad_url("the port must be a number 1..65535");
      }
      p = p * 10 + (c - '0');
    }
    if (p < 1 || p > 65535) {
      return bad_url("the port must be a number 1..65535");
    }
    u.port = p;
  }
  if (path.find('/') != std::string_view::npos) {
    return bad_url("a '/' inside the vhost must be written %2F");
  }
  auto vhost = decode(path);
  if (!vhost) {
    return bad_url("a bad %-escape in the vhost");
  }
  u.vhost = vhost->empty() ? "/" : std::move(*vhost);
  return u;
}

Result<std::unique_ptr<Queue>> open_queue(const std::string& url, const std::string& registry_dir) {
  if (url.empty()) {
    if (registry_dir.empty()) {
      return fail(Errc::kUsage, "no registry folder for the embedded queue");
    }
    auto q = EmbeddedQueue::open((std::filesystem::path(registry_dir) / "queue").string());
    if (!q) {
      return conf::unexpected(q.error());
    }
    return std::unique_ptr<Queue>(std::move(*q));
  }
  auto parsed = parse_amqp_url(url);
  if (!parsed) {
    return conf::unexpected(parsed.error());
  }
  auto q = AmqpQueue::open(*parsed);
  if (!q) {
    return conf::unexpected(q.error());
  }
  return std::unique_ptr<Queue>(std::move(*q));
}

}  // namespace installer
