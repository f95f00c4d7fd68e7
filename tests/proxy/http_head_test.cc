// Table tests of the strict request head parser and the chunked body decoder (proxy/http_head.h).
#include "proxy/http_head.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

#include "proxy/http_conn.h"

namespace proxy {
namespace {

using State = HeadParse::State;

struct Case {
  const char* name;
  std::string bytes;
  State state;
  int status;  // kError: the status; kDone: 0
};

class HeadTable : public ::testing::TestWithParam<Case> {};

TEST_P(HeadTable, Parses) {
  const Case& c = GetParam();
  HeadParse p = parse_request_head(c.bytes, HeadLimits{});
  ASSERT_EQ(static_cast<int>(p.state), static_cast<int>(c.state)) << p.error.message;
  if (c.state == State::kError) {
    EXPECT_EQ(p.error.status, c.status) << p.error.message;
    EXPECT_FALSE(p.error.reason.empty());
  }
}

const std::string kHost = "Host: a\r\n";

INSTANTIATE_TEST_SUITE_P(
    Rfc9112, HeadTable,
    ::testing::Values(
        Case{"simple", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", State::kDone, 0},
        Case{"bare_lf", "GET / HTTP/1.1\nHost: a\n\n", State::kDone, 0},
        Case{"leading_crlf", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", State::kDone, 0},
        Case{"http10_no_host", "GET / HTTP/1.0\r\n\r\n", State::kDone, 0},
        Case{"incomplete", "GET / HTTP/1.1\r\nHost: a\r\n", State::kIncomplete, 0},
        Case{"empty", "", State::kIncomplete, 0},
        Case{"unknown_method_parses", "PURGE / HTTP/1.1\r\nHost: a\r\n\r\n", State::kDone, 0},
        Case{"no_host_11", "GET / HTTP/1.1\r\nX: y\r\n\r\n", State::kError, 400},
        Case{"two_hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", State::kError, 400},
        Case{"host_with_slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", State::kError, 400},
        Case{"host_with_at", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", State::kError, 400},
        Case{"host_v6_port", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", State::kDone, 0},
        Case{"empty_host_ok", "GET / HTTP/1.1\r\nHost:\r\n\r\n", State::kDone, 0},
        Case{"version_19", "GET / HTTP/1.9\r\nHost: a\r\n\r\n", State::kError, 505},
        Case{"version_20", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", State::kError, 505},
        Case{"version_garbage", "GET / HTTP/1.1x\r\nHost: a\r\n\r\n", State::kError, 400},
        Case{"version_lower", "GET / http/1.1\r\nHost: a\r\n\r\n", State::kError, 400},
        Case{"http09", "GET /\r\n\r\n", State::kError, 400},
        Case{"double_space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", State::kError, 400},
        Case{"tab_in_line", "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", State::kError, 400},
        Case{"bad_method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", State::kError, 400},
        Case{"nul_in_target", std::string("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n", 28), State::kError,
             400},
        Case{"space_before_colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
             State::kError, 400},
        Case{"tab_before_colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length\t: 5\r\n\r\n",
             State::kError, 400},
        Case{"no_colon", "GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n", State::kError, 400},
        Case{"obs_fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", State::kError, 400},
        Case{"bare_cr_field", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", State::kError, 400},
        Case{"ctl_in_value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01\r\n\r\n", State::kError, 400},
        Case{"cl_ok", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", State::kDone, 0},
        Case{"cl_same_twice",
             "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
             State::kDone, 0},
        Case{"cl_list_same", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\n",
             State::kDone, 0},
        Case{"cl_differ",
             "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 78\r\n\r\n",
             State::kError, 400},
        Case{"cl_list_differ", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n",
             State::kError, 400},
        Case{"cl_negative", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
             State::kError, 400},
        Case{"cl_plus", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", State::kError,
             400},
        Case{"cl_huge", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
             State::kError, 400},
        Case{"cl_empty", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", State::kError,
             400},
        Case{"te_chunked", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
             State::kDone, 0},
        Case{"te_gzip", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
             State::kError, 400},
        Case{"te_chunked_twice",
             "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
             State::kError, 400},
        Case{"te_xchunked", "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
             State::kError, 400},
        Case{"te_and_cl",
             "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
             State::kError, 400},
        Case{"te_in_10", "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", State::kError,
             400},
        Case{"long_target", "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n",
             State::kError, 414},
        Case{"long_line_incomplete", "GET /" + std::string(9000, 'a'), State::kError, 414},
        Case{"head_too_large",
             "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(40000, 'a') + "\r\n\r\n",
             State::kError, 431},
        Case{"head_too_large_incomplete",
             "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(40000, 'a'), State::kError, 431}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

TEST(Head, TooManyFields) {
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\n";
  for (int i = 0; i < 101; ++i) {
    req += "X" + std::to_string(i) + ": v\r\n";
  }
  req += "\r\n";
  HeadParse p = parse_request_head(req, HeadLimits{});
  ASSERT_EQ(p.state, State::kError);
  EXPECT_EQ(p.error.status, 431);
}

TEST(Head, FieldsAndFraming) {
  std::string req =
      "GET /a?b HTTP/1.1\r\nHost: example\r\nRange:  bytes=0-1 \r\nContent-Length: 3\r\n\r\nabcGET";
  HeadParse p = parse_request_head(req, HeadLimits{});
  ASSERT_EQ(p.state, State::kDone);
  EXPECT_EQ(p.consumed, req.size() - 6);  // the body and the next request are not the head's
  EXPECT_EQ(p.head.method, "GET");
  EXPECT_EQ(p.head.target, "/a?b");
  EXPECT_EQ(p.head.minor, 1);
  ASSERT_NE(p.head.find("range"), nullptr);
  EXPECT_EQ(*p.head.find("RANGE"), "bytes=0-1");
  EXPECT_EQ(p.head.find("If-Match"), nullptr);
  EXPECT_EQ(p.head.body, BodyFraming::kLength);
  EXPECT_EQ(p.head.content_length, 3u);
  EXPECT_TRUE(p.head.keep_alive);
}

TEST(Head, KeepAlive) {
  struct {
    const char* req;
    bool keep;
  } table[] = {
      {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
      {"GET / HTTP/1.1\r\nHost: a\r\nConnection: TE, Close\r\n\r\n", false},
      {"GET / HTTP/1.0\r\n\r\n", false},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true},
  };
  for (const auto& row : table) {
    HeadParse p = parse_request_head(row.req, HeadLimits{});
    ASSERT_EQ(p.state, State::kDone) << row.req;
    EXPECT_EQ(p.head.keep_alive, row.keep) << row.req;
  }
}

TEST(Head, FindHeadEndResumes) {
  std::string req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
  for (std::size_t cut = 0; cut < req.size(); ++cut) {
    std::string_view part(req.data(), cut);
    EXPECT_EQ(find_head_end(part), 0u) << cut;
    EXPECT_EQ(find_head_end(req, cut), req.size()) << cut;
  }
  EXPECT_EQ(find_head_end("\r\n\r\n"), 0u);  // blank lines before a request are not a head
}

TEST(Chunked, DecodesAcrossFeeds) {
  const std::string body = "4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nTrailer: x\r\n\r\nNEXT";
  for (std::size_t step = 1; step <= body.size(); ++step) {
    ChunkedBody dec(1024);
    std::string out;
    std::size_t at = 0;
    ChunkedBody::Step st;
    while (at < body.size()) {
      std::string_view piece = std::string_view(body).substr(at, step);
      st = dec.feed(piece, out);
      ASSERT_NE(st.state, ChunkedBody::State::kError) << st.error;
      at += st.consumed;
      if (st.state == ChunkedBody::State::kDone) {
        break;
      }
    }
    EXPECT_EQ(st.state, ChunkedBody::State::kDone) << step;
    EXPECT_EQ(out, "Wikipedia");
    EXPECT_EQ(body.substr(at), "NEXT") << step;
  }
}

TEST(Chunked, LeadingZerosAndExtensions) {
  ChunkedBody dec(1024);
  std::string out;
  ChunkedBody::Step st = dec.feed("0004 ;name=\"v\"\r\nWiki\r\n00\r\n\r\n", out);
  EXPECT_EQ(st.state, ChunkedBody::State::kDone) << (st.error ? st.error : "");
  EXPECT_EQ(out, "Wiki");
}

TEST(Chunked, Errors) {
  struct {
    const char* body;
    bool too_large;
  } table[] = {
      {"zz\r\n", false},                    // not hex
      {"4\r\nWikiX\r\n", false},            // data longer than its size
      {"1ffffffff\r\n", true},              // beyond max_body
      {"4\rx\n", false},                    // bare CR
      {"10000000000000000\r\n", false},     // more hex digits than any size
      {"4\nWiki\r\n", false},               // bare LF ends no line inside a body
      {"4;a\x01b\r\nWiki\r\n", false},      // control byte in an extension
      {"5 \r\nhello\r\n", false},           // whitespace without an extension
      {"0\r\nno colon\r\n\r\n", false},     // malformed trailer
      {"0\r\nBad Name: x\r\n\r\n", false},  // malformed trailer name
  };
  for (const auto& row : table) {
    ChunkedBody dec(1024);
    std::string out;
    ChunkedBody::Step st = dec.feed(row.body, out);
    EXPECT_EQ(st.state, ChunkedBody::State::kError) << row.body;
    EXPECT_EQ(st.too_large, row.too_large) << row.body;
  }
  ChunkedBody dec(1024);
  std::string out;
  std::string line(5000, '1');
  EXPECT_EQ(dec.feed(line, out).state, ChunkedBody::State::kError);  // a size line without end
}

// A bounded random-input property test (the in-process half of the front's fuzzing; the
// raw-socket half is tests/integration/test_hostile.py): mutated and random heads never crash
// (ASan/UBSan watch), errors carry a status the front sends, a head that parses reports what
// it consumed, and feeding a chunked body in random pieces decodes what feeding it whole does.
TEST(HeadFuzz, RandomInputsKeepTheContract) {
  std::mt19937 rng(20261204);
  const std::string seeds[] = {
      "GET /catalog.json HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\n\r\n",
      "HEAD /x HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
      "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
  };
  const std::string alphabet =
      "GETHOST/:; \t\r\n0123456789,-=chunkedContent-LengthTransfer\x00\xff";
  for (int i = 0; i < 20000; ++i) {
    std::string in = seeds[rng() % 3];
    int edits = static_cast<int>(rng() % 6);
    for (int e = 0; e < edits && !in.empty(); ++e) {
      std::size_t at = rng() % in.size();
      switch (rng() % 3) {
        case 0:
          in[at] = alphabet[rng() % alphabet.size()];
          break;
        case 1:
          in.insert(at, 1, alphabet[rng() % alphabet.size()]);
          break;
        default:
          in.erase(at, 1);
      }
    }
    HeadParse p = parse_request_head(in, HeadLimits{});
    if (p.state == State::kError) {
      EXPECT_TRUE(p.error.status == 400 || p.error.status == 414 || p.error.status == 431 ||
                  p.error.status == 505)
          << p.error.status;
    } else if (p.state == State::kDone) {
      ASSERT_LE(p.consumed, in.size());
      EXPECT_EQ(find_head_end(in), p.consumed);
      EXPECT_FALSE(p.head.method.empty());
      EXPECT_TRUE(p.head.minor == 0 || p.head.minor == 1);
      // What follows the head decodes the same whole or in pieces.
      if (p.head.body == BodyFraming::kChunked) {
        std::string_view rest = std::string_view(in).substr(p.consumed);
        ChunkedBody whole(1024);
        std::string a;
        ChunkedBody::Step w = whole.feed(rest, a);
        ChunkedBody pieces(1024);
        std::string b;
        std::size_t at = 0;
        ChunkedBody::Step st;
        while (at < rest.size()) {
          std::size_t n = 1 + rng() % 7;
          st = pieces.feed(rest.substr(at, n), b);
          at += st.consumed;
          if (st.state != ChunkedBody::State::kMore) {
            break;
          }
        }
        if (w.state == ChunkedBody::State::kDone) {
          EXPECT_EQ(st.state, ChunkedBody::State::kDone);
          EXPECT_EQ(a, b);
          EXPECT_EQ(at, w.consumed);
        }
      }
    }
  }
}

TEST(RenderResponseHead, StatusLineFieldsInOrderAndTheConnectionToken) {
  const Headers fields = {{"Content-Length", "4096"}, {"ETag", "\"e\""}, {"X-Cache", "HIT"}};
  struct Case {
    ConnectionToken token;
    std::string want_tail;
  };
  const Case cases[] = {
      {ConnectionToken::kNone, "X-Cache: HIT\r\n\r\n"},
      {ConnectionToken::kClose, "X-Cache: HIT\r\nConnection: close\r\n\r\n"},
      {ConnectionToken::kKeepAlive, "X-Cache: HIT\r\nConnection: keep-alive\r\n\r\n"},
  };
  for (const Case& c : cases) {
    const std::string h = render_response_head(206, "Partial Content", fields, c.token);
    EXPECT_EQ(h.rfind("HTTP/1.1 206 Partial Content\r\nContent-Length: 4096\r\nETag: \"e\"\r\n", 0),
              0u)
        << h;
    EXPECT_EQ(h.substr(h.size() - c.want_tail.size()), c.want_tail) << h;
  }
  EXPECT_EQ(render_response_head(304, "Not Modified", {}, ConnectionToken::kNone),
            "HTTP/1.1 304 Not Modified\r\n\r\n");
}

}  // namespace
}  // namespace proxy
