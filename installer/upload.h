// Uploading a bundle (EUSTORE.md §4): check the bucket (create it on 404, without an ACL), PUT
// every part, then the manifest last, each with `x-amz-acl: <acl>` (aws-exec-read by default;
// radosgw refuses it, so the ACL is an option). Uses s3::Client::perform (SigV2 or SigV4 per the
// upstream). Also deletes objects, for cleaning up an interrupted install. Blocking.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "conf/config.h"
#include "installer/bundle.h"
#include "installer/error.h"
#include "installer/http.h"

namespace installer {

using LogFn = std::function<void(const std::string&)>;

struct S3Target {
  conf::Upstream upstream;  // endpoint = S3_URL, keys, signature v2|v4, region
  std::string bucket;
  std::string acl = "aws-exec-read";  // canned ACL header value; empty sends none
};

// Errors (kRemote / kNetwork) name the request and carry the S3 error code, e.g.
// "PUT b/k.part.00: HTTP 400 InvalidArgument ...". 403 on the bucket check says so plainly.
Result<void> ensure_bucket(const S3Target& t, const LogFn& log);

// The object keys a bundle occupies (parts, then manifest), for the registry's cleanup list.
std::vector<std::string> bundle_keys(const Bundle& b);

// Uploads parts then manifest. Returns the ImageLocation "<bucket>/<prefix>.manifest.xml".
Result<std::string> upload_bundle(const S3Target& t, const Bundle& b, const LogFn& log);

// GETs a small object (a manifest): its body, or nullopt when it does not exist (404).
Result<std::optional<std::string>> get_object(const S3Target& t, const std::string& key);

// DELETE each key (404 counts as deleted). Errors stop at the first failure.
Result<void> delete_objects(const S3Target& t, const std::vector<std::string>& keys);

}  // namespace installer
