// installer/subscription.cc: the file's encoding and its atomic, locked, 0600 store; events
// (round trip and hostile bodies); sync's handling of lists that cannot be fetched or verified
// and of a queue that fails mid-sync. Signed lists end to end: tests/integration/test_intake.py.
#include "installer/subscription.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "tests/installer/fake_queue.h"

namespace installer {
namespace {

namespace fs = std::filesystem;

class Store : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("tusk-subs-test-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

Subscription sub(const std::string& url) {
  Subscription s;
  s.url = url;
  s.token = "secret-token";
  s.endorser_dn = "/C=DE/O=Test/CN=Endorser";
  s.ca_dir = "/etc/grid-security/certificates";
  s.added = 1700000000;
  s.images["a"] = ImageState{std::string(128, 'b'), 42, "http://x/a.img"};
  return s;
}

TEST_F(Store, RoundTripAtomicAndPrivate) {
  {
    auto s = SubscriptionStore::open(dir_.string());
    ASSERT_TRUE(s) << s.error().message;
    EXPECT_TRUE(s->all().empty());
    s->all().push_back(sub("https://l/1"));
    s->all().push_back(sub("https://l/2"));
    ASSERT_TRUE(s->save());
  }
  struct stat st {};
  ASSERT_EQ(::stat((dir_ / "subscriptions.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);  // it holds tokens
  EXPECT_FALSE(fs::exists(dir_ / "subscriptions.json.tmp"));
  auto s = SubscriptionStore::open(dir_.string());
  ASSERT_TRUE(s);
  ASSERT_EQ(s->all().size(), 2u);
  const Subscription* one = s->find("https://l/1");
  ASSERT_NE(one, nullptr);
  EXPECT_EQ(one->token, "secret-token");
  EXPECT_EQ(one->endorser_dn, "/C=DE/O=Test/CN=Endorser");
  EXPECT_EQ(one->images.at("a"), (ImageState{std::string(128, 'b'), 42, "http://x/a.img"}));
  EXPECT_EQ(s->find("https://l/3"), nullptr);
}

TEST_F(Store, CorruptOrForeignFileIsRefusedAndLeftAlone) {
  fs::create_directories(dir_);
  for (const char* text : {"not json", "[]", R"({"v": 2, "subscriptions": []})", R"({"v": 1})",
                           R"({"v": 1, "subscriptions": [{"token": "x"}]})",
                           R"({"v": 1, "subscriptions": [{"url": "u", "images": {"a": 3}}]})"}) {
    std::ofstream(dir_ / "subscriptions.json") << text;
    auto s = SubscriptionStore::open(dir_.string());
    ASSERT_FALSE(s) << text;
    EXPECT_EQ(s.error().code, Errc::kFormat);
    EXPECT_NE(s.error().message.find("subscriptions.json"), std::string::npos);
    std::ifstream in(dir_ / "subscriptions.json");
    std::string back((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_EQ(back, text);
  }
}

TEST_F(Store, SecondOpenWaitsForTheFirst) {
  // The child forks before the parent takes the lock (a forked child would share the parent's
  // lock), then opens when told to.
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    char c;
    if (::read(go[0], &c, 1) != 1) _exit(2);
    auto second = SubscriptionStore::open(dir_.string());  // waits for the parent's store
    _exit(second && second->all().size() == 1 ? 0 : 1);
  }
  {
    auto first = SubscriptionStore::open(dir_.string());
    ASSERT_TRUE(first);
    ASSERT_EQ(::write(go[1], "x", 1), 1);
    ::usleep(300 * 1000);
    int status = 0;
    EXPECT_EQ(::waitpid(child, &status, WNOHANG), 0);  // still waiting for the lock
    first->all().push_back(sub("https://l/1"));
    ASSERT_TRUE(first->save());
  }  // releases the lock
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ::close(go[0]);
  ::close(go[1]);
}

TEST(Event, RoundTrip) {
  ImageEvent e;
  e.subscription = "https://l/1";
  e.list = "list-id";
  e.kind = "changed";
  e.enqueued = 1700000001;
  e.image.identifier = "img-1";
  e.image.uri = "https://images.example/a.qcow2";
  e.image.size = 1 << 20;
  e.image.sha512 = std::string(128, 'c');
  e.image.format = "qcow2";
  e.image.title = "Debian";
  e.image.arch = "x86_64";
  auto back = decode_event(encode_event(e));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->image.identifier, "img-1");
  EXPECT_EQ(back->image.uri, e.image.uri);
  EXPECT_EQ(back->image.size, e.image.size);
  EXPECT_EQ(back->image.sha512, e.image.sha512);
  EXPECT_EQ(back->image.format, "qcow2");
  EXPECT_EQ(back->image.title, "Debian");
  EXPECT_EQ(back->kind, "changed");
  EXPECT_EQ(back->list, "list-id");
  EXPECT_EQ(back->enqueued, 1700000001);
}

TEST(Event, HostileBodiesRefused) {
  const std::string sha(128, 'd');
  for (const std::string body :
       {std::string("nope"), std::string("[1]"), std::string(R"({"identifier":"x"})"),
        R"({"v":1,"identifier":"x","uri":"file:///etc/passwd","size":1,"sha512":")" + sha + "\"}",
        R"({"v":1,"identifier":"a b","uri":"http://x/a","size":1,"sha512":")" + sha + "\"}",
        R"({"v":1,"identifier":"x","uri":"http://x/a","size":-1,"sha512":")" + sha + "\"}",
        std::string(R"({"v":1,"identifier":"x","uri":"http://x/a","size":1,"sha512":"zz"})"),
        R"({"v":1,"identifier":")" + std::string(5000, 'x') +
            R"(","uri":"http://x/a","size":1})"}) {
    auto e = decode_event(body);
    ASSERT_FALSE(e) << body.substr(0, 80);
    EXPECT_EQ(e.error().code, Errc::kFormat);
  }
}

TEST_F(Store, SyncRecordsRefusedListsAndEnqueuesNothing) {
  auto s = SubscriptionStore::open(dir_.string());
  ASSERT_TRUE(s);
  s->all().push_back(sub("https://l/404"));
  s->all().push_back(sub("https://l/unsigned"));
  s->all().push_back(sub("https://l/down"));
  FakeQueue q;
  std::vector<std::pair<std::string, std::string>> seen_headers;
  FetchFn fetch = [&](const std::string& url,
                      const std::vector<std::pair<std::string, std::string>>& h)
      -> Result<std::pair<int, std::string>> {
    seen_headers = h;
    if (url == "https://l/404") return std::pair<int, std::string>{404, "no"};
    if (url == "https://l/unsigned")
      return std::pair<int, std::string>{200, R"({"hv:imagelist": {}})"};
    return fail(Errc::kNetwork, "connection refused");
  };
  auto reports = sync_subscriptions(*s, q, fetch, 1700000000);
  ASSERT_TRUE(reports) << reports.error().message;
  ASSERT_EQ(reports->size(), 3u);
  EXPECT_EQ((*reports)[0].error, "fetch: HTTP 404");
  EXPECT_FALSE((*reports)[1].error.empty());
  EXPECT_NE((*reports)[2].error.find("connection refused"), std::string::npos);
  EXPECT_TRUE(q.published.empty());
  ASSERT_EQ(seen_headers.size(), 1u);
  EXPECT_EQ(seen_headers[0].second, "Bearer secret-token");
  // The previous state is kept; the error is recorded.
  EXPECT_EQ(s->all()[0].images.size(), 1u);
  EXPECT_EQ(s->all()[0].last_error, "fetch: HTTP 404");
  EXPECT_EQ(s->all()[0].synced, 0);
}

}  // namespace
}  // namespace installer
