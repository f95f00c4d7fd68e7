// EC2 Query API requests. Tricky: the Host we sign must be byte-identical to the one sent, so it
// is set explicitly (curl would drop a default port the URL spelled out); SigV2's string to sign
// uses the same lowercase host[:port].
#include "installer/ec2.h"

#include <cctype>
#include <cstring>
#include <pugixml.hpp>
#include <regex>

#include "s3/sign.h"

namespace installer {
namespace {

std::string iso8601(std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

const char* local(const char* name) {
  const char* colon = std::strrchr(name, ':');
  return colon ? colon + 1 : name;
}

// First element anywhere below `n` with local name `name`.
pugi::xml_node find_local(pugi::xml_node n, const char* name) {
  for (pugi::xml_node c = n.first_child(); c; c = c.next_sibling()) {
    if (c.type() != pugi::node_element) {
      continue;
    }
    if (std::strcmp(local(c.name()), name) == 0) {
      return c;
    }
    if (pugi::xml_node d = find_local(c, name)) {
      return d;
    }
  }
  return {};
}

std::string trimmed(std::string s) {
  s.erase(0, s.find_first_not_of(" \t\r\n"));
  s.erase(s.find_last_not_of(" \t\r\n") + 1);
  return s;
}

}  // namespace

Params register_params(const Ec2Endpoint& ep, const RegisterParams& p) {
  Params out = {{"Action", "RegisterImage"},
                {"Version", ep.api_version},
                {"ImageLocation", p.image_location},
                {"Name", p.name}};
  if (!p.description.empty()) {
    out.emplace_back("Description", p.description);
  }
  if (!p.architecture.empty()) {
    out.emplace_back("Architecture", p.architecture);
  }
  if (!p.kernel_id.empty()) {
    out.emplace_back("KernelId", p.kernel_id);
  }
  if (!p.ramdisk_id.empty()) {
    out.emplace_back("RamdiskId", p.ramdisk_id);
  }
  return out;
}

SignedPost sign_post(const Ec2Endpoint& ep, Params params, std::time_t now) {
  const s3::UrlParts u = s3::split_url(ep.url);
  const std::string path = u.path.empty() ? "/" : u.path;
  const s3::Credentials creds{ep.access_key, ep.secret_key};
  SignedPost out;
  out.url = u.origin() + path;
  const std::string content_type = "application/x-www-form-urlencoded; charset=utf-8";
  out.headers = {{"Host", u.authority}, {"Content-Type", content_type}};
  if (ep.signature == Ec2Signature::kV2) {
    params.emplace_back("AWSAccessKeyId", ep.access_key);
    params.emplace_back("SignatureVersion", "2");
    params.emplace_back("SignatureMethod", "HmacSHA256");
    params.emplace_back("Timestamp", iso8601(now));
    std::string sig = s3::query_v2_signature(creds, "POST", u.authority, path, params);
    params.emplace_back("Signature", sig);
    out.body = s3::canonical_query(params);
    return out;
  }
  out.body = s3::canonical_query(params);
  s3::V4Input in;
  in.method = "POST";
  in.canonical_uri = path;
  in.amz_date = s3::amz_date(now);
  in.headers = {{"host", u.authority}, {"content-type", content_type}, {"x-amz-date", in.amz_date}};
  in.payload_hash = s3::sha256_hex(out.body);
  in.region = ep.region;
  in.service = "ec2";
  out.headers.emplace_back("X-Amz-Date", in.amz_date);
  out.headers.emplace_back("Authorization", s3::v4_sign(creds, in).authorization);
  return out;
}

bool is_image_id(std::string_view id) {
  static const std::regex kId("^[ae][mkr]i-[0-9A-Fa-f]{8}([0-9A-Fa-f]{9})?$");
  return std::regex_match(id.begin(), id.end(), kId);
}

namespace {

// The error of a non-2xx EC2 answer: "<Action>: HTTP <status> <Code>: <Message>", or the status
// and the start of the body when it carries no EC2 error XML.
Error ec2_error(std::string_view action, int status, std::string_view body,
                const pugi::xml_document& doc, bool xml) {
  std::string code = xml ? trimmed(find_local(doc, "Code").text().get()) : "";
  std::string message = xml ? trimmed(find_local(doc, "Message").text().get()) : "";
  std::string head = std::string(action) + ": HTTP " + std::to_string(status);
  if (code.empty()) {
    std::string start(body.substr(0, 200));
    for (char& c : start) {
      if (c == '\n' || c == '\r') c = ' ';
    }
    return Error{Errc::kRemote, head + (start.empty() ? "" : ": " + start)};
  }
  return Error{Errc::kRemote, head + " " + code + (message.empty() ? "" : ": " + message)};
}

std::string lower(std::string s) {
  for (char& c : s) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return s;
}

// Loads an EC2 answer into `doc`: the EC2 error of a non-2xx, or kFormat for a 2xx that is not
// XML. What both parsers below start with.
Result<void> load_answer(std::string_view action, int status, std::string_view body,
                         pugi::xml_document& doc) {
  const bool xml = doc.load_buffer(body.data(), body.size());
  if (status < 200 || status >= 300) {
    return conf::unexpected(ec2_error(action, status, body, doc, xml));
  }
  if (!xml) {
    return fail(Errc::kFormat, std::string(action) + ": HTTP " + std::to_string(status) +
                                   " with a body that is not XML");
  }
  return {};
}

// Signs `params`, POSTs them to the endpoint and hands the answer to `parse`.
template <class Parse>
auto post_action(Http& http, const Ec2Endpoint& ep, Params params, Parse parse)
    -> decltype(parse(0, std::string_view())) {
  SignedPost post = sign_post(ep, std::move(params), std::time(nullptr));
  auto r = http.request("POST", post.url, post.headers, post.body);
  if (!r) {
    return conf::unexpected(r.error());
  }
  return parse(r->status, r->body);
}

}  // namespace

Result<std::string> parse_register_response(int status, std::string_view body) {
  pugi::xml_document doc;
  if (auto loaded = load_answer("RegisterImage", status, body, doc); !loaded) {
    return conf::unexpected(loaded.error());
  }
  std::string id = trimmed(find_local(doc, "imageId").text().get());
  if (!is_image_id(id)) {
    return fail(Errc::kFormat, "RegisterImage: no usable <imageId> in the answer (got '" +
                                   id.substr(0, 40) + "')");
  }
  return id;
}

Params describe_params(const Ec2Endpoint& ep, const std::vector<std::string>& ids) {
  Params out = {{"Action", "DescribeImages"}, {"Version", ep.api_version}};
  if (ids.empty()) {
    out.emplace_back("Owner.1", "self");
  }
  for (std::size_t i = 0; i < ids.size(); ++i) {
    out.emplace_back("ImageId." + std::to_string(i + 1), ids[i]);
  }
  return out;
}

Result<std::vector<ImageInfo>> parse_describe_response(int status, std::string_view body) {
  pugi::xml_document doc;
  if (auto loaded = load_answer("DescribeImages", status, body, doc); !loaded) {
    return conf::unexpected(loaded.error());
  }
  pugi::xml_node set = find_local(doc, "imagesSet");
  if (!set) {
    return fail(Errc::kFormat, "DescribeImages: no <imagesSet> in the answer");
  }
  std::vector<ImageInfo> out;
  for (pugi::xml_node item = set.first_child(); item; item = item.next_sibling()) {
    if (item.type() != pugi::node_element || std::strcmp(local(item.name()), "item") != 0) {
      continue;
    }
    // Direct children only: an item's blockDeviceMapping has items of its own.
    auto child = [&](const char* name) {
      for (pugi::xml_node c = item.first_child(); c; c = c.next_sibling()) {
        if (c.type() == pugi::node_element && std::strcmp(local(c.name()), name) == 0) {
          return trimmed(c.text().get());
        }
      }
      return std::string();
    };
    ImageInfo info{child("imageId"), child("imageLocation"), lower(child("imageState")),
                   child("name"), lower(child("imageType"))};
    if (is_image_id(info.id)) {
      out.push_back(std::move(info));
    }
  }
  return out;
}

bool is_image_not_found(const Error& e) {
  return e.code == Errc::kRemote && (e.message.find(" InvalidAMIID.") != std::string::npos ||
                                     e.message.find(" InvalidAKIID.") != std::string::npos ||
                                     e.message.find(" InvalidARIID.") != std::string::npos);
}

Result<std::vector<ImageInfo>> describe_images(Http& http, const Ec2Endpoint& ep,
                                               const std::vector<std::string>& ids) {
  auto ask = [&](const std::vector<std::string>& which) {
    return post_action(http, ep, describe_params(ep, which), parse_describe_response);
  };
  auto all = ask(ids);
  if (all || ids.empty() || !is_image_not_found(all.error())) {
    return all;
  }
  if (ids.size() == 1) {
    return std::vector<ImageInfo>{};  // the one id asked for does not exist
  }
  std::vector<ImageInfo> out;  // some id unknown: ask for each alone, keep what exists
  for (const auto& id : ids) {
    auto one = ask({id});
    if (!one && !is_image_not_found(one.error())) {
      return one;
    }
    if (one) {
      out.insert(out.end(), one->begin(), one->end());
    }
  }
  return out;
}

Result<std::string> register_image(Http& http, const Ec2Endpoint& ep, const RegisterParams& p) {
  return post_action(http, ep, register_params(ep, p), parse_register_response);
}

Params deregister_params(const Ec2Endpoint& ep, const std::string& id) {
  return {{"Action", "DeregisterImage"}, {"Version", ep.api_version}, {"ImageId", id}};
}

Result<void> parse_deregister_response(int status, std::string_view body) {
  pugi::xml_document doc;
  if (auto loaded = load_answer("DeregisterImage", status, body, doc); !loaded) {
    return conf::unexpected(loaded.error());
  }
  const std::string ret = lower(trimmed(find_local(doc, "return").text().get()));
  if (ret != "true") {
    return fail(Errc::kRemote,
                "DeregisterImage: the cloud answered <return>" + ret.substr(0, 20) + "</return>");
  }
  return {};
}

Result<void> deregister_image(Http& http, const Ec2Endpoint& ep, const std::string& id) {
  auto r = post_action(http, ep, deregister_params(ep, id), parse_deregister_response);
  if (!r && is_image_not_found(r.error())) {
    return {};  // already gone
  }
  return r;
}

}  // namespace installer
