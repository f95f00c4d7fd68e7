// The eustore catalog (EUSTORE.md §1.5–1.7): parsing that never throws and reports missing or
// mistyped keys as warnings, describe-images output in eustore 2.1's fixed columns (table), 3.0's
// tab-separated form (tsv) or JSON, and URL resolution of an image's `url` against the base.
// Pure functions: no I/O.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "installer/error.h"

namespace installer {

struct CatalogImage {
  std::string name;  // the eustore checksum name (§1.7) and install handle
  std::string description;
  std::string version;
  std::string architecture;
  std::string os;
  std::string url;
  std::string date;
  std::string recipe;
  std::string stamp;
  std::string contact;
  std::string single_kernel;  // kept as the catalog's string ("True"/"False")
  std::vector<std::string> hypervisors;
  std::vector<std::string> missing;  // standard keys absent (or unusable) in this entry
};

struct Catalog {
  std::string version;  // top-level "version", may be empty
  std::vector<CatalogImage> images;
  // One line per problem, e.g. `image #2 "0222977072": missing key "os"`.
  std::vector<std::string> warnings;
};

// Errors (kFormat): not JSON, top level not an object, "images" missing or not an array. Entries
// that are not objects are skipped with a warning; missing keys become "" / [] with a warning.
Result<Catalog> parse_catalog(std::string_view json);

// §8.3: "true" in any case means single kernel; anything else (including absent) does not.
bool is_single_kernel(const CatalogImage& image);

// The first image whose name equals `name` exactly (3.0 semantics), or nullptr.
const CatalogImage* find_image(const Catalog& c, std::string_view name);

enum class OutputFormat { kTable, kTsv, kJson };

// describe-images output, one line per image (two per image in verbose table mode), each ending
// in '\n'. table: 2.1 columns name(11) os(12) architecture(8) version(15) hypervisors(18, ", ")
// then description, cutting longer values to width-2 characters + ".."; verbose adds "     "
// date(20) stamp(12) recipe(23) contact. tsv: 3.0's tab-separated fields (hypervisors joined with
// ","); verbose appends date, stamp, recipe, contact. json: an array of objects with every
// standard key in a fixed order (verbose or not), pretty-printed with two spaces.
std::string format_images(const Catalog& c, OutputFormat f, bool verbose);

// Widths count Unicode code points of UTF-8 text, so a cut never splits a character.
std::string fit_column(std::string_view value, std::size_t width);

// Base URL with exactly one trailing '/'.
std::string normalize_base(std::string_view base);
// RFC 3986 reference resolution of an image `url` against the base (3.0 behaviour): absolute
// URLs win, "/x" resolves against the host root, anything else under the base path.
std::string resolve_url(std::string_view base, std::string_view ref);

// The eustore checksum name of a tarball from its MD5 hex is in crypto.h
// (eustore_name_from_md5).

}  // namespace installer
