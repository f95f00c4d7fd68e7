// proxy/access_log.cc: the combined and JSON lines (tables, hostile client strings: quotes,
// control bytes, invalid UTF-8, credentials in URLs), and the file: buffering, reopen after a
// rename (logrotate), "off", errors.
#include "proxy/access_log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace proxy {
namespace {

using nlohmann::json;

constexpr std::int64_t kNoon = 1714903200123;  // 2024-05-05T10:00:00.123Z

AccessEntry typical() {
  AccessEntry e;
  e.unix_ms = kNoon;
  e.client = "192.0.2.7";
  e.method = "GET";
  e.target = "/images/x.tgz";
  e.minor = 1;
  e.status = 206;
  e.bytes = 100;
  e.outcome = "MISS";
  e.range = "bytes=0-99";
  e.referer = "";
  e.user_agent = "curl/7.88.1";
  e.upstream_ms = 12.3456;
  e.total_ms = 15;
  return e;
}

TEST(LoggableUrl, DropsWhatMayCarryACredential) {
  const struct {
    const char* in;
    const char* out;
  } cases[] = {
      {"/images/x.tgz", "/images/x.tgz"},
      {"/a?X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F", "/a?X-Amz-Signature&X-Amz-Credential"},
      {"/a?Signature=s&AWSAccessKeyId=AKIA&Expires=1", "/a?Signature&AWSAccessKeyId&Expires"},
      {"/a?", "/a?"},
      {"/a?flag", "/a?flag"},
      {"/a?x=1&&y=2", "/a?x&&y"},
      {"/a#frag=secret", "/a"},
      {"http://user:pass@edge:8080/a?t=1", "http://edge:8080/a?t"},
      {"https://tok@edge", "https://edge"},
      {"http://edge/a@b", "http://edge/a@b"},  // '@' in the path is not userinfo
      {"", ""},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(loggable_url(c.in), c.out) << c.in;
  }
}

TEST(AccessLogFormat, Combined) {
  EXPECT_EQ(format_combined(typical()),
            "192.0.2.7 - - [05/May/2024:10:00:00 +0000] \"GET /images/x.tgz HTTP/1.1\" 206 100 "
            "\"-\" \"curl/7.88.1\" MISS range=\"bytes=0-99\" upstream=0.012 time=0.015\n");

  AccessEntry hit = typical();
  hit.minor = 0;
  hit.status = 200;
  hit.outcome = "HIT";
  hit.range = "";
  hit.referer = "http://u:p@example.org/page?token=secret";
  hit.upstream_ms = -1;
  EXPECT_EQ(format_combined(hit),
            "192.0.2.7 - - [05/May/2024:10:00:00 +0000] \"GET /images/x.tgz HTTP/1.0\" 200 100 "
            "\"http://example.org/page?token\" \"curl/7.88.1\" HIT range=\"-\" upstream=- "
            "time=0.015\n");

  // An answer given without a request (the head could not be read): our reason, no client
  // bytes.
  AccessEntry bad;
  bad.unix_ms = kNoon;
  bad.client = "2001:db8::1";
  bad.status = 400;
  bad.outcome = "ERROR";
  bad.reason = "two Content-Length fields";
  EXPECT_EQ(format_combined(bad),
            "2001:db8::1 - - [05/May/2024:10:00:00 +0000] \"- -\" 400 0 \"-\" \"-\" ERROR "
            "range=\"-\" upstream=- time=- reason=\"two Content-Length fields\"\n");
}

TEST(AccessLogFormat, Json) {
  EXPECT_EQ(format_json(typical()),
            "{\"time\":\"2024-05-05T10:00:00.123Z\",\"client\":\"192.0.2.7\",\"method\":\"GET\","
            "\"target\":\"/images/x.tgz\",\"protocol\":\"HTTP/1.1\",\"status\":206,\"bytes\":100,"
            "\"outcome\":\"MISS\",\"range\":\"bytes=0-99\",\"referer\":\"\","
            "\"user_agent\":\"curl/7.88.1\",\"upstream_time\":0.012,\"request_time\":0.015}\n");
  AccessEntry e = typical();
  e.upstream_ms = -1;
  e.total_ms = -1;
  e.reason = "why";
  const json j = json::parse(format_json(e));
  EXPECT_TRUE(j["upstream_time"].is_null());
  EXPECT_TRUE(j["request_time"].is_null());
  EXPECT_EQ(j["reason"], "why");
  EXPECT_FALSE(json::parse(format_json(typical())).contains("reason"));
}

// The key id of a presigned URL or token (issue 15) is the remote-user field (%u) of combined
// lines and "user" in JSON; client bytes, so escaped into one field.
TEST(AccessLogFormat, UserIsTheKeyId) {
  AccessEntry e = typical();
  e.user = "AKIDEXAMPLE";
  EXPECT_TRUE(format_combined(e).starts_with("192.0.2.7 - AKIDEXAMPLE [05/May/2024:10:00:00 "))
      << format_combined(e);
  EXPECT_NE(format_json(e).find(",\"user\":\"AKIDEXAMPLE\""), std::string::npos);
  e.user = "a b\"c\\\x01\xff";
  EXPECT_TRUE(format_combined(e).starts_with("192.0.2.7 - a\\x20b\\x22c\\x5C\\x01\\xFF ["))
      << format_combined(e);
  e.user = "";
  EXPECT_TRUE(format_combined(e).starts_with("192.0.2.7 - - ["));
  EXPECT_EQ(format_json(e).find("\"user\""), std::string::npos);
}

TEST(AccessLogFormat, BeforeTheEpochAndMilliseconds) {
  AccessEntry e = typical();
  e.unix_ms = -1;  // 1969-12-31T23:59:59.999Z: the second is floored, not truncated
  EXPECT_EQ(json::parse(format_json(e))["time"], "1969-12-31T23:59:59.999Z");
  EXPECT_NE(format_combined(e).find("[31/Dec/1969:23:59:59 +0000]"), std::string::npos);
}

// Whatever a client sends, a line is one line of valid UTF-8, every client string is escaped
// and bounded, and the JSON parses to exactly the text of the combined line's fields.
TEST(AccessLogFormat, HostileClientStrings) {
  const std::string hostile[] = {
      std::string("a\"b\\c"),                           // quote, backslash
      std::string("line\nbreak\r\x1b[31mred\x7f", 20),  // controls, a terminal escape
      std::string("\xff\xc0\xaf bad \xed\xa0\x80"),     // invalid UTF-8, a surrogate
      std::string("nul\0byte", 8),
      std::string("caf\xc3\xa9 \xe2\x80\xa8 \xc2\x85"),  // valid UTF-8, U+2028, a C1 control
      std::string(5000, 'k'),                            // long
      std::string("\"},{\"status\":200,\"x\":\""),       // a JSON injection attempt
  };
  for (const std::string& h : hostile) {
    AccessEntry e = typical();
    e.method = h;
    const std::string target = "/p/" + h + "?sig=" + h;
    e.target = target;
    e.range = h;
    e.referer = h;
    e.user_agent = h;
    e.client = h;
    e.outcome = h;
    e.reason = h;
    for (const std::string& line : {format_combined(e), format_json(e)}) {
      ASSERT_EQ(line.back(), '\n');
      EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
      EXPECT_EQ(line.find('\r'), std::string::npos) << line;
      for (unsigned char c : line.substr(0, line.size() - 1)) {
        EXPECT_TRUE(c >= 0x20 && c != 0x7f) << line;
      }
      EXPECT_LT(line.size(), 5000u);
      EXPECT_EQ(line.find("sig="), std::string::npos) << "a query value was logged";
    }
    const std::string combined = format_combined(e);
    // Quotes inside a quoted field are escaped: the fields are exactly the quoted runs.
    const std::size_t quotes = std::count(combined.begin(), combined.end(), '"');
    EXPECT_EQ(quotes, 10u) << combined;
    json j;
    ASSERT_NO_THROW(j = json::parse(format_json(e))) << format_json(e);
    EXPECT_EQ(j.size(), 14u);
    EXPECT_EQ(j["status"], 206);
    const std::string ua = j["user_agent"];
    EXPECT_NE(combined.find("\"" + ua + "\""), std::string::npos) << ua << "\n" << combined;
  }
}

// ---------------------------------------------------------------- the file

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A fresh directory and a log open at dir/access.log.
struct OpenLog {
  std::filesystem::path dir;
  std::filesystem::path path;
  std::shared_ptr<AccessLog> log;
};

OpenLog open_log(const char* name, conf::LogFormat format) {
  OpenLog o;
  o.dir = std::filesystem::temp_directory_path() /
          (std::string("tusk-access-log-") + name + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(o.dir);
  std::filesystem::create_directories(o.dir);
  o.path = o.dir / "access.log";
  auto opened = AccessLog::open(o.path.string(), format);
  EXPECT_TRUE(opened) << opened.error();
  if (opened) {
    o.log = std::move(*opened);
  }
  return o;
}

TEST(AccessLogFile, OffIsNull) {
  auto log = AccessLog::open("off", conf::LogFormat::kCombined);
  ASSERT_TRUE(log);
  EXPECT_EQ(*log, nullptr);
}

TEST(AccessLogFile, UnopenableIsAnError) {
  auto log = AccessLog::open("/nonexistent-dir/x/access.log", conf::LogFormat::kCombined);
  ASSERT_FALSE(log);
  EXPECT_NE(log.error().find("/nonexistent-dir/x/access.log"), std::string::npos);
}

TEST(AccessLogFile, BufferedUntilFlushThenReopenedAfterRename) {
  OpenLog o = open_log("reopen", conf::LogFormat::kJson);
  ASSERT_NE(o.log, nullptr);
  EXPECT_EQ(std::filesystem::status(o.path).permissions() & std::filesystem::perms::others_all,
            std::filesystem::perms::none);

  AccessEntry e = typical();
  e.target = "/first";
  o.log->write(e);
  o.log->flush();
  EXPECT_NE(slurp(o.path).find("\"/first\""), std::string::npos);

  // logrotate: rename, then SIGUSR1 (reopen). A line written before the reopen still goes
  // to the renamed file; the next one to a new file at the configured path.
  const auto rotated = o.dir / "access.log.1";
  std::filesystem::rename(o.path, rotated);
  e.target = "/second";
  o.log->write(e);
  ASSERT_TRUE(o.log->reopen());
  e.target = "/third";
  o.log->write(e);
  o.log->flush();
  const std::string old_text = slurp(rotated);
  const std::string new_text = slurp(o.path);
  EXPECT_NE(old_text.find("\"/first\""), std::string::npos);
  EXPECT_NE(old_text.find("\"/second\""), std::string::npos);
  EXPECT_EQ(old_text.find("\"/third\""), std::string::npos);
  EXPECT_EQ(new_text.find("\"/second\""), std::string::npos);
  EXPECT_NE(new_text.find("\"/third\""), std::string::npos);
  for (const std::string& text : {old_text, new_text}) {
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
      json parsed;
      EXPECT_NO_THROW(parsed = json::parse(line)) << line;
    }
  }

  // Reopening a path that cannot be opened keeps the old file.
  std::filesystem::remove_all(o.dir);
  EXPECT_FALSE(o.log->reopen());
  o.log->write(e);  // goes to the (unlinked) old file: no crash, no error
  o.log.reset();
}

TEST(AccessLogFile, ManyLinesReachTheFileWithoutAFlushAndOnClose) {
  OpenLog o = open_log("many", conf::LogFormat::kCombined);
  ASSERT_NE(o.log, nullptr);
  const AccessEntry e = typical();
  const std::size_t line = format_combined(e).size();
  const std::size_t n = AccessLog::kFlushBytes / line + 1;
  for (std::size_t i = 0; i < n; ++i) {
    o.log->write(e);
  }
  // The buffer passed kFlushBytes: written at once, not a second later.
  EXPECT_EQ(slurp(o.path).size(), n * line);
  o.log->write(e);
  o.log.reset();  // closing writes what is buffered
  EXPECT_EQ(slurp(o.path).size(), (n + 1) * line);
  std::filesystem::remove_all(o.dir);
}

// Workers write lines while the writer thread flushes and a signal reopens: every line arrives
// whole, exactly once (run under TSan too).
TEST(AccessLogFile, ConcurrentWritersAndReopen) {
  OpenLog o = open_log("concurrent", conf::LogFormat::kCombined);
  ASSERT_NE(o.log, nullptr);
  constexpr int kThreads = 4;
  constexpr int kEach = 5000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&o] {
      AccessEntry e = typical();
      for (int i = 0; i < kEach; ++i) {
        o.log->write(e);
      }
    });
  }
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(o.log->reopen());
  }
  for (auto& th : threads) {
    th.join();
  }
  o.log.reset();
  const std::string text = slurp(o.path);
  const std::string one = format_combined(typical());
  ASSERT_EQ(text.size(), one.size() * kThreads * kEach);
  for (std::size_t at = 0; at < text.size(); at += one.size()) {
    ASSERT_EQ(text.compare(at, one.size(), one), 0) << at;
  }
  std::filesystem::remove_all(o.dir);
}

}  // namespace
}  // namespace proxy
