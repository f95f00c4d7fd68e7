// Tests of installer/registry.cc and installer/credentials.cc: record encoding and versioning,
// LMDB put/get/list/erase, the per-key lock (a second holder waits), liveness checks, and eucarc
// parsing with precedence.
#include "installer/registry.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "installer/credentials.h"

namespace installer {
namespace {

namespace fs = std::filesystem;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("tusk-registry-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(RegistryTest, RecordRoundTripAndVersioning) {
  InstallRecord r;
  r.state = InstallState::kDone;
  r.pid = 42;
  r.image = "0222977072";
  r.guid = "site";
  r.eki = "eki-11111111";
  r.pending_keys = {"a.part.00", "a.manifest.xml"};
  r.work_dir = "/var/tmp/tusk-install-abc123";
  auto back = decode_record(encode_record(r));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->work_dir, r.work_dir);
  // A record written before work_dir existed still reads (the field is empty).
  auto old = decode_record("{\"v\":1,\"state\":\"failed\",\"pid\":1}");
  ASSERT_TRUE(old);
  EXPECT_EQ(old->work_dir, "");
  EXPECT_EQ(back->state, InstallState::kDone);
  EXPECT_EQ(back->eki, "eki-11111111");
  EXPECT_EQ(back->pending_keys, r.pending_keys);
  EXPECT_FALSE(decode_record("{\"v\":2,\"state\":\"done\"}")) << "unknown version reads as absent";
  EXPECT_FALSE(decode_record("garbage"));
  EXPECT_FALSE(decode_record("{\"v\":1,\"pid\":\"x\"}"));
}

TEST_F(RegistryTest, PutGetListErase) {
  auto reg = Registry::open(dir_.string());
  ASSERT_TRUE(reg) << reg.error().message;
  InstallRecord r;
  r.image = "1";
  r.emi = "emi-12345678";
  ASSERT_TRUE(reg->put(registry_key("1", "g"), r));
  auto got = reg->get(registry_key("1", "g"));
  ASSERT_TRUE(got);
  ASSERT_TRUE(*got);
  EXPECT_EQ((*got)->emi, "emi-12345678");
  EXPECT_FALSE(*reg->get(registry_key("1", "other")));
  ASSERT_EQ(reg->list()->size(), 1u);
  ASSERT_TRUE(reg->erase(registry_key("1", "g")));
  EXPECT_TRUE(reg->list()->empty());
}

TEST_F(RegistryTest, SecondLockHolderWaits) {
  // The first holder is a child process that opens its own registry after fork (a lock fd
  // inherited across fork would share the flock), holds the key 300 ms, then exits.
  ASSERT_TRUE(Registry::open(dir_.string()));
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  pid_t child = ::fork();
  if (child == 0) {
    auto r = Registry::open(dir_.string());
    auto l = r->lock("k", nullptr);
    char c = l ? 'l' : 'e';
    (void)!::write(pipefd[1], &c, 1);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::_exit(0);
  }
  char c = 0;
  ASSERT_EQ(::read(pipefd[0], &c, 1), 1);
  ASSERT_EQ(c, 'l');
  auto reg = Registry::open(dir_.string());
  ASSERT_TRUE(reg);
  bool waited = false;
  auto t0 = std::chrono::steady_clock::now();
  auto l = reg->lock("k", [&] { waited = true; });
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_TRUE(waited);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(150));
  auto other = reg->lock("other-key", [] { ADD_FAILURE() << "other keys never wait"; });
  EXPECT_TRUE(other);
  int status = 0;
  ::waitpid(child, &status, 0);
  ::close(pipefd[0]);
  ::close(pipefd[1]);
}

TEST(Liveness, ProcessAlive) {
  EXPECT_TRUE(process_alive(::getpid(), process_start_time(::getpid())));
  EXPECT_FALSE(process_alive(::getpid(), process_start_time(::getpid()) + 1)) << "pid reuse";
  pid_t child = ::fork();
  if (child == 0) {
    ::_exit(0);
  }
  ::waitpid(child, nullptr, 0);
  EXPECT_FALSE(process_alive(child, 0));
  EXPECT_FALSE(process_alive(0, 0));
}

TEST(Credentials, EucarcAndPrecedence) {
  fs::path dir = fs::temp_directory_path() / ("tusk-eucarc-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream f(dir / "eucarc");
    f << "EUCA_KEY_DIR=$(cd $(dirname ${BASH_SOURCE:-$0}); pwd -P)\n"
         "export EC2_URL=http://clc:8773/services/compute\n"
         "export S3_URL='http://osg:8773/services/objectstorage'\n"
         "export EC2_PRIVATE_KEY=${EUCA_KEY_DIR}/pk.pem\n"
         "export EUCALYPTUS_CERT=\"${EUCA_KEY_DIR}/cloud-cert.pem\"\n"
         "export EC2_ACCESS_KEY=AK # comment\n"
         "alias ec2-bundle-image=\"ec2-bundle-image --cert ${EC2_CERT}\"\n"
         "export EC2_USER_ID=$(cat id)\n";
  }
  auto rc = parse_eucarc((dir / "eucarc").string());
  ASSERT_TRUE(rc) << rc.error().message;
  EnvFn env = [](const char* n) -> std::optional<std::string> {
    if (std::string(n) == "EC2_USER_ID") return "999";
    if (std::string(n) == "EC2_URL") return "http://env-url";
    if (std::string(n) == "EC2_SECRET_KEY") return "envsecret";
    return std::nullopt;
  };
  CloudCredentials flags;
  flags.access_key = "FLAG";
  CloudCredentials c = resolve_credentials(flags, *rc, env);
  EXPECT_EQ(c.access_key, "FLAG");
  EXPECT_EQ(c.ec2_url, "http://clc:8773/services/compute") << "eucarc beats the environment";
  EXPECT_EQ(c.s3_url, "http://osg:8773/services/objectstorage");
  EXPECT_EQ(c.private_key, fs::absolute(dir).string() + "/pk.pem");
  EXPECT_EQ(c.cloud_cert, fs::absolute(dir).string() + "/cloud-cert.pem");
  EXPECT_EQ(c.secret_key, "envsecret");
  EXPECT_EQ(c.user_id, "999") << "$(...) is never executed";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace installer
