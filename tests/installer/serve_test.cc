// Tests of installer/serve.cc, the pure parts of `tusk serve`: request validation (a table of
// bodies and the error each gets), the POST decision (join / answer / start / 409), the
// download-space eviction choice, test-mode ids, the bearer check, sizes and the YAML file.
#include "installer/serve.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace installer {
namespace {

const std::string kSha(128, 'a');

TEST(ServeRequest, ValidBodies) {
  auto r = parse_image_request(
      R"({"url":"https://h.example/i.img","guid":"site-1:a.b_c","eki":"eki-0123ABCD",)"
      R"("eri":"eri-89abcdef","architecture":"x86_64","sha512":")" +
      std::string(128, 'F') + R"(","size":1048576,"description":"Debian 12 é"})");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->url, "https://h.example/i.img");
  EXPECT_EQ(r->guid, "site-1:a.b_c");
  EXPECT_EQ(r->sha512, std::string(128, 'f')) << "lowered";
  EXPECT_EQ(r->size, 1048576u);
  EXPECT_EQ(request_content(*r), "https://h.example/i.img#sha512=" + std::string(128, 'f'));
  auto minimal = parse_image_request(R"({"url":"HTTP://h:8080/x","guid":"g"})");
  ASSERT_TRUE(minimal);
  EXPECT_EQ(request_content(*minimal), "HTTP://h:8080/x");
  EXPECT_FALSE(minimal->size);
}

TEST(ServeRequest, InvalidBodies) {
  const std::string g = R"("guid":"g")";
  const struct {
    std::string body;
    std::string error;  // a substring of the message
  } cases[] = {
      {"", "not JSON"},
      {"{\"url\":", "not JSON"},
      {"[1,2]", "JSON object"},
      {"\"x\"", "JSON object"},
      {R"({"guid":"g"})", "\"url\" is required"},
      {R"({"url":"http://h/x"})", "\"guid\" is required"},
      {R"({"url":"ftp://h/x",)" + g + "}", "http:// or https://"},
      {R"({"url":"http://",)" + g + "}", "with a host"},
      {R"({"url":"http:///path",)" + g + "}", "with a host"},
      {R"({"url":"file:///etc/passwd",)" + g + "}", "http:// or https://"},
      {R"({"url":"http://h/a b",)" + g + "}", "spaces"},
      {R"({"url":"http://h/a#frag",)" + g + "}", "fragment"},
      {R"({"url":"http://h/a\u0001",)" + g + "}", "control"},
      {R"({"url":"http://h/)" + std::string(4100, 'a') + "\"," + g + "}", "longer than 4096"},
      {R"({"url":5,)" + g + "}", "\"url\" must be a string"},
      {R"({"url":"http://h/x","guid":""})", "\"guid\" is required"},
      {R"({"url":"http://h/x","guid":"a/b"})", "\"guid\" must be"},
      {R"({"url":"http://h/x","guid":"a b"})", "\"guid\" must be"},
      {R"({"url":"http://h/x","guid":")" + std::string(129, 'g') + "\"}", "\"guid\" must be"},
      {R"({"url":"http://h/x","guid":7})", "\"guid\" must be a string"},
      {R"({"url":"http://h/x",)" + g + R"(,"eki":"kernel"})", "\"eki\" must be an image id"},
      {R"({"url":"http://h/x",)" + g + R"(,"eri":"eri-123"})", "\"eri\" must be an image id"},
      {R"({"url":"http://h/x",)" + g + R"(,"sha512":"abc"})", "128 hex"},
      {R"({"url":"http://h/x",)" + g + R"(,"sha512":")" + std::string(128, 'g') + "\"}", "128 hex"},
      {R"({"url":"http://h/x",)" + g + R"(,"size":-1})", "positive integer"},
      {R"({"url":"http://h/x",)" + g + R"(,"size":0})", "positive integer"},
      {R"({"url":"http://h/x",)" + g + R"(,"size":1.5})", "positive integer"},
      {R"({"url":"http://h/x",)" + g + R"(,"size":"10"})", "positive integer"},
      {R"({"url":"http://h/x",)" + g + R"(,"architecture":"x86 64"})", "architecture"},
      {R"({"url":"http://h/x",)" + g + R"(,"description":")" + std::string(256, 'd') + "\"}",
       "description"},
      {R"({"url":"http://h/x",)" + g + R"(,"description":"a\nb"})", "description"},
      {R"({"url":"http://h/x",)" + g + R"(,"color":"red"})", "unknown key \"color\""},
  };
  for (const auto& c : cases) {
    auto r = parse_image_request(c.body);
    ASSERT_FALSE(r) << c.body;
    EXPECT_NE(r.error().message.find(c.error), std::string::npos)
        << c.body.substr(0, 80) << " -> " << r.error().message;
  }
}

TEST(ServeRequest, GuidsAndContentUrl) {
  EXPECT_TRUE(valid_guid("a"));
  EXPECT_TRUE(valid_guid(std::string(128, 'z')));
  EXPECT_FALSE(valid_guid(""));
  EXPECT_FALSE(valid_guid(std::string(129, 'z')));
  EXPECT_FALSE(valid_guid("a%2fb"));
  EXPECT_EQ(content_url("http://h/x#sha512=" + kSha), "http://h/x");
  EXPECT_EQ(content_url("http://h/x"), "http://h/x");
}

TEST(ServeRequest, RedactUrl) {
  const struct {
    const char* url;
    const char* shown;
  } cases[] = {
      {"http://h/x.img", "http://h/x.img"},
      {"https://user:pw@h:8080/x", "https://***@h:8080/x"},
      {"https://h/x?X-Amz-Signature=abc&a=b", "https://h/x?***"},
      {"http://u:p@h/x?sig=1", "http://***@h/x?***"},
      {"http://h/a@b", "http://h/a@b"},
      {"http://h?q=1", "http://h?***"},
  };
  for (const auto& c : cases) EXPECT_EQ(redact_url(c.url), c.shown) << c.url;
}

InstallRecord record(InstallState s, std::string content) {
  InstallRecord r;
  r.state = s;
  r.content = std::move(content);
  return r;
}

TEST(ServeDecision, Table) {
  using V = PostVerdict;
  const std::string a = "http://h/a", b = "http://h/b", a_sum = a + "#sha512=" + kSha;
  const struct {
    const char* what;
    std::optional<JobSummary> job;
    std::optional<InstallRecord> rec;
    std::string content;
    V verdict;
    std::string url;
  } cases[] = {
      {"nothing known", {}, {}, a, V::kStart, ""},
      {"queued, same", JobSummary{JobState::kQueued, a}, {}, a, V::kJoin, ""},
      {"downloading, same", JobSummary{JobState::kDownloading, a}, {}, a, V::kJoin, ""},
      {"running, other url", JobSummary{JobState::kUploading, a}, {}, b, V::kConflict, a},
      {"running, other sha", JobSummary{JobState::kBundling, a}, {}, a_sum, V::kConflict, a},
      {"job done, same", JobSummary{JobState::kDone, a}, {}, a, V::kAnswer, ""},
      {"job done, other", JobSummary{JobState::kDone, a_sum}, {}, b, V::kConflict, a},
      {"job failed, no record", JobSummary{JobState::kFailed, a}, {}, b, V::kStart, ""},
      {"job failed, record done elsewhere", JobSummary{JobState::kFailed, b},
       record(InstallState::kDone, a), b, V::kConflict, a},
      {"record done, same", {}, record(InstallState::kDone, a), a, V::kAnswer, ""},
      {"record done, other", {}, record(InstallState::kDone, a), b, V::kConflict, a},
      {"record failed, other", {}, record(InstallState::kFailed, a), b, V::kStart, ""},
      {"record in progress (crash), same",
       {},
       record(InstallState::kInProgress, a),
       a,
       V::kStart,
       ""},
      {"record in progress (crash), other",
       {},
       record(InstallState::kInProgress, a),
       b,
       V::kStart,
       ""},
  };
  for (const auto& c : cases) {
    PostDecision d = decide_post(c.job, c.rec, c.content);
    EXPECT_EQ(d.verdict, c.verdict) << c.what;
    EXPECT_EQ(d.registered_url, c.url) << c.what;
  }
}

TEST(ServeSteps, StageOfStep) {
  const struct {
    const char* step;
    std::optional<JobState> state;
  } cases[] = {
      {"download", JobState::kDownloading},
      {"Downloading image", JobState::kDownloading},
      {"upload", JobState::kUploading},
      {"register", JobState::kRegistering},
      {"commit", JobState::kRegistering},
      {"unpack", JobState::kBundling},
      {"convert", JobState::kBundling},
      {"kernel", JobState::kBundling},
      {"machine", JobState::kBundling},
      {"lookup", std::nullopt},
      {"lock", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c : cases) EXPECT_EQ(stage_of_step(c.step), c.state) << c.step;
  EXPECT_EQ(stage_of_step("downloading"), JobState::kDownloading);
  EXPECT_EQ(stage_of_step("checking"), JobState::kBundling);
  const struct {
    const char* line;
    std::optional<JobState> state;
  } lines[] = {
      {"Downloading http://h/x", JobState::kDownloading},
      {"Checked http://h/x: sha512 ok", JobState::kBundling},
      {"Converting the qcow2 image to raw", JobState::kBundling},
      {"Bundling kernel: vmlinuz", JobState::kBundling},
      {"Checking bucket: b", JobState::kUploading},
      {"Uploading part: x.part.00", JobState::kUploading},
      {"Uploaded image as b/x.manifest.xml", JobState::kRegistering},
      {"Registered kernel image eki-1", std::nullopt},
      {"warning: Uploading", std::nullopt},
      {"", std::nullopt},
  };
  for (const auto& c : lines) EXPECT_EQ(stage_of_log(c.line), c.state) << c.line;
  EXPECT_STREQ(job_state_name(JobState::kRegistering), "registering");
  EXPECT_TRUE(job_active(JobState::kQueued));
  EXPECT_FALSE(job_active(JobState::kFailed));
}

DownloadEntry entry(std::string name, std::uint64_t bytes, std::int64_t mtime, bool active = false,
                    std::uint64_t reserved = 0) {
  return {std::move(name), bytes, mtime, active, reserved};
}

TEST(ServeSpace, EvictsOldestFinishedFirst) {
  const struct {
    const char* what;
    std::vector<DownloadEntry> entries;
    std::uint64_t cap;
    std::vector<std::string> remove;
    bool fits;
  } cases[] = {
      {"empty", {}, 10, {}, true},
      {"under the cap", {entry("a", 4, 1), entry("b", 5, 2)}, 10, {}, true},
      {"exactly the cap", {entry("a", 5, 1), entry("b", 5, 2)}, 10, {}, true},
      {"oldest goes", {entry("new", 6, 9), entry("old", 6, 1)}, 10, {"old"}, true},
      {"as many as needed, oldest first",
       {entry("c", 3, 3), entry("a", 3, 1), entry("b", 3, 2), entry("d", 3, 4)},
       7,
       {"a", "b"},
       true},
      {"same mtime: by name", {entry("y", 6, 1), entry("x", 6, 1)}, 10, {"x"}, true},
      {"active never goes", {entry("run", 8, 1, true), entry("done", 4, 5)}, 10, {"done"}, true},
      {"reservation counts",
       {entry("run", 1, 9, true, 8), entry("d1", 2, 1), entry("d2", 2, 2)},
       10,
       {"d1"},
       true},
      {"a reservation larger than the cap cannot fit",
       {entry("new", 0, 9, true, 11), entry("old", 2, 1)},
       10,
       {"old"},
       false},
      {"running downloads fill it",
       {entry("r1", 6, 1, true), entry("r2", 6, 2, true)},
       10,
       {},
       false},
  };
  for (const auto& c : cases) {
    SpacePlan p = plan_download_space(c.entries, c.cap);
    EXPECT_EQ(p.remove, c.remove) << c.what;
    EXPECT_EQ(p.fits, c.fits) << c.what;
    if (p.fits) {
      EXPECT_LE(p.total_after, c.cap) << c.what;
    }
  }
}

TEST(ServeTestMode, StableIdsFromTheGuid) {
  ImageIds a = test_mode_ids("site-guid-1", "", "");
  ImageIds again = test_mode_ids("site-guid-1", "", "");
  ImageIds other = test_mode_ids("site-guid-2", "", "");
  EXPECT_EQ(a.emi, again.emi);
  EXPECT_EQ(a.eki, again.eki);
  EXPECT_NE(a.emi, other.emi);
  // sha256("abc") = ba7816bf 8f01cfea 414140de …
  ImageIds abc = test_mode_ids("abc", "", "");
  EXPECT_EQ(abc.emi, "emi-ba7816bf");
  EXPECT_EQ(abc.eki, "eki-8f01cfea");
  EXPECT_EQ(abc.eri, "eri-414140de");
  ImageIds given = test_mode_ids("abc", "eki-11111111", "eri-22222222");
  EXPECT_EQ(given.eki, "eki-11111111");
  EXPECT_EQ(given.eri, "eri-22222222");
  EXPECT_EQ(given.emi, "emi-ba7816bf");
}

TEST(ServeAuth, BearerTable) {
  const struct {
    const char* header;
    Auth verdict;
  } cases[] = {
      {"", Auth::kMissing},
      {"Bearer", Auth::kMissing},
      {"Bearer ", Auth::kMissing},
      {"Basic c2VjcmV0", Auth::kMissing},
      {"Bearer secret", Auth::kOk},
      {"bearer   secret ", Auth::kOk},
      {"BEARER secret", Auth::kOk},
      {"Bearer secre", Auth::kWrong},
      {"Bearer secrett", Auth::kWrong},
      {"Bearer SECRET", Auth::kWrong},
  };
  for (const auto& c : cases)
    EXPECT_EQ(authorize_bearer(c.header, "secret"), c.verdict) << c.header;
}

TEST(ServeConfig, SizesAndFile) {
  EXPECT_EQ(*parse_space("10G"), 10ull << 30);
  EXPECT_EQ(*parse_space("512M"), 512ull << 20);
  EXPECT_EQ(*parse_space("64K"), 64ull << 10);
  EXPECT_EQ(*parse_space("4096"), 4096u);
  EXPECT_FALSE(parse_space("0"));
  EXPECT_FALSE(parse_space("lots"));
  EXPECT_FALSE(parse_space("-5G"));

  auto dir = std::filesystem::temp_directory_path() / ("tusk-serve-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto write = [&](const std::string& text) {
    std::ofstream((dir / "c.yaml").string()) << text;
    return load_serve_config((dir / "c.yaml").string());
  };
  auto ok = write(
      "other: {x: 1}\nserve:\n  listen: 127.0.0.1:9000\n  token_file: tok\n  download_space: 2G\n"
      "  parallel: 3\n  test_mode: true\n  bucket: b\n  kernel: eki-00000001\n");
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(*ok->listen, "127.0.0.1:9000");
  EXPECT_EQ(*ok->token_file, (dir / "tok").string());
  EXPECT_EQ(*ok->download_space, 2ull << 30);
  EXPECT_EQ(*ok->parallel, 3);
  EXPECT_TRUE(*ok->test_mode);
  EXPECT_FALSE(ok->ramdisk);
  const struct {
    const char* yaml;
    const char* error;
  } bad[] = {
      {"serve:\n  listne: x\n", "c.yaml:2:3: unknown key serve.listne"},
      {"serve:\n  parallel: 0\n", "serve.parallel must be 1..64"},
      {"serve:\n  parallel: many\n", "serve.parallel must be 1..64"},
      {"serve:\n  test_mode: maybe\n", "test_mode must be true or false"},
      {"serve:\n  download_space: big\n", "download space"},
      {"serve:\n  listen: [a, b]\n", "must be a scalar"},
      {"serve: [1]\n", "serve must be a mapping"},
      {"serve: {listen: x\n", "c.yaml:"},
  };
  for (const auto& c : bad) {
    auto r = write(c.yaml);
    ASSERT_FALSE(r) << c.yaml;
    EXPECT_NE(r.error().message.find(c.error), std::string::npos) << r.error().message;
  }
  EXPECT_FALSE(load_serve_config((dir / "absent.yaml").string()));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace installer
