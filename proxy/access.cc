// Client access control (proxy/access.h).
#include "proxy/access.h"

#include <openssl/crypto.h>

#include <optional>

#include "proxy/http_text.h"
#include "s3/presign.h"
#include "s3/sign.h"

namespace proxy {
namespace {

AccessVerdict refuse(AccessResult result, int status, std::string reason) {
  AccessVerdict v;
  v.result = result;
  v.status = status;
  v.reason = std::move(reason);
  return v;
}

// `Authorization: Bearer <token>` (the scheme case-insensitive, RFC 9110 §11.1): the token, or
// nullopt when the field is absent or names another scheme. Several Authorization lines are
// ambiguous: an empty token (never valid).
std::optional<std::string_view> bearer_token(const RequestHead& head) {
  const std::string* found = nullptr;
  for (const auto& [name, value] : head.fields) {
    if (iequals(name, "Authorization")) {
      if (found != nullptr) {
        return std::string_view();
      }
      found = &value;
    }
  }
  if (found == nullptr) {
    return std::nullopt;
  }
  std::string_view v = *found;
  constexpr std::string_view kScheme = "bearer ";
  if (v.size() < kScheme.size() || !iequals(v.substr(0, kScheme.size()), kScheme)) {
    return std::nullopt;
  }
  v.remove_prefix(kScheme.size());
  while (!v.empty() && v.front() == ' ') {
    v.remove_prefix(1);
  }
  return v;
}

AccessVerdict check_token(const conf::Route& route, const RequestHead& head) {
  const std::optional<std::string_view> token = bearer_token(head);
  if (!token) {
    AccessVerdict v = refuse(AccessResult::kNoCredentials, 401, "a bearer token is required");
    v.challenge = true;
    return v;
  }
  // Constant time in the token and in which line matches: digests of equal length compared
  // with CRYPTO_memcmp, every line compared (the loop never stops early).
  const std::string presented = conf::token_digest(*token);
  const std::string* matched = nullptr;
  for (const std::string& known : route.token_digests) {
    if (CRYPTO_memcmp(presented.data(), known.data(), presented.size()) == 0) {
      matched = &known;
    }
  }
  if (matched == nullptr) {
    return refuse(AccessResult::kBadCredentials, 403, "the bearer token is not valid here");
  }
  AccessVerdict v;
  v.key_id = "token:" + s3::hex(*matched).substr(0, 12);
  return v;
}

AccessVerdict check_presigned(const conf::Route& route, const AccessRequest& req, std::time_t now) {
  s3::PresignedRequest p;
  p.method = req.method;
  p.path = req.path;
  p.query = req.query;
  p.header = [&req](std::string_view lower) -> std::optional<std::string> {
    if (lower == "host") {
      return std::string(req.host);
    }
    if (const std::string* v = req.head->find(lower)) {
      return *v;
    }
    return std::nullopt;
  };
  auto secrets = [&route](std::string_view access) -> const std::string* {
    auto it = route.client_keys.find(std::string(access));
    return it == route.client_keys.end() ? nullptr : &it->second;
  };
  const s3::PresignCheck c =
      s3::verify_presigned(p, secrets, route.auth_region, route.auth_service, now);
  AccessVerdict v;
  switch (c.result) {
    case s3::PresignResult::kOk:
      break;
    case s3::PresignResult::kNone:
      v = refuse(AccessResult::kNoCredentials, 403, "a presigned URL is required");
      break;
    case s3::PresignResult::kExpired:
      v = refuse(AccessResult::kExpired, 403, "the presigned URL has expired");
      break;
    case s3::PresignResult::kNotYetValid:
    case s3::PresignResult::kMalformed:
    case s3::PresignResult::kTooLong:
    case s3::PresignResult::kUnknownKey:
    case s3::PresignResult::kBadSignature:
      v = refuse(AccessResult::kBadCredentials, 403, "presigned URL refused: " + c.reason);
      break;
  }
  v.key_id = c.key_id;
  return v;
}

}  // namespace

const char* access_result_name(AccessResult r) {
  switch (r) {
    case AccessResult::kAllowed:
      return "allowed";
    case AccessResult::kDeniedIp:
      return "denied_ip";
    case AccessResult::kNoCredentials:
      return "no_credentials";
    case AccessResult::kBadCredentials:
      return "bad_credentials";
    case AccessResult::kExpired:
      return "expired";
  }
  return "allowed";
}

std::string route_label(const conf::Route& route) {
  return route.host + (route.prefix.empty() ? route.path : route.prefix);
}

std::string token_id(std::string_view token) {
  return "token:" + s3::hex(conf::token_digest(token)).substr(0, 12);
}

AccessVerdict check_access(const conf::Route& route, const AccessRequest& req, std::time_t now) {
  if (!route.allow.empty() && !route.allow.contains(req.client)) {
    return refuse(AccessResult::kDeniedIp, 403, "this address may not read this path");
  }
  switch (route.auth) {
    case conf::Auth::kNone:
      return {};
    case conf::Auth::kToken:
      return check_token(route, *req.head);
    case conf::Auth::kPresigned:
      return check_presigned(route, req, now);
  }
  return {};
}

}  // namespace proxy
