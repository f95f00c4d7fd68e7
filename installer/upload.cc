// Bundle upload, manifest reads and cleanup, all through s3::Client::perform (SigV2 or SigV4 per
// the upstream, signed by s3::sign_request like every other S3 request of tusk).
#include "installer/upload.h"

#include <ctime>

#include "s3/client.h"
#include "s3/sign.h"

namespace installer {
namespace {

Error s3_error(const std::string& what, const s3::Error& e) {
  std::string msg = what + ": ";
  if (e.http_status != 0) {
    msg += "HTTP " + std::to_string(e.http_status);
    if (!e.s3_code.empty()) {
      msg += " " + e.s3_code;
    }
    if (!e.message.empty()) {
      msg += " (" + e.message + ")";
    }
    return Error{Errc::kRemote, msg};
  }
  return Error{Errc::kNetwork, msg + e.message};
}

s3::HeaderList acl_headers(const S3Target& t) {
  s3::HeaderList h;
  if (!t.acl.empty()) {
    h.emplace_back("x-amz-acl", t.acl);
  }
  return h;
}

}  // namespace

Result<void> ensure_bucket(const S3Target& t, const LogFn& log) {
  log("Checking bucket: " + t.bucket);
  s3::Request head;
  head.method = s3::Method::kHead;
  head.bucket = t.bucket;
  auto r = s3::Client::perform(t.upstream, head);
  if (r) {
    return {};
  }
  if (r.error().code == s3::Errc::kForbidden || r.error().code == s3::Errc::kAuth) {
    return conf::unexpected(s3_error(
        "bucket " + t.bucket + " (it belongs to another account, or these credentials are wrong)",
        r.error()));
  }
  if (r.error().code != s3::Errc::kNotFound) {
    return conf::unexpected(s3_error("HEAD bucket " + t.bucket, r.error()));
  }
  log("Creating bucket: " + t.bucket);
  s3::Request put;
  put.method = s3::Method::kPut;
  put.bucket = t.bucket;
  if (auto c = s3::Client::perform(t.upstream, put); !c) {
    return conf::unexpected(s3_error("PUT bucket " + t.bucket, c.error()));
  }
  return {};
}

std::vector<std::string> bundle_keys(const Bundle& b) {
  std::vector<std::string> keys;
  for (const auto& p : b.parts) {
    keys.push_back(p.filename);
  }
  keys.push_back(b.manifest.name + ".manifest.xml");
  return keys;
}

Result<std::string> upload_bundle(const S3Target& t, const Bundle& b, const LogFn& log) {
  for (const auto& p : b.parts) {
    log("Uploading part: " + p.filename);
    s3::Request req;
    req.method = s3::Method::kPut;
    req.bucket = t.bucket;
    req.key = p.filename;
    req.body_file = p.path;
    req.body_sha256 = p.sha256;
    req.extra_headers = acl_headers(t);
    if (auto r = s3::Client::perform(t.upstream, req); !r) {
      return conf::unexpected(s3_error("PUT " + t.bucket + "/" + p.filename, r.error()));
    }
  }
  std::string key = b.manifest.name + ".manifest.xml";
  log("Uploading manifest file");
  s3::Request req;
  req.method = s3::Method::kPut;
  req.bucket = t.bucket;
  req.key = key;
  req.body = b.manifest_xml;
  req.extra_headers = acl_headers(t);
  if (auto r = s3::Client::perform(t.upstream, req); !r) {
    return conf::unexpected(s3_error("PUT " + t.bucket + "/" + key, r.error()));
  }
  std::string location = t.bucket + "/" + key;
  log("Uploaded image as " + location);
  return location;
}

Result<std::optional<std::string>> get_object(const S3Target& t, const std::string& key) {
  s3::Request req;
  req.method = s3::Method::kGet;
  req.bucket = t.bucket;
  req.key = key;
  auto r = s3::Client::perform(t.upstream, req);
  if (!r) {
    if (r.error().code == s3::Errc::kNotFound) {
      return std::optional<std::string>();
    }
    return conf::unexpected(s3_error("GET " + t.bucket + "/" + key, r.error()));
  }
  return std::optional<std::string>(std::move(r->body));
}

Result<void> delete_objects(const S3Target& t, const std::vector<std::string>& keys) {
  for (const auto& key : keys) {
    s3::Request req;
    req.method = s3::Method::kDelete;
    req.bucket = t.bucket;
    req.key = key;
    if (auto r = s3::Client::perform(t.upstream, req);
        !r && r.error().code != s3::Errc::kNotFound) {
      return conf::unexpected(s3_error("DELETE " + t.bucket + "/" + key, r.error()));
    }
  }
  return {};
}

}  // namespace installer
