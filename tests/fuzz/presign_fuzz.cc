// Fuzz target: presigned-URL checks of hostile requests (s3/presign.h). Input: "path\nquery\nhost"
// (missing lines are empty); an odd-sized input is a HEAD. Checks: a verdict always, a reason
// unless kOk, kOk only for the known key; the query with the presign parameters stripped never
// verifies; and whatever presign_v4 agrees to sign from these parts verifies at once.
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "conf/check.h"
#include "s3/presign.h"

namespace {

constexpr std::time_t kNow = 1369353600;  // 20130524T000000Z
const s3::Credentials kKey{"AK", "se/cr+et"};

const std::string* secret_of(std::string_view ak) {
  return ak == kKey.access_key ? &kKey.secret_key : nullptr;
}

std::string_view next_line(std::string_view& in) {
  const std::size_t nl = in.find('\n');
  std::string_view line = in.substr(0, nl);
  in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  return line;
}

s3::PresignCheck verify(std::string_view method, std::string_view path, std::string_view query,
                        const std::string& host) {
  s3::PresignedRequest r;
  r.method = method;
  r.path = path;
  r.query = query;
  r.header = [&host](std::string_view name) -> std::optional<std::string> {
    if (name == "host") {
      return host;
    }
    return std::nullopt;
  };
  return s3::verify_presigned(r, secret_of, "us-east-1", "s3", kNow);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::string_view path = next_line(in);
  const std::string_view query = next_line(in);
  const std::string host(next_line(in));
  const std::string_view method = size % 2 == 1 ? "HEAD" : "GET";

  const s3::PresignCheck c = verify(method, path, query, host);
  TUSK_CHECK(c.reason.empty() == (c.result == s3::PresignResult::kOk));
  TUSK_CHECK(c.result != s3::PresignResult::kOk || c.key_id == kKey.access_key);
  TUSK_CHECK(c.key_id.size() <= 128);

  const std::string stripped = s3::strip_presign_params(query);
  TUSK_CHECK(stripped.size() <= query.size());
  const s3::PresignResult s = verify(method, path, stripped, host).result;
  TUSK_CHECK(s == s3::PresignResult::kNone || s == s3::PresignResult::kMalformed);

  // Round trip: sign http://HOST PATH ?QUERY, then check the URL as a client sends it.
  std::string url = "http://" + host + std::string(path);
  if (!query.empty()) {
    url += '?';
    url += query;
  }
  auto signed_url = s3::presign_v4(url, kKey, "us-east-1", "s3", kNow, 60);
  if (signed_url) {
    const std::string& u = *signed_url;
    const std::size_t auth_end = u.find_first_of("/?", 7);
    const std::size_t q = u.find('?', auth_end);
    TUSK_CHECK(auth_end != std::string::npos && q != std::string::npos);
    const std::string sent_host = s3::split_url(u).authority;
    const s3::PresignCheck back = verify(method, std::string_view(u).substr(auth_end, q - auth_end),
                                         std::string_view(u).substr(q + 1), sent_host);
    TUSK_CHECK(back.result == s3::PresignResult::kOk);
  }
  return 0;
}
