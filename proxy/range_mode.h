// How each upstream answers ranged GETs, as learnt from its answers: remembered for a while,
// then probed again (issue 9, defect 4: one odd answer used to switch an upstream to
// whole-object fills for the life of the process). Pure; the caller passes the time and locks.
#pragma once

#include <chrono>
#include <map>
#include <string>

namespace proxy {

// How an upstream answers ranged GETs.
enum class RangeMode {
  kRanges,    // 206 with "Content-Range: bytes a-b/n" (S3, radosgw): the default, probed
  kWalrus,    // 200 with "Content-Range: a-b/n", total untrusted: size from a HEAD
  kNoRanges,  // ignores Range: one sequential whole-object fill
};

class RangeModes {
 public:
  using Clock = std::chrono::steady_clock;
  // A learnt mode holds this long; then the next fill probes with a range again.
  static constexpr std::chrono::minutes kRemember{10};

  // What to assume for `upstream` at `now`: the mode learnt within kRemember, else kRanges.
  RangeMode get(const std::string& upstream, Clock::time_point now) const {
    auto it = modes_.find(upstream);
    if (it == modes_.end() || now >= it->second.until) {
      return RangeMode::kRanges;
    }
    return it->second.mode;
  }
  // Records what an answer at `now` showed. Learning kRanges forgets any fallback at once.
  void learn(const std::string& upstream, RangeMode mode, Clock::time_point now) {
    if (mode == RangeMode::kRanges) {
      modes_.erase(upstream);
      return;
    }
    modes_[upstream] = Entry{mode, now + kRemember};
  }

 private:
  struct Entry {
    RangeMode mode;
    Clock::time_point until;
  };
  std::map<std::string, Entry> modes_;
};

}  // namespace proxy
