// Tests of installer/migrate.cc's pure parts, table-driven: the manifest location, the registry
// key, the checks of a source manifest before any download, and the kernel/ramdisk choice.
#include "installer/migrate.h"

#include <gtest/gtest.h>

namespace installer {
namespace {

TEST(MigrateLocation, AcceptsBucketPrefixAndFolders) {
  struct Case {
    const char* in;
    const char* bucket;
    const char* key;
    const char* key_dir;
    const char* prefix;
    const char* name;
  };
  const Case cases[] = {
      {"b/img.manifest.xml", "b", "img.manifest.xml", "", "img", "img"},
      {"/b/img.manifest.xml", "b", "img.manifest.xml", "", "img", "img"},
      {"my-bucket_1.x/dir/sub/ubuntu-12.04.img.manifest.xml", "my-bucket_1.x",
       "dir/sub/ubuntu-12.04.img.manifest.xml", "dir/sub/", "dir/sub/ubuntu-12.04.img",
       "ubuntu-12.04.img"},
      {"b/.manifest.xml.manifest.xml", "b", ".manifest.xml.manifest.xml", "", ".manifest.xml",
       ".manifest.xml"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.in);
    auto loc = parse_manifest_location(c.in);
    ASSERT_TRUE(loc) << loc.error().message;
    EXPECT_EQ(loc->bucket, c.bucket);
    EXPECT_EQ(loc->key, c.key);
    EXPECT_EQ(loc->key_dir, c.key_dir);
    EXPECT_EQ(loc->prefix, c.prefix);
    EXPECT_EQ(loc->name, c.name);
  }
}

TEST(MigrateLocation, RefusesWhatIsNotBucketSlashPrefixManifest) {
  const char* bad[] = {
      "",                             // nothing
      "img.manifest.xml",             // no bucket
      "/img.manifest.xml",            // no bucket after the leading '/'
      "b/",                           // no key
      "b/.manifest.xml",              // empty prefix
      "b/img.manifest",               // wrong suffix
      "b/img.MANIFEST.XML",           // suffix is case-sensitive (it is an object key)
      "b/img.part.00",                // a part, not a manifest
      "b//img.manifest.xml",          // empty segment
      "b/dir//img.manifest.xml",      // empty segment
      "b/../img.manifest.xml",        // traversal
      "b/./img.manifest.xml",         // '.'
      "b/dir/..manifest.xml",         // the name would be "."
      "b/img x.manifest.xml",         // space
      "b/img%2F.manifest.xml",        // an escape
      "b/img\n.manifest.xml",         // control character
      "b c/img.manifest.xml",         // space in the bucket
      "b:1/img.manifest.xml",         // ':' in the bucket
      "b/dir/\xc3\xa9.manifest.xml",  // non-ASCII
  };
  for (const char* in : bad) {
    SCOPED_TRACE(in);
    auto loc = parse_manifest_location(in);
    ASSERT_FALSE(loc);
    EXPECT_EQ(loc.error().code, Errc::kUsage);
    EXPECT_NE(loc.error().message.find("--manifest"), std::string::npos);
  }
}

TEST(MigrateRecordKey, NamesEndpointBucketPrefixAndGuid) {
  auto loc = parse_manifest_location("src/dir/img.manifest.xml");
  ASSERT_TRUE(loc);
  EXPECT_EQ(migrate_record_key("http://walrus:8773/services/Walrus", *loc, "site-1"),
            "migrate:http://walrus:8773/services/Walrus/src/dir/img@site-1");
  EXPECT_EQ(migrate_record_key("http://s3.example.com//", *loc, "123@http://clc/"),
            "migrate:http://s3.example.com/src/dir/img@123@http://clc/");
  auto other = parse_manifest_location("src/img.manifest.xml");
  ASSERT_TRUE(other);
  EXPECT_NE(migrate_record_key("http://a", *loc, "g"), migrate_record_key("http://a", *other, "g"));
  EXPECT_NE(migrate_record_key("http://a", *loc, "g"), migrate_record_key("http://b", *loc, "g"));
}

Manifest machine(std::size_t parts, std::uint64_t bundled) {
  Manifest m;
  m.architecture = "x86_64";
  m.bundled_size = bundled;
  for (std::size_t i = 0; i < parts; ++i) {
    m.parts.push_back({"img.part." + std::to_string(i), std::string(40, 'a')});
  }
  return m;
}

TEST(MigrateSourceManifest, Limits) {
  struct Case {
    const char* what;
    Manifest m;
    bool ok;
    Errc code;
  };
  Manifest kernel = machine(1, 10);
  kernel.kernel_id = "true";
  Manifest ramdisk = machine(1, 10);
  ramdisk.ramdisk_id = "yes";
  Manifest typed = machine(1, 10);
  typed.type = ImageType::kKernel;
  Manifest twice = machine(2, 10);
  twice.parts[1].filename = twice.parts[0].filename;
  Manifest with_ids = machine(3, 25ull << 20);
  with_ids.kernel_id = "eki-12345678";
  with_ids.ramdisk_id = "eri-12345678";
  const Case cases[] = {
      {"one part", machine(1, 100), true, {}},
      {"an empty trailing part (euca2ools)", machine(2, 10ull << 20), true, {}},
      {"machine with eki/eri", with_ids, true, {}},
      {"the most parts", machine(kMaxSourceParts, 1), true, {}},
      {"parts at the size cap", machine(2, 2 * kMaxSourcePartBytes), true, {}},
      {"no parts", machine(0, 0), false, Errc::kFormat},
      {"too many parts", machine(kMaxSourceParts + 1, 1), false, Errc::kFormat},
      {"parts over the size cap", machine(2, 2 * kMaxSourcePartBytes + 1), false, Errc::kFormat},
      {"a huge bundled_size", machine(1, ~0ull), false, Errc::kFormat},
      {"a part listed twice", twice, false, Errc::kFormat},
      {"kernel bundle", kernel, false, Errc::kUsage},
      {"ramdisk bundle", ramdisk, false, Errc::kUsage},
      {"<type>kernel", typed, false, Errc::kUsage},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto r = check_source_manifest(c.m);
    EXPECT_EQ(static_cast<bool>(r), c.ok) << (r ? "" : r.error().message);
    if (!r && !c.ok) {
      EXPECT_EQ(r.error().code, c.code);
    }
  }
}

TEST(MigrateBootImage, ChoiceTable) {
  const ImageInfo avail_k{"eki-11111111", "b/k.manifest.xml", "available", "k", "kernel"};
  const ImageInfo pending_k{"eki-11111111", "b/k.manifest.xml", "pending", "k", "kernel"};
  const ImageInfo gone_k{"eki-11111111", "b/k.manifest.xml", "deregistered", "k", "kernel"};
  const ImageInfo failed_k{"eki-11111111", "b/k.manifest.xml", "failed", "k", "kernel"};
  const ImageInfo machine_k{"eki-11111111", "b/m.manifest.xml", "available", "m", "machine"};
  const ImageInfo untyped_k{"eki-11111111", "b/k.manifest.xml", "available", "k", ""};
  const ImageInfo avail_r{"eri-22222222", "b/r.manifest.xml", "available", "r", "ramdisk"};
  struct Case {
    const char* what;
    ImageType kind;
    const char* given;
    const char* from_manifest;
    const ImageInfo* here;
    const char* id;
    const char* note_has;  // "" = no note
  };
  const Case cases[] = {
      {"given wins", ImageType::kKernel, "eki-99999999", "eki-11111111", &avail_k, "eki-99999999",
       "--kernel"},
      {"given, nothing in the manifest", ImageType::kRamdisk, "eri-99999999", "", nullptr,
       "eri-99999999", "--ramdisk"},
      {"neither", ImageType::kKernel, "", "", nullptr, "", ""},
      {"manifest's, available", ImageType::kKernel, "", "eki-11111111", &avail_k, "eki-11111111",
       "from the source manifest"},
      {"manifest's, pending", ImageType::kKernel, "", "eki-11111111", &pending_k, "eki-11111111",
       "from the source manifest"},
      {"manifest's, no type said", ImageType::kKernel, "", "eki-11111111", &untyped_k,
       "eki-11111111", "from the source manifest"},
      {"manifest's ramdisk, available", ImageType::kRamdisk, "", "eri-22222222", &avail_r,
       "eri-22222222", "ramdisk eri-22222222"},
      {"manifest's, unknown here", ImageType::kKernel, "", "eki-11111111", nullptr, "",
       "does not exist here: registering without a kernel"},
      {"manifest's, deregistered", ImageType::kKernel, "", "eki-11111111", &gone_k, "",
       "is deregistered here: registering without a kernel"},
      {"manifest's, failed", ImageType::kKernel, "", "eki-11111111", &failed_k, "",
       "is failed here"},
      {"manifest's, not a kernel here", ImageType::kKernel, "", "eki-11111111", &machine_k, "",
       "is a machine image here"},
      {"manifest's, a ramdisk id for the kernel", ImageType::kKernel, "", "eri-22222222", &avail_r,
       "", "is a ramdisk image here"},
      {"manifest's, not an id", ImageType::kKernel, "", "aki-zz", nullptr, "",
       "is not an image id: registering without a kernel (give --kernel)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    BootImageChoice got = choose_boot_image(c.kind, c.given, c.from_manifest, c.here);
    EXPECT_EQ(got.id, c.id);
    if (*c.note_has == '\0') {
      EXPECT_EQ(got.note, "");
    } else {
      EXPECT_NE(got.note.find(c.note_has), std::string::npos) << got.note;
    }
  }
}

TEST(MigrateBootImage, HostileIdIsQuotedPrintably) {
  BootImageChoice got =
      choose_boot_image(ImageType::kKernel, "", "\x1b[31mred" + std::string(500, 'x'), nullptr);
  EXPECT_EQ(got.id, "");
  EXPECT_EQ(got.note.find('\x1b'), std::string::npos);
  EXPECT_LT(got.note.size(), 250u);
}

}  // namespace
}  // namespace installer
