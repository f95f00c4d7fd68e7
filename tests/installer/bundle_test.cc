// Tests of installer/bundle.cc: bundle → unbundle round trips (empty image, ciphertext an exact
// multiple of the part size, a 3 GiB sparse image with bounded memory), tampering detection
// (part digest, tar digest, signature, wrong key), and a euca2ools-style empty trailing part.
#include "installer/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "installer/crypto.h"
#include "tests/installer/test_keys.h"

namespace installer {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void spit(const fs::path& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

std::string random_data(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; i += 8) {
    std::uint64_t v = rng();
    std::memcpy(&s[i], &v, std::min<std::size_t>(8, n - i));
  }
  return s;
}

class BundleTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    keydir_ = new fs::path(fs::temp_directory_path() /
                           ("tusk-bundle-keys-" + std::to_string(::getpid())));
    fs::create_directories(*keydir_);
    user_ = new testing::KeyFiles(testing::make_key_files(*keydir_, "user"));
    cloud_ = new testing::KeyFiles(testing::make_key_files(*keydir_, "cloud"));
  }
  static void TearDownTestSuite() {
    fs::remove_all(*keydir_);
    delete keydir_;
    delete user_;
    delete cloud_;
  }

  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tusk-bundle-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "bundle");
    fs::create_directories(dir_ / "out");
    cloud_cert_.emplace(std::move(Key::from_certificate_file(cloud_->cert_path).value()));
    user_cert_.emplace(std::move(Key::from_certificate_file(user_->cert_path).value()));
    user_key_.emplace(std::move(Key::from_private_key_file(user_->key_path).value()));
    cloud_key_.emplace(std::move(Key::from_private_key_file(cloud_->key_path).value()));
  }
  void TearDown() override { fs::remove_all(dir_); }

  BundleOptions options(const fs::path& image, const std::string& prefix) {
    BundleOptions o;
    o.image_path = image.string();
    o.prefix = prefix;
    o.dest_dir = (dir_ / "bundle").string();
    o.architecture = "x86_64";
    o.user = "123456789012";
    o.cloud_cert = &*cloud_cert_;
    o.user_cert = &*user_cert_;
    o.private_key = &*user_key_;
    return o;
  }

  Result<Unbundled> unbundle_with(const Key& key, const Bundle& b) {
    UnbundleOptions u;
    u.manifest_path = b.manifest_path;
    u.private_key = &key;
    u.source_dir = (dir_ / "bundle").string();
    u.dest_dir = (dir_ / "out").string();
    return unbundle(u);
  }

  void round_trip(const std::string& data, std::uint64_t part_size = kPartSize) {
    spit(dir_ / "image.img", data);
    auto o = options(dir_ / "image.img", "image.img");
    o.part_size = part_size;
    auto b = bundle_image(o);
    ASSERT_TRUE(b) << b.error().message;
    for (const auto& p : b->parts) {
      EXPECT_GT(p.size, 0u) << "no empty parts (EUSTORE §8.12)";
      EXPECT_LE(p.size, part_size);
      EXPECT_EQ(p.sha1, sha1_hex(slurp(p.path)));
    }
    auto u = unbundle_with(*user_key_, *b);
    ASSERT_TRUE(u) << u.error().message;
    EXPECT_EQ(u->signature, "verified");
    EXPECT_EQ(u->image_path, (dir_ / "out" / "image.img").string());
    EXPECT_EQ(slurp(u->image_path), data);
    // The cloud's key opens ec2_encrypted_* (no certificate to check the signature with).
    fs::remove(u->image_path);
    auto c = unbundle_with(*cloud_key_, *b);
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ(c->signature, "not checked");
    EXPECT_EQ(slurp(c->image_path), data);
    last_ = std::move(*b);
  }

  inline static fs::path* keydir_ = nullptr;
  inline static testing::KeyFiles* user_ = nullptr;
  inline static testing::KeyFiles* cloud_ = nullptr;
  fs::path dir_;
  std::optional<Key> cloud_cert_, user_cert_, user_key_, cloud_key_;
  Bundle last_;
};

TEST_F(BundleTest, SmallImageRoundTripAndManifestShape) {
  round_trip(random_data(300 * 1024, 1) + std::string(200 * 1024, '\0'));
  const Manifest& m = last_.manifest;
  EXPECT_EQ(m.size, 500u * 1024);
  EXPECT_EQ(m.parts.size(), 1u);
  EXPECT_EQ(m.parts[0].filename, "image.img.part.00");
  EXPECT_EQ(m.ec2_encrypted_key.size(), 512u);  // 2048-bit RSA, hex
  EXPECT_EQ(m.user_encrypted_iv.size(), 512u);
  EXPECT_EQ(last_.manifest_xml.find('\n'), std::string::npos) << "single line";
  EXPECT_EQ(slurp(last_.manifest_path), last_.manifest_xml);
  EXPECT_TRUE(user_cert_->verify_sha1(signed_text(m), from_hex(m.signature).value()));
}

TEST_F(BundleTest, TarDigestIsTheManifestDigestWithoutBundling) {
  for (const auto& data : {std::string(), random_data(700 * 1024 + 3, 5)}) {
    spit(dir_ / "image.img", data);
    auto b = bundle_image(options(dir_ / "image.img", "eustore-x"));
    ASSERT_TRUE(b) << b.error().message;
    auto d = tar_digest((dir_ / "image.img").string(), "eustore-x");
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(d->sha1, b->manifest.digest_sha1);
    EXPECT_EQ(d->size, data.size());
    // Another member name is another tar stream.
    EXPECT_NE(tar_digest((dir_ / "image.img").string(), "eustore-y")->sha1, d->sha1);
  }
  EXPECT_FALSE(tar_digest((dir_ / "missing.img").string(), "x"));
}

TEST_F(BundleTest, EmptyImage) {
  round_trip("");
  EXPECT_EQ(last_.manifest.size, 0u);
  EXPECT_EQ(last_.manifest.parts.size(), 1u);
}

TEST_F(BundleTest, SeveralPartsWithSmallPartSize) {
  round_trip(random_data(200 * 1024, 2), 64 * 1024);
  EXPECT_EQ(last_.manifest.parts.size(), 4u);  // ~201 KiB of ciphertext
  EXPECT_EQ(last_.manifest.parts[3].filename, "image.img.part.03");
}

TEST_F(BundleTest, CiphertextExactMultipleOfTenMiB) {
  // Random data barely compresses, so the ciphertext grows with the image size almost byte for
  // byte: adjust the size until the ciphertext is exactly 10 MiB (gzip output in
  // [10 MiB - 16, 10 MiB - 1] gives 10 MiB after PKCS#7 padding).
  std::size_t n = kPartSize - 4096;
  std::string data;
  for (int attempt = 0; attempt < 40; ++attempt) {
    data = random_data(n, 3);
    spit(dir_ / "image.img", data);
    auto b = bundle_image(options(dir_ / "image.img", "image.img"));
    ASSERT_TRUE(b) << b.error().message;
    std::int64_t diff =
        static_cast<std::int64_t>(kPartSize) - static_cast<std::int64_t>(b->manifest.bundled_size);
    if (diff == 0) {
      break;
    }
    n = static_cast<std::size_t>(static_cast<std::int64_t>(n) +
                                 (diff > 0 ? std::max<std::int64_t>(diff - 8, 1) : diff));
  }
  round_trip(data);
  ASSERT_EQ(last_.manifest.bundled_size, kPartSize) << "search did not converge";
  EXPECT_EQ(last_.manifest.parts.size(), 1u) << "no empty trailing part";
  EXPECT_EQ(last_.parts[0].size, kPartSize);

  // Two full parts with a 5 MiB part size: still no empty third part.
  fs::remove_all(dir_ / "bundle");
  fs::create_directories(dir_ / "bundle");
  round_trip(data, kPartSize / 2);
  EXPECT_EQ(last_.manifest.parts.size(), 2u);
}

TEST_F(BundleTest, TamperedPartIsRejected) {
  round_trip(random_data(100 * 1024, 4), 32 * 1024);
  std::string part = slurp(last_.parts[1].path);
  part[100] ^= 1;
  spit(last_.parts[1].path, part);
  fs::remove(dir_ / "out" / "image.img");
  auto u = unbundle_with(*user_key_, last_);
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::kChecksum);
  EXPECT_NE(u.error().message.find("image.img.part.01"), std::string::npos) << u.error().message;
  EXPECT_FALSE(fs::exists(dir_ / "out" / "image.img")) << "no partial output left behind";
}

TEST_F(BundleTest, MissingPartIsRejected) {
  round_trip(random_data(100 * 1024, 5), 32 * 1024);
  fs::remove(last_.parts[2].path);
  auto u = unbundle_with(*user_key_, last_);
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::kIo);
}

TEST_F(BundleTest, WrongTarDigestIsRejected) {
  round_trip(random_data(50 * 1024, 6));
  Manifest m = last_.manifest;
  m.digest_sha1 = std::string(40, '0');
  m.signature = to_hex(user_key_->sign_sha1(signed_text(m)).value());
  spit(last_.manifest_path, serialize(m));
  auto u = unbundle_with(*user_key_, last_);
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::kChecksum);
  EXPECT_NE(u.error().message.find("tar stream"), std::string::npos) << u.error().message;
}

TEST_F(BundleTest, BadSignatureIsRejected) {
  round_trip(random_data(50 * 1024, 7));
  Manifest m = last_.manifest;
  m.architecture = "i386";  // changes the signed text, keeps the old signature
  spit(last_.manifest_path, serialize(m));
  auto u = unbundle_with(*user_key_, last_);
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::kCrypto);
}

TEST_F(BundleTest, ForeignKeyCannotOpen) {
  round_trip(random_data(10 * 1024, 8));
  auto other = testing::make_key_files(dir_, "other", 1024);
  auto k = Key::from_private_key_file(other.key_path);
  ASSERT_TRUE(k);
  auto u = unbundle_with(*k, last_);
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().code, Errc::kCrypto);
}

TEST_F(BundleTest, EmptyTrailingPartFromOtherBundlersIsAccepted) {
  round_trip(random_data(64 * 1024, 9));
  Manifest m = last_.manifest;
  spit(dir_ / "bundle" / "image.img.part.01", "");
  m.parts.push_back(ManifestPart{"image.img.part.01", sha1_hex("")});
  m.signature = to_hex(user_key_->sign_sha1(signed_text(m)).value());
  spit(last_.manifest_path, serialize(m));
  fs::remove(dir_ / "out" / "image.img");
  auto u = unbundle_with(*user_key_, last_);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->signature, "verified");
}

TEST_F(BundleTest, UnsignedWithoutPrivateKeyAndNoUserCert) {
  spit(dir_ / "image.img", "hello\n");
  auto o = options(dir_ / "image.img", "kernel-x");
  o.type = ImageType::kKernel;
  o.private_key = nullptr;
  o.user_cert = nullptr;
  auto b = bundle_image(o);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->manifest.signature, "UNSIGNED");
  EXPECT_TRUE(b->manifest.user_encrypted_key.empty());
  EXPECT_NE(b->manifest_xml.find("<kernel_id>true</kernel_id>"), std::string::npos);
  EXPECT_NE(b->manifest_xml.find("<type>kernel</type>"), std::string::npos);
  auto u = unbundle_with(*cloud_key_, *b);
  ASSERT_TRUE(u) << u.error().message;
  EXPECT_EQ(u->signature, "unsigned");
  EXPECT_EQ(slurp(u->image_path), "hello\n");
}

long max_rss_kib() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

TEST_F(BundleTest, ThreeGiBSparseImageInBoundedMemory) {
  const std::uint64_t size = 3ull << 30;
  {
    std::ofstream f(dir_ / "big.img", std::ios::binary);
    f.write("start", 5);
    f.seekp(static_cast<std::streamoff>(size - 3));
    f.write("end", 3);
  }
  long before = max_rss_kib();
  auto b = bundle_image(options(dir_ / "big.img", "big.img"));
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->manifest.size, size);
  auto u = unbundle_with(*user_key_, *b);
  ASSERT_TRUE(u) << u.error().message;
  long growth_mib = (max_rss_kib() - before) / 1024;
  EXPECT_LT(growth_mib, 64) << "bundle + unbundle of 3 GiB must stream";
  EXPECT_EQ(fs::file_size(u->image_path), size);
  std::ifstream in(u->image_path, std::ios::binary);
  char head[5], tail[3];
  in.read(head, 5);
  in.seekg(static_cast<std::streamoff>(size - 3));
  in.read(tail, 3);
  EXPECT_EQ(std::string(head, 5), "start");
  EXPECT_EQ(std::string(tail, 3), "end");
}

// The hand-written tar header, read back by libarchive: plain, long name, and >= 8 GiB sizes.
TEST(TarHeader, LibarchiveReadsWhatWeWrite) {
  const std::string long_name(150, 'n');
  for (auto [name, size] : {std::pair<std::string, std::uint64_t>{"image.img", 12345},
                            {long_name, 1},
                            {"huge.img", (8ull << 30)},
                            {"huger.img", (3ull << 40) + 7}}) {
    std::string tar = tar_member_header(name, size, 1300000000);
    ASSERT_EQ(tar.size() % 512, 0u);
    std::unique_ptr<archive, int (*)(archive*)> a(archive_read_new(), &archive_read_free);
    archive_read_support_format_tar(a.get());
    ASSERT_EQ(archive_read_open_memory(a.get(), tar.data(), tar.size()), ARCHIVE_OK);
    archive_entry* e = nullptr;
    ASSERT_EQ(archive_read_next_header(a.get(), &e), ARCHIVE_OK) << archive_error_string(a.get());
    EXPECT_EQ(archive_entry_pathname(e), name);
    EXPECT_EQ(static_cast<std::uint64_t>(archive_entry_size(e)), size);
    EXPECT_EQ(archive_entry_filetype(e), AE_IFREG);
    EXPECT_EQ(archive_entry_mtime(e), 1300000000);
  }
}

}  // namespace
}  // namespace installer
