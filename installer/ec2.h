// RegisterImage over the EC2 Query API (EUSTORE.md §5): building the parameters, signing them
// with SigV2 (HmacSHA256, the default: every Eucalyptus and AWS of the era accepts it) or SigV4
// (service ec2), the POST, and parsing the answer or the EC2 error XML namespace-agnostically.
// Signing and parsing are pure; register_image() does the one blocking request.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "installer/error.h"
#include "installer/http.h"

namespace installer {

enum class Ec2Signature { kV2, kV4 };

struct Ec2Endpoint {
  std::string url;  // EC2_URL, e.g. http://clc:8773/services/Eucalyptus
  std::string access_key;
  std::string secret_key;
  Ec2Signature signature = Ec2Signature::kV2;
  std::string region = "eucalyptus";  // SigV4 only
  std::string api_version = "2013-02-01";
};

struct RegisterParams {
  std::string image_location;  // bucket/key.manifest.xml
  std::string name;
  std::string description;  // optional
  std::string architecture;
  std::string kernel_id;   // optional (machine images)
  std::string ramdisk_id;  // optional
};

using Params = std::vector<std::pair<std::string, std::string>>;

// Action, Version and the RegisterImage parameters (never KernelId=true, §8.15).
Params register_params(const Ec2Endpoint& ep, const RegisterParams& p);

struct SignedPost {
  std::string url;
  Headers headers;   // Host, Content-Type, and for SigV4 X-Amz-Date + Authorization
  std::string body;  // application/x-www-form-urlencoded
};
// Signs `params` for a POST to ep.url at time `now`.
SignedPost sign_post(const Ec2Endpoint& ep, Params params, std::time_t now);

// 2xx with an <imageId> matching ^[ae][mkr]i-[0-9A-Fa-f]{8}([0-9A-Fa-f]{9})?$ gives the id.
// Otherwise kRemote with "<Code>: <Message>" from the EC2 error XML (or the HTTP status and the
// start of the body when it is not XML), or kFormat for a 2xx without a usable id.
Result<std::string> parse_register_response(int status, std::string_view body);

bool is_image_id(std::string_view id);

// POSTs and parses. Errors as above, plus kNetwork for transport failures.
Result<std::string> register_image(Http& http, const Ec2Endpoint& ep, const RegisterParams& p);

// One image as DescribeImages lists it.
struct ImageInfo {
  std::string id;
  std::string location;  // imageLocation: bucket/prefix.manifest.xml
  std::string state;     // pending | available | failed | deregistered (lowercase)
  std::string name;
  std::string type;  // machine | kernel | ramdisk
};

// DescribeImages of `ids` (ImageId.N), or with no ids the account's own images (Owner.1=self).
Params describe_params(const Ec2Endpoint& ep, const std::vector<std::string>& ids);
// imagesSet/item elements, namespace-agnostically; an empty set is an empty vector. Errors as
// parse_register_response (kRemote carries the EC2 code first: "… InvalidAMIID.NotFound: …").
Result<std::vector<ImageInfo>> parse_describe_response(int status, std::string_view body);

// True for the error codes that mean "no such image" (AWS answers those for unknown ids where
// Eucalyptus answers an empty set).
bool is_image_not_found(const Error& e);

// POSTs and parses. Unknown ids are absent from the result (never an error): AWS refuses the
// whole request for one unknown id, so on such an answer each id is asked for alone.
Result<std::vector<ImageInfo>> describe_images(Http& http, const Ec2Endpoint& ep,
                                               const std::vector<std::string>& ids);

// DeregisterImage (ImageId). A 2xx must say <return>true</return>; an unknown id counts as done
// (it is gone either way). Errors as parse_register_response, kNetwork for transport failures.
Params deregister_params(const Ec2Endpoint& ep, const std::string& id);
Result<void> parse_deregister_response(int status, std::string_view body);
Result<void> deregister_image(Http& http, const Ec2Endpoint& ep, const std::string& id);

// An image a launch can use: registered and not failed or deregistered.
inline bool is_usable_state(std::string_view state) {
  return state == "available" || state == "pending";
}

}  // namespace installer
