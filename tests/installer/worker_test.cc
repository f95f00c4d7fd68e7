// installer/worker.cc: an event's install options (table), the backoff, and work_one's
// ack / retry / park decisions over a recording queue and a scripted install.
#include "installer/worker.h"

#include <gtest/gtest.h>

#include "tests/installer/fake_queue.h"

namespace installer {
namespace {

ImageEvent event(std::string id = "img-1", std::string arch = "x86_64",
                 std::string format = "qcow2") {
  ImageEvent e;
  e.kind = "new";
  e.subscription = "https://lists.example/list.smime";
  e.list = "list-1";
  e.image.identifier = std::move(id);
  e.image.uri = "http://edge:8080/images/a.qcow2";
  e.image.size = 1234;
  e.image.sha512 = std::string(128, 'a');
  e.image.format = std::move(format);
  e.image.arch = std::move(arch);
  e.image.title = "Debian 12";
  return e;
}

WorkerOptions options() {
  WorkerOptions w;
  w.base.bucket = "images";
  w.base.guid = "site-1";
  w.base.disk_kernel_id = "eki-00000001";
  w.backoff = std::chrono::seconds(10);
  w.max_attempts = 3;
  return w;
}

TEST(InstallOptionsFor, EventFieldsBecomeTheInstall) {
  const InstallOptions o = install_options_for(options(), event());
  EXPECT_EQ(o.url, "http://edge:8080/images/a.qcow2");
  EXPECT_EQ(o.expect_size, 1234u);
  EXPECT_EQ(o.expect_sha512, std::string(128, 'a'));
  EXPECT_EQ(o.expect_format, "qcow2");
  EXPECT_EQ(o.record_key, "imagelist:img-1@site-1");
  EXPECT_EQ(o.content, "sha512:" + std::string(128, 'a'));
  EXPECT_EQ(o.name, "imagelist-img-1");
  EXPECT_EQ(o.architecture, "x86_64");
  EXPECT_EQ(o.description, "Debian 12");
  EXPECT_EQ(o.disk_kernel_id, "eki-00000001");
  EXPECT_EQ(o.kernel_id, "");  // a tarball in the list keeps its own kernel
  EXPECT_EQ(o.bucket, "images");
}

TEST(InstallOptionsFor, Table) {
  struct Case {
    std::string id, arch, format;
    std::string want_name, want_arch, want_format;
  } cases[] = {
      {"a.b:c", "amd64", "raw", "imagelist-a_b_c", "x86_64", "raw"},
      {"x", "", "ova", "imagelist-x", "x86_64", ""},  // left to qemu-img's probe
      {"x", "i386", "vmdk", "imagelist-x", "i386", "vmdk"},
      {"x", "sparc", "", "imagelist-x", "x86_64", ""},
      {std::string(200, 'z'), "armhf", "qcow2", "imagelist-" + std::string(80, 'z'), "armhf",
       "qcow2"},
  };
  for (const auto& c : cases) {
    const InstallOptions o = install_options_for(options(), event(c.id, c.arch, c.format));
    EXPECT_EQ(o.name, c.want_name) << c.id;
    EXPECT_EQ(o.architecture, c.want_arch) << c.arch;
    EXPECT_EQ(o.expect_format, c.want_format) << c.format;
  }
  WorkerOptions no_guid = options();
  no_guid.base.guid.clear();
  no_guid.base.creds.user_id = "123";
  no_guid.base.creds.ec2_url = "http://clc:8773/services/Eucalyptus";
  EXPECT_EQ(install_options_for(no_guid, event()).record_key,
            "imagelist:img-1@123@http://clc:8773/services/Eucalyptus");
}

TEST(RetryDelay, DoublesUpToTheCap) {
  WorkerOptions w = options();
  w.max_backoff = std::chrono::seconds(60);
  EXPECT_EQ(retry_delay(w, 0), std::chrono::seconds(10));
  EXPECT_EQ(retry_delay(w, 1), std::chrono::seconds(20));
  EXPECT_EQ(retry_delay(w, 2), std::chrono::seconds(40));
  EXPECT_EQ(retry_delay(w, 3), std::chrono::seconds(60));
  EXPECT_EQ(retry_delay(w, 1000), std::chrono::seconds(60));
}

TEST(WorkOne, IdleWhenNothingIsQueued) {
  FakeQueue q;
  int calls = 0;
  auto r = work_one(q, options(), {}, std::chrono::milliseconds(0),
                    [&](const InstallOptions&, const InstallIo&) -> Result<InstallResult> {
                      ++calls;
                      return InstallResult{};
                    });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->outcome, WorkOutcome::kIdle);
  EXPECT_EQ(calls, 0);
}

TEST(WorkOne, SuccessAcksAfterTheInstall) {
  FakeQueue q;
  ASSERT_TRUE(q.publish(encode_event(event())));
  std::string key;
  auto r = work_one(q, options(), {}, std::chrono::milliseconds(0),
                    [&](const InstallOptions& o, const InstallIo&) -> Result<InstallResult> {
                      key = o.record_key;
                      EXPECT_TRUE(q.acked.empty());  // not before the install is done
                      InstallResult res;
                      res.emi = "emi-12345678";
                      return res;
                    });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->outcome, WorkOutcome::kRegistered);
  EXPECT_EQ(r->emi, "emi-12345678");
  EXPECT_EQ(key, "imagelist:img-1@site-1");
  EXPECT_EQ(q.acked.size(), 1u);
  EXPECT_TRUE(q.retried.empty());
}

TEST(WorkOne, FailuresRetryWithBackoffThenPark) {
  FakeQueue q;
  ASSERT_TRUE(q.publish(encode_event(event())));
  auto failing = [](const InstallOptions&, const InstallIo&) -> Result<InstallResult> {
    return fail(Errc::kNetwork, "download: HTTP 503");
  };
  const WorkerOptions w = options();
  auto r1 = work_one(q, w, {}, std::chrono::milliseconds(0), failing);
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->outcome, WorkOutcome::kRetried);
  EXPECT_EQ(r1->attempts, 1);
  auto r2 = work_one(q, w, {}, std::chrono::milliseconds(0), failing);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->outcome, WorkOutcome::kRetried);
  ASSERT_EQ(q.retried.size(), 2u);
  EXPECT_EQ(q.retried[0].delay, std::chrono::seconds(10));
  EXPECT_EQ(q.retried[1].delay, std::chrono::seconds(20));
  EXPECT_EQ(q.retried[1].error, "download: HTTP 503");
  auto r3 = work_one(q, w, {}, std::chrono::milliseconds(0), failing);
  ASSERT_TRUE(r3);
  EXPECT_EQ(r3->outcome, WorkOutcome::kParked);
  EXPECT_EQ(r3->attempts, 3);
  ASSERT_EQ(q.parked.size(), 1u);
  EXPECT_EQ(q.parked[0].second, "download: HTTP 503");
  EXPECT_TRUE(q.acked.empty());
  EXPECT_TRUE(q.ready.empty());
}

TEST(WorkOne, UndecodableEventIsParkedAtOnce) {
  FakeQueue q;
  for (const char* body : {"not json", R"({"v":2,"identifier":"x"})",
                           R"({"v":1,"identifier":"x","uri":"ftp://x","size":1,"sha512":""})"}) {
    ASSERT_TRUE(q.publish(body));
  }
  int calls = 0;
  for (int i = 0; i < 3; ++i) {
    auto r = work_one(q, options(), {}, std::chrono::milliseconds(0),
                      [&](const InstallOptions&, const InstallIo&) -> Result<InstallResult> {
                        ++calls;
                        return InstallResult{};
                      });
    ASSERT_TRUE(r);
    EXPECT_EQ(r->outcome, WorkOutcome::kParked);
  }
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(q.parked.size(), 3u);
}

}  // namespace
}  // namespace installer
