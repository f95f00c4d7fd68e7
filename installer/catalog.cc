// Catalog parsing and describe-images formatting. Tricky: eustore 2.1 crashed on any missing key;
// here every lookup tolerates absence and wrong types, and says so in Catalog::warnings.
#include "installer/catalog.h"

#include <nlohmann/json.hpp>

namespace installer {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// Standard keys in the order they appear in JSON output.
constexpr const char* kKeys[] = {"name",  "description", "version",       "architecture",
                                 "os",    "url",         "date",          "recipe",
                                 "stamp", "contact",     "single-kernel", "hypervisors-supported"};

std::string* field(CatalogImage& img, std::string_view key) {
  if (key == "name") return &img.name;
  if (key == "description") return &img.description;
  if (key == "version") return &img.version;
  if (key == "architecture") return &img.architecture;
  if (key == "os") return &img.os;
  if (key == "url") return &img.url;
  if (key == "date") return &img.date;
  if (key == "recipe") return &img.recipe;
  if (key == "stamp") return &img.stamp;
  if (key == "contact") return &img.contact;
  if (key == "single-kernel") return &img.single_kernel;
  return nullptr;
}

// A scalar as text: strings as is, numbers as written, booleans as Python would print them.
bool scalar_text(const json& v, std::string& out) {
  if (v.is_string()) {
    out = v.get<std::string>();
    return true;
  }
  if (v.is_boolean()) {
    out = v.get<bool>() ? "True" : "False";
    return true;
  }
  if (v.is_number()) {
    out = v.dump();
    return true;
  }
  return false;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) out += sep;
    out += v[i];
  }
  return out;
}

// Byte length of the first `n` code points of UTF-8 `s` (or s.size()).
std::size_t utf8_prefix(std::string_view s, std::size_t n, std::size_t* count) {
  std::size_t i = 0, cps = 0;
  while (i < s.size() && cps < n) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80         ? 1
                      : (c >> 5) == 6  ? 2
                      : (c >> 4) == 14 ? 3
                      : (c >> 3) == 30 ? 4
                                       : 1;
    i = std::min(s.size(), i + len);
    ++cps;
  }
  if (count) *count = cps;
  return i;
}

std::size_t utf8_length(std::string_view s) {
  std::size_t count = 0;
  utf8_prefix(s, s.size(), &count);
  return count;
}

}  // namespace

Result<Catalog> parse_catalog(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    return fail(Errc::kFormat, "the catalog is not valid JSON");
  }
  if (!doc.is_object()) {
    return fail(Errc::kFormat, "the catalog is not a JSON object");
  }
  Catalog c;
  if (auto it = doc.find("version"); it != doc.end()) {
    scalar_text(*it, c.version);
  }
  auto images = doc.find("images");
  if (images == doc.end() || !images->is_array()) {
    return fail(Errc::kFormat, "the catalog has no \"images\" array");
  }
  std::size_t index = 0;
  for (const json& entry : *images) {
    ++index;
    std::string where = "image #" + std::to_string(index);
    if (!entry.is_object()) {
      c.warnings.push_back(where + ": not a JSON object, skipped");
      continue;
    }
    CatalogImage img;
    if (auto n = entry.find("name"); n != entry.end()) {
      scalar_text(*n, img.name);
    }
    if (!img.name.empty()) {
      where += " \"" + img.name + "\"";
    }
    for (const char* key : kKeys) {
      auto it = entry.find(key);
      if (it == entry.end() || it->is_null()) {
        img.missing.emplace_back(key);
        c.warnings.push_back(where + ": missing key \"" + key + "\"");
        continue;
      }
      if (std::string_view(key) == "hypervisors-supported") {
        if (it->is_array()) {
          for (const json& h : *it) {
            std::string s;
            if (scalar_text(h, s)) {
              img.hypervisors.push_back(s);
            }
          }
        } else if (std::string s; scalar_text(*it, s)) {
          img.hypervisors.push_back(s);  // a lone string: accept it as a one-element list
        } else {
          img.missing.emplace_back(key);
          c.warnings.push_back(where + ": key \"" + key + "\" is not a list");
        }
        continue;
      }
      if (!scalar_text(*it, *field(img, key))) {
        img.missing.emplace_back(key);
        c.warnings.push_back(where + ": key \"" + key + "\" is not a string");
      }
    }
    c.images.push_back(std::move(img));
  }
  return c;
}

bool is_single_kernel(const CatalogImage& image) {
  std::string v = image.single_kernel;
  for (char& ch : v) {
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  }
  return v == "true";
}

const CatalogImage* find_image(const Catalog& c, std::string_view name) {
  for (const auto& img : c.images) {
    if (img.name == name) {
      return &img;
    }
  }
  return nullptr;
}

std::string fit_column(std::string_view value, std::size_t width) {
  std::size_t len = utf8_length(value);
  if (len > width) {
    std::size_t cut = utf8_prefix(value, width >= 2 ? width - 2 : 0, nullptr);
    return std::string(value.substr(0, cut)) + "..";
  }
  return std::string(value) + std::string(width - len, ' ');
}

std::string format_images(const Catalog& c, OutputFormat f, bool verbose) {
  std::string out;
  if (f == OutputFormat::kJson) {
    ordered_json arr = ordered_json::array();
    for (const auto& img : c.images) {
      ordered_json o = ordered_json::object();
      CatalogImage copy = img;
      for (const char* key : kKeys) {
        if (std::string_view(key) == "hypervisors-supported") {
          o[key] = img.hypervisors;
        } else {
          o[key] = *field(copy, key);
        }
      }
      arr.push_back(std::move(o));
    }
    // Invalid UTF-8 in the catalog is replaced rather than aborting the output.
    return arr.dump(2, ' ', false, ordered_json::error_handler_t::replace) + "\n";
  }
  for (const auto& img : c.images) {
    if (f == OutputFormat::kTable) {
      out += fit_column(img.name, 11) + fit_column(img.os, 12) + fit_column(img.architecture, 8) +
             fit_column(img.version, 15) + fit_column(join(img.hypervisors, ", "), 18) +
             img.description + "\n";
      if (verbose) {
        out += "     " + fit_column(img.date, 20) + fit_column(img.stamp, 12) +
               fit_column(img.recipe, 23) + img.contact + "\n";
      }
    } else {
      out += img.name + "\t" + img.os + "\t" + img.architecture + "\t" + img.version + "\t" +
             join(img.hypervisors, ",") + "\t" + img.description;
      if (verbose) {
        out += "\t" + img.date + "\t" + img.stamp + "\t" + img.recipe + "\t" + img.contact;
      }
      out += "\n";
    }
  }
  return out;
}

std::string normalize_base(std::string_view base) {
  std::string b(base);
  while (!b.empty() && b.back() == '/') {
    b.pop_back();
  }
  return b + "/";
}

std::string resolve_url(std::string_view base, std::string_view ref) {
  if (ref.find("://") != std::string_view::npos) {
    return std::string(ref);
  }
  std::string b = normalize_base(base);
  if (!ref.empty() && ref.front() == '/') {
    if (ref.size() > 1 && ref[1] == '/') {  // network-path reference: keep the scheme
      return b.substr(0, b.find("://") + 1) + std::string(ref);
    }
    auto scheme_end = b.find("://");
    auto host_end = b.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
    return b.substr(0, host_end) + std::string(ref);
  }
  return b + std::string(ref);
}

}  // namespace installer
