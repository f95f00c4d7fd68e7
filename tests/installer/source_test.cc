// installer/source.cc: tarball-or-disk sniffing (table), the size/SHA-512 check, qemu-img's info
// JSON, and run_program's bounds (exit status, output limit, deadline) with real child processes.
#include "installer/source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "installer/crypto.h"

namespace installer {
namespace {

namespace fs = std::filesystem;

TEST(KindOfBytes, Table) {
  std::string ustar(512, '\0');
  ustar.replace(257, 5, "ustar");
  struct Case {
    std::string head;
    SourceKind want;
  } cases[] = {
      {std::string("\x1f\x8b\x08\x00", 4), SourceKind::kTarball},
      {"BZh91AY&SY", SourceKind::kTarball},
      {std::string("\xfd"
                   "7zXZ\0\0",
                   7),
       SourceKind::kTarball},
      {ustar, SourceKind::kTarball},
      {"QFI\xfb\0\0\0\3", SourceKind::kDisk},  // qcow2
      {"KDMV", SourceKind::kDisk},             // vmdk
      {std::string(512, '\0'), SourceKind::kDisk},
      {"", SourceKind::kDisk},
      {"\x1f", SourceKind::kDisk},  // half a gzip magic
  };
  for (const auto& c : cases) {
    EXPECT_EQ(kind_of_bytes(c.head), c.want) << testing::PrintToString(c.head);
  }
}

class SourceFiles : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tusk-source-test-" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& data) {
    std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << data;
    return p;
  }
  fs::path dir_;
};

TEST_F(SourceFiles, CheckSourceSizeThenSha512) {
  const std::string data = "an image of some bytes";
  const std::string p = write("img", data);
  Digest d(Digest::Algo::kSha512);
  d.update(data);
  const std::string sha = d.final_hex();
  EXPECT_TRUE(check_source(p, data.size(), sha));
  EXPECT_TRUE(check_source(p, std::nullopt, ""));
  auto wrong_size = check_source(p, data.size() + 1, sha);
  ASSERT_FALSE(wrong_size);
  EXPECT_EQ(wrong_size.error().code, Errc::kChecksum);
  EXPECT_NE(wrong_size.error().message.find("expected " + std::to_string(data.size() + 1)),
            std::string::npos);
  std::string other = sha;
  other[0] = other[0] == 'a' ? 'b' : 'a';
  auto wrong_sha = check_source(p, data.size(), other);
  ASSERT_FALSE(wrong_sha);
  EXPECT_EQ(wrong_sha.error().code, Errc::kChecksum);
  auto missing = check_source((dir_ / "none").string(), 1, "");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kIo);
}

TEST_F(SourceFiles, KindOfFile) {
  EXPECT_EQ(*kind_of_file(write("a.tgz", std::string("\x1f\x8b\x08", 3))), SourceKind::kTarball);
  EXPECT_EQ(*kind_of_file(write("a.raw", std::string(4096, '\0'))), SourceKind::kDisk);
  EXPECT_FALSE(kind_of_file((dir_ / "none").string()));
}

TEST(ParseQemuInfo, Table) {
  EXPECT_EQ(*parse_qemu_info(R"({"virtual-size": 1048576, "filename": "x", "format": "qcow2"})"),
            "qcow2");
  EXPECT_EQ(*parse_qemu_info(R"({"format": "raw"})"), "raw");
  for (const char* bad : {"", "not json", "[]", R"({"format": 3})", R"({"format": ""})",
                          R"({"format": "raw; rm -rf /"})", R"({"filename": "x"})"}) {
    auto r = parse_qemu_info(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code, Errc::kFormat) << bad;
  }
}

TEST(RunProgram, OutputExitStatusLimitsAndDeadline) {
  auto ok = run_program({"printf", "hello"}, 100, std::chrono::seconds(10));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(*ok, "hello");

  auto failed = run_program({"sh", "-c", "echo first line >&2; echo second >&2; exit 3"}, 100,
                            std::chrono::seconds(10));
  ASSERT_FALSE(failed);
  EXPECT_NE(failed.error().message.find("exit 3"), std::string::npos) << failed.error().message;
  EXPECT_NE(failed.error().message.find("first line"), std::string::npos);
  EXPECT_EQ(failed.error().message.find("second"), std::string::npos);

  auto big = run_program({"head", "-c", "100000", "/dev/zero"}, 1000, std::chrono::seconds(10));
  ASSERT_FALSE(big);
  EXPECT_NE(big.error().message.find("more than 1000 bytes"), std::string::npos);

  const auto start = std::chrono::steady_clock::now();
  auto slow = run_program({"sleep", "30"}, 100, std::chrono::seconds(1));
  ASSERT_FALSE(slow);
  EXPECT_NE(slow.error().message.find("killed"), std::string::npos);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));

  auto missing = run_program({"tusk-no-such-program"}, 100, std::chrono::seconds(1));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::kUsage);
}

TEST_F(SourceFiles, QemuImgConvertsQcow2ToTheSameRawBytes) {
  std::string raw(3 << 20, '\0');
  for (std::size_t i = 0; i < raw.size(); i += 4096) raw[i] = static_cast<char>(i / 4096 + 1);
  const std::string in = write("in.raw", raw);
  const std::string qcow = (dir_ / "img.qcow2").string();
  ASSERT_TRUE(run_program({"qemu-img", "convert", "-f", "raw", "-O", "qcow2", in, qcow}, 1 << 20,
                          std::chrono::seconds(60)));
  auto fmt = disk_format("qemu-img", qcow);
  ASSERT_TRUE(fmt) << fmt.error().message;
  EXPECT_EQ(*fmt, "qcow2");
  EXPECT_EQ(*disk_format("qemu-img", in), "raw");
  const std::string out = (dir_ / "out.raw").string();
  ASSERT_TRUE(convert_to_raw("qemu-img", qcow, "qcow2", out, std::chrono::seconds(60)));
  std::ifstream f(out, std::ios::binary);
  std::string back((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(back == raw);
  // A file that is not the format it is said to be fails with qemu-img's reason.
  auto bad = convert_to_raw("qemu-img", in, "qcow2", out, std::chrono::seconds(60));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("qemu-img convert failed"), std::string::npos);
}

}  // namespace
}  // namespace installer
