// installer/remove.cc's plan: which records go, which images are deregistered (machine images
// first), and which stay because a remaining record still names them.
#include "installer/remove.h"

#include <gtest/gtest.h>

namespace installer {
namespace {

std::pair<std::string, InstallRecord> rec(std::string key, std::string guid, std::string eki,
                                          std::string eri, std::string emi) {
  InstallRecord r;
  r.state = InstallState::kDone;
  r.guid = std::move(guid);
  r.eki = std::move(eki);
  r.eri = std::move(eri);
  r.emi = std::move(emi);
  return {std::move(key), std::move(r)};
}

TEST(PlanRemoval, Table) {
  const std::vector<std::pair<std::string, InstallRecord>> records = {
      rec("a@site", "site", "eki-1", "eri-1", "emi-1"),
      rec("b@site", "site", "eki-1", "eri-1", "emi-2"),  // shares a's kernel and ramdisk
      rec("serve:g", "g", "eki-1", "", "emi-3"),         // a serve GUID using the same kernel
      rec("serve:h", "h", "", "", "emi-4"),
      rec("serve:g#abc", "g", "", "", "emi-5"),  // g's earlier content
  };
  struct Case {
    std::string guid;
    bool all;
    std::vector<std::string> keys, ids, kept;
  } cases[] = {
      {"site", false, {"a@site", "b@site"}, {"emi-1", "emi-2", "eri-1"}, {"eki-1"}},
      {"g", false, {"serve:g", "serve:g#abc"}, {"emi-3", "emi-5"}, {"eki-1"}},
      {"h", false, {"serve:h"}, {"emi-4"}, {}},
      {"nobody", false, {}, {}, {}},
      {"",
       true,
       {"a@site", "b@site", "serve:g", "serve:h", "serve:g#abc"},
       {"emi-1", "emi-2", "emi-3", "emi-4", "emi-5", "eri-1", "eki-1"},
       {}},
  };
  for (const auto& c : cases) {
    const RemovalPlan p = plan_removal(records, c.guid, c.all);
    EXPECT_EQ(p.keys, c.keys) << c.guid;
    EXPECT_EQ(p.ids, c.ids) << c.guid;
    EXPECT_EQ(p.kept, c.kept) << c.guid;
  }
}

}  // namespace
}  // namespace installer
