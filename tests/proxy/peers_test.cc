// Peers: rendezvous ownership (stable, balanced, minimal movement when members change), the
// fault table, and the origin that asks the owner first and falls back to the upstream. The
// origins here are scripts: each call's callbacks are kept and run by the test.
#include "proxy/peers.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "proxy/metrics.h"

namespace proxy {
namespace {

std::vector<std::string> objects(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    out.push_back("http://s3.example:8000/starter-emis/image-" + std::to_string(i) + ".tgz");
  }
  return out;
}

TEST(Rendezvous, ScoreIsFixedAcrossVersions) {
  // The fleet depends on every edge, every version, computing the same owner.
  EXPECT_EQ(rendezvous_score("edge1", "b/k"), rendezvous_score("edge1", "b/k"));
  EXPECT_NE(rendezvous_score("ab", "c"), rendezvous_score("a", "bc"));
  EXPECT_NE(rendezvous_score("edge1", "b/k"), rendezvous_score("edge2", "b/k"));
  // Pinned values (computed by an independent Python implementation of FNV-1a + splitmix64):
  // changing the hash would silently reshuffle every fleet's cache.
  EXPECT_EQ(rendezvous_score("edge1", "b/k"), 3297091967633692862ull);
  EXPECT_EQ(rendezvous_score("edge2", "b/k"), 423546508744516843ull);
  const std::vector<std::string> members{"edge1", "edge2", "edge3"};
  EXPECT_EQ(owner_of(members, "a"), "edge1");
  EXPECT_EQ(owner_of(members, "b"), "edge3");
  EXPECT_EQ(owner_of(members, "c"), "edge3");
  EXPECT_EQ(owner_of(members, "d"), "edge1");
  // The order members are listed in does not matter.
  EXPECT_EQ(owner_of({"edge3", "edge1", "edge2"}, "b"), "edge3");
}

TEST(Rendezvous, SpreadsObjectsEvenly) {
  const std::vector<std::string> members{"edge1", "edge2", "edge3"};
  std::map<std::string, int> count;
  const auto all = objects(30000);
  for (const auto& o : all) {
    ++count[owner_of(members, o)];
  }
  ASSERT_EQ(count.size(), 3u);
  for (const auto& [m, n] : count) {
    EXPECT_GT(n, 9000) << m;
    EXPECT_LT(n, 11000) << m;
  }
}

TEST(Rendezvous, RemovingAMemberMovesOnlyItsObjects) {
  const std::vector<std::string> three{"edge1", "edge2", "edge3"};
  const std::vector<std::string> two{"edge1", "edge3"};
  int moved = 0;
  for (const auto& o : objects(5000)) {
    const std::string before = owner_of(three, o);
    const std::string after = owner_of(two, o);
    if (before != "edge2") {
      EXPECT_EQ(before, after) << o;
    } else {
      ++moved;
    }
  }
  EXPECT_GT(moved, 1000);
}

TEST(Rendezvous, AddingAMemberTakesAFairShareOnlyForItself) {
  const std::vector<std::string> three{"edge1", "edge2", "edge3"};
  const std::vector<std::string> four{"edge1", "edge2", "edge3", "edge4"};
  int moved = 0;
  for (const auto& o : objects(8000)) {
    const std::string before = owner_of(three, o);
    const std::string after = owner_of(four, o);
    if (before != after) {
      EXPECT_EQ(after, "edge4");
      ++moved;
    }
  }
  EXPECT_GT(moved, 1600);  // about a quarter
  EXPECT_LT(moved, 2400);
}

TEST(PeerFault, Table) {
  struct Case {
    s3::Errc code;
    PeerFault want;
  };
  const Case cases[] = {
      {s3::Errc::kNotFound, PeerFault::kPassOn},
      {s3::Errc::kForbidden, PeerFault::kPassOn},
      {s3::Errc::kAuth, PeerFault::kPassOn},
      {s3::Errc::kPreconditionFailed, PeerFault::kPassOn},
      {s3::Errc::kRangeNotSatisfiable, PeerFault::kPassOn},
      {s3::Errc::kCancelled, PeerFault::kPassOn},
      {s3::Errc::kRefused, PeerFault::kFallBackAndMarkDown},
      {s3::Errc::kTls, PeerFault::kFallBackAndMarkDown},
      {s3::Errc::kTimeout, PeerFault::kFallBackAndMarkDown},
      {s3::Errc::kProtocol, PeerFault::kFallBackAndMarkDown},
      {s3::Errc::kServer, PeerFault::kFallBack},
      {s3::Errc::kHttp, PeerFault::kFallBack},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(peer_fault(c.code), c.want) << s3::errc_name(c.code);
  }
}

// An origin whose calls are answered by the test.
class ScriptOrigin : public Origin {
 public:
  struct Sent {
    s3::Request req;
    s3::Callbacks cb;
    bool cancelled = false;
  };
  class ScriptCall : public Call {
   public:
    explicit ScriptCall(Sent* s) : s_(s) {}
    void cancel() override { s_->cancelled = true; }
    ~ScriptCall() override { s_->cancelled = true; }

   private:
    Sent* s_;
  };
  std::unique_ptr<Call> start(s3::Request req, s3::Callbacks cb) override {
    sent.push_back(std::make_unique<Sent>(Sent{std::move(req), std::move(cb)}));
    return std::make_unique<ScriptCall>(sent.back().get());
  }
  int retries() const override { return 3; }
  std::vector<std::unique_ptr<Sent>> sent;
};

struct Got {
  int heads = 0;
  std::string body;
  std::optional<conf::Result<void, s3::Error>> done;
};

s3::Callbacks record(Got& g) {
  s3::Callbacks cb;
  cb.on_head = [&g](const s3::ResponseHead&) {
    ++g.heads;
    return true;
  };
  cb.on_data = [&g](std::span<const char> d) {
    g.body.append(d.data(), d.size());
    return true;
  };
  cb.on_done = [&g](conf::Result<void, s3::Error> r) { g.done = std::move(r); };
  return cb;
}

s3::Error err(s3::Errc code) { return s3::Error{code, 0, "", "scripted"}; }

std::string header(const s3::Request& r, std::string_view name) {
  for (const auto& [k, v] : r.extra_headers) {
    if (k == name) {
      return v;
    }
  }
  return "";
}

class PeersTest : public ::testing::Test {
 protected:
  PeersTest() {
    conf::Peers c;
    c.self = "edge1";
    c.members = {{"edge1", "http://127.0.0.1:1"}, {"edge2", "http://127.0.0.1:2"}};
    c.down_for = std::chrono::seconds(60);
    peer = std::make_shared<ScriptOrigin>();
    upstream = std::make_shared<ScriptOrigin>();
    peers = std::make_unique<Peers>(
        c, std::map<std::string, std::shared_ptr<Origin>>{{"edge2", peer}}, metrics);
    origin = peers->via("edge2", upstream, "/starter-emis/a%20b.tgz", "images.example");
  }
  s3::Request request() {
    s3::Request r;
    r.bucket = "starter-emis";
    r.key = "a b.tgz";
    r.range = s3::ByteRange{0, 99};
    return r;
  }

  Metrics metrics;
  std::shared_ptr<ScriptOrigin> peer;
  std::shared_ptr<ScriptOrigin> upstream;
  std::unique_ptr<Peers> peers;
  std::shared_ptr<Origin> origin;
};

TEST_F(PeersTest, OwnerIsNulloptForSelfAndNamesTheOther) {
  int mine = 0;
  int theirs = 0;
  for (const auto& o : objects(200)) {
    auto owner = peers->owner(o);
    if (owner) {
      EXPECT_EQ(*owner, "edge2");
      ++theirs;
    } else {
      EXPECT_EQ(owner_of({"edge1", "edge2"}, o), "edge1");
      ++mine;
    }
  }
  EXPECT_GT(mine, 50);
  EXPECT_GT(theirs, 50);
}

TEST_F(PeersTest, AsksTheOwnerByPathWithTheLoopHeader) {
  Got g;
  auto call = origin->start(request(), record(g));
  ASSERT_EQ(peer->sent.size(), 1u);
  EXPECT_TRUE(upstream->sent.empty());
  const s3::Request& r = peer->sent[0]->req;
  EXPECT_EQ(r.path, "/starter-emis/a%20b.tgz");
  EXPECT_EQ(header(r, "X-Tusk-Peer"), "edge1");
  EXPECT_EQ(header(r, "Host"), "images.example");
  ASSERT_TRUE(r.range);
  EXPECT_EQ(r.range->last, 99u);
  s3::Callbacks& cb = peer->sent[0]->cb;
  EXPECT_TRUE(cb.on_head(s3::ResponseHead{206, {}}));
  EXPECT_TRUE(cb.on_data(std::span<const char>("hello", 5)));
  cb.on_done({});
  EXPECT_EQ(g.heads, 1);
  EXPECT_EQ(g.body, "hello");
  ASSERT_TRUE(g.done);
  EXPECT_TRUE(*g.done);
  EXPECT_TRUE(upstream->sent.empty());
  EXPECT_EQ(origin->retries(), 3);
  EXPECT_FALSE(origin->learns_range_mode());
}

TEST_F(PeersTest, UnreachableOwnerFallsBackAndIsSkippedWhileDown) {
  Got g;
  auto call = origin->start(request(), record(g));
  peer->sent[0]->cb.on_done(conf::unexpected(err(s3::Errc::kRefused)));
  EXPECT_FALSE(g.done);  // not told: the upstream was asked instead
  ASSERT_EQ(upstream->sent.size(), 1u);
  const s3::Request& r = upstream->sent[0]->req;
  EXPECT_TRUE(r.path.empty());
  EXPECT_EQ(r.key, "a b.tgz");
  EXPECT_EQ(header(r, "X-Tusk-Peer"), "");
  upstream->sent[0]->cb.on_head(s3::ResponseHead{206, {}});
  upstream->sent[0]->cb.on_done({});
  ASSERT_TRUE(g.done);
  EXPECT_TRUE(*g.done);
  EXPECT_EQ(g.heads, 1);

  // Down for down_for: the next request goes straight to the upstream.
  Got g2;
  auto call2 = origin->start(request(), record(g2));
  EXPECT_EQ(peer->sent.size(), 1u);
  EXPECT_EQ(upstream->sent.size(), 2u);
  // Another fill's origin shares the peer's state.
  auto other = peers->via("edge2", upstream, "/x", "");
  Got g3;
  auto call3 = other->start(request(), record(g3));
  EXPECT_EQ(peer->sent.size(), 1u);
  EXPECT_EQ(upstream->sent.size(), 3u);
}

TEST_F(PeersTest, AnswersAboutTheObjectArePassedOn) {
  for (s3::Errc code :
       {s3::Errc::kNotFound, s3::Errc::kPreconditionFailed, s3::Errc::kRangeNotSatisfiable}) {
    Got g;
    const std::size_t before = peer->sent.size();
    auto call = origin->start(request(), record(g));
    ASSERT_EQ(peer->sent.size(), before + 1);
    peer->sent.back()->cb.on_done(conf::unexpected(err(code)));
    ASSERT_TRUE(g.done);
    ASSERT_FALSE(*g.done);
    EXPECT_EQ(g.done->error().code, code);
  }
  EXPECT_TRUE(upstream->sent.empty());
}

TEST_F(PeersTest, ServerErrorFallsBackWithoutMarkingDown) {
  Got g;
  auto call = origin->start(request(), record(g));
  peer->sent[0]->cb.on_done(conf::unexpected(err(s3::Errc::kServer)));
  EXPECT_EQ(upstream->sent.size(), 1u);
  Got g2;
  auto call2 = origin->start(request(), record(g2));
  EXPECT_EQ(peer->sent.size(), 2u);  // still asked
}

TEST_F(PeersTest, BreakAfterTheHeadIsPassedOnAndMarksDown) {
  Got g;
  auto call = origin->start(request(), record(g));
  peer->sent[0]->cb.on_head(s3::ResponseHead{206, {}});
  peer->sent[0]->cb.on_data(std::span<const char>("ab", 2));
  peer->sent[0]->cb.on_done(conf::unexpected(err(s3::Errc::kProtocol)));
  ASSERT_TRUE(g.done);
  EXPECT_FALSE(*g.done);  // the fetch resumes from byte 2 ...
  EXPECT_TRUE(upstream->sent.empty());
  Got g2;
  auto call2 = origin->start(request(), record(g2));  // ... and its retry goes upstream
  EXPECT_EQ(peer->sent.size(), 1u);
  EXPECT_EQ(upstream->sent.size(), 1u);
}

TEST_F(PeersTest, CancellingStopsBothSides) {
  Got g;
  auto call = origin->start(request(), record(g));
  peer->sent[0]->cb.on_done(conf::unexpected(err(s3::Errc::kTimeout)));
  ASSERT_EQ(upstream->sent.size(), 1u);
  call.reset();
  EXPECT_TRUE(peer->sent[0]->cancelled);
  EXPECT_TRUE(upstream->sent[0]->cancelled);
  EXPECT_FALSE(g.done);
}

TEST(PeerUpstream, IsUnsignedWithoutRetries) {
  conf::Peers c;
  c.connect_timeout = std::chrono::milliseconds(700);
  auto u = peer_upstream(c, "http://10.0.0.2:8080", std::chrono::milliseconds(35000));
  EXPECT_EQ(u.endpoint, "http://10.0.0.2:8080");
  EXPECT_EQ(u.signature, conf::Signature::kNone);
  EXPECT_EQ(u.retries, 0);
  EXPECT_EQ(u.connect_timeout.count(), 700);
  EXPECT_EQ(u.stall_timeout.count(), 35000);
}

}  // namespace
}  // namespace proxy
