// Manifest serialisation and parsing (EUSTORE.md §3.4). Tricky: the signature covers the exact
// text of two elements, so serialisation must be deterministic and single-line; parsing cuts the
// signed text out of the original document rather than re-serialising what was read.
#include "installer/manifest.h"

#include <charconv>
#include <cstring>
#include <pugixml.hpp>

namespace installer {
namespace {

std::string esc(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

std::string el(std::string_view tag, std::string_view value) {
  std::string out = "<" + std::string(tag) + ">";
  out += esc(value);
  out += "</" + std::string(tag) + ">";
  return out;
}

bool is_hex(std::string_view s) {
  return !s.empty() && s.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos;
}

// Children by local name (namespace prefixes ignored).
const char* local(const char* name) {
  const char* colon = std::strrchr(name, ':');
  return colon ? colon + 1 : name;
}
pugi::xml_node child(pugi::xml_node n, const char* name) {
  for (pugi::xml_node c = n.first_child(); c; c = c.next_sibling()) {
    if (c.type() == pugi::node_element && std::strcmp(local(c.name()), name) == 0) {
      return c;
    }
  }
  return {};
}
std::string text(pugi::xml_node n, const char* name) { return child(n, name).text().get(); }

bool parse_u64(std::string_view s, std::uint64_t& out) {
  auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  return !s.empty() && r.ec == std::errc() && r.ptr == s.data() + s.size();
}

// The substring from "<tag>" (or "<tag " with attributes) to the matching "</tag>".
std::string cut(std::string_view xml, std::string_view tag) {
  std::string open = "<" + std::string(tag);
  std::string close = "</" + std::string(tag) + ">";
  std::size_t pos = 0;
  while ((pos = xml.find(open, pos)) != std::string_view::npos) {
    char next = pos + open.size() < xml.size() ? xml[pos + open.size()] : '\0';
    if (next == '>' || next == ' ') {
      break;
    }
    pos += open.size();
  }
  if (pos == std::string_view::npos) {
    return {};
  }
  std::size_t end = xml.find(close, pos);
  if (end == std::string_view::npos) {
    return {};
  }
  return std::string(xml.substr(pos, end + close.size() - pos));
}

}  // namespace

const char* image_type_name(ImageType t) {
  switch (t) {
    case ImageType::kKernel:
      return "kernel";
    case ImageType::kRamdisk:
      return "ramdisk";
    case ImageType::kMachine:
      break;
  }
  return "machine";
}

std::string machine_configuration_xml(const Manifest& m) {
  std::string out = "<machine_configuration>";
  out += el("architecture", m.architecture);
  if (!m.kernel_id.empty()) {
    out += el("kernel_id", m.kernel_id);
  }
  if (!m.ramdisk_id.empty()) {
    out += el("ramdisk_id", m.ramdisk_id);
  }
  out += "</machine_configuration>";
  return out;
}

std::string image_xml(const Manifest& m) {
  std::string out = "<image>";
  out += el("name", m.name);
  out += el("user", m.user);
  out += el("type", image_type_name(m.type));
  out += "<digest algorithm=\"SHA1\">" + m.digest_sha1 + "</digest>";
  out += el("size", std::to_string(m.size));
  out += el("bundled_size", std::to_string(m.bundled_size));
  out += "<ec2_encrypted_key algorithm=\"AES-128-CBC\">" + m.ec2_encrypted_key +
         "</ec2_encrypted_key>";
  out += "<user_encrypted_key algorithm=\"AES-128-CBC\">" + m.user_encrypted_key +
         "</user_encrypted_key>";
  out += el("ec2_encrypted_iv", m.ec2_encrypted_iv);
  out += el("user_encrypted_iv", m.user_encrypted_iv);
  out += "<parts count=\"" + std::to_string(m.parts.size()) + "\">";
  for (std::size_t i = 0; i < m.parts.size(); ++i) {
    out += "<part index=\"" + std::to_string(i) + "\">";
    out += el("filename", m.parts[i].filename);
    out += "<digest algorithm=\"SHA1\">" + m.parts[i].sha1 + "</digest>";
    out += "</part>";
  }
  out += "</parts></image>";
  return out;
}

std::string signed_text(const Manifest& m) { return machine_configuration_xml(m) + image_xml(m); }

std::string serialize(const Manifest& m) {
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><manifest>";
  out += el("version", "2007-10-10");
  out += "<bundler>" + el("name", m.bundler_name) + el("version", m.bundler_version) +
         el("release", m.bundler_release) + "</bundler>";
  out += machine_configuration_xml(m);
  out += image_xml(m);
  out += el("signature", m.signature);
  out += "</manifest>";
  return out;
}

Result<ParsedManifest> parse_manifest(std::string_view xml) {
  pugi::xml_document doc;
  pugi::xml_parse_result pr = doc.load_buffer(xml.data(), xml.size());
  if (!pr) {
    return fail(Errc::kFormat, std::string("manifest is not XML: ") + pr.description());
  }
  pugi::xml_node root = doc.document_element();
  if (std::strcmp(local(root.name()), "manifest") != 0) {
    return fail(Errc::kFormat, "manifest: root element is not <manifest>");
  }
  ParsedManifest out;
  Manifest& m = out.manifest;
  pugi::xml_node mc = child(root, "machine_configuration");
  pugi::xml_node img = child(root, "image");
  if (!img) {
    return fail(Errc::kFormat, "manifest: no <image> element");
  }
  m.architecture = text(mc, "architecture");
  m.kernel_id = text(mc, "kernel_id");
  m.ramdisk_id = text(mc, "ramdisk_id");
  pugi::xml_node bundler = child(root, "bundler");
  m.bundler_name = text(bundler, "name");
  m.bundler_version = text(bundler, "version");
  m.bundler_release = text(bundler, "release");
  m.name = text(img, "name");
  m.user = text(img, "user");
  std::string type = text(img, "type");
  m.type = type == "kernel"    ? ImageType::kKernel
           : type == "ramdisk" ? ImageType::kRamdisk
                               : ImageType::kMachine;
  m.digest_sha1 = text(img, "digest");
  if (!is_hex(m.digest_sha1) || m.digest_sha1.size() != 40) {
    return fail(Errc::kFormat, "manifest: <image><digest> is not a SHA-1 hex digest");
  }
  if (!parse_u64(text(img, "size"), m.size) ||
      !parse_u64(text(img, "bundled_size"), m.bundled_size)) {
    return fail(Errc::kFormat, "manifest: <size> or <bundled_size> is not a number");
  }
  m.ec2_encrypted_key = text(img, "ec2_encrypted_key");
  m.user_encrypted_key = text(img, "user_encrypted_key");
  m.ec2_encrypted_iv = text(img, "ec2_encrypted_iv");
  m.user_encrypted_iv = text(img, "user_encrypted_iv");
  pugi::xml_node parts = child(img, "parts");
  if (!parts) {
    return fail(Errc::kFormat, "manifest: no <parts> element");
  }
  std::vector<std::pair<std::uint64_t, ManifestPart>> found;
  for (pugi::xml_node p = parts.first_child(); p; p = p.next_sibling()) {
    if (p.type() != pugi::node_element || std::strcmp(local(p.name()), "part") != 0) {
      continue;
    }
    std::uint64_t index = 0;
    if (!parse_u64(p.attribute("index").value(), index)) {
      return fail(Errc::kFormat, "manifest: <part> without a numeric index");
    }
    ManifestPart part{text(p, "filename"), text(p, "digest")};
    if (part.filename.empty() || part.filename.find('/') != std::string::npos ||
        part.filename == "." || part.filename == "..") {
      return fail(Errc::kUnsafe, "manifest: part " + std::to_string(index) +
                                     " has an empty or non-basename filename");
    }
    if (!is_hex(part.sha1) || part.sha1.size() != 40) {
      return fail(Errc::kFormat, "manifest: part " + part.filename + " has no SHA-1 digest");
    }
    found.emplace_back(index, std::move(part));
  }
  std::uint64_t count = 0;
  if (!parse_u64(parts.attribute("count").value(), count) || count != found.size()) {
    return fail(Errc::kFormat, "manifest: <parts count> does not match the <part> elements");
  }
  m.parts.resize(found.size());
  std::vector<bool> seen(found.size());
  for (auto& [index, part] : found) {
    if (index >= found.size() || seen[index]) {
      return fail(Errc::kFormat, "manifest: part indices are not 0.." + std::to_string(count - 1));
    }
    seen[index] = true;
    m.parts[index] = std::move(part);
  }
  m.signature = text(root, "signature");
  out.signed_text = cut(xml, "machine_configuration") + cut(xml, "image");
  return out;
}

}  // namespace installer
