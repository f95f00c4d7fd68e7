// Per-object change stamps: how a reader learns, with one atomic load, that an object it looked
// up has changed since. A fixed table of slots; an object's slot is picked by its key hash, and
// every committed change of the object moves the slot to a new value from one increasing clock.
// Tricky: objects share slots, so a change of one makes readers of the others look again (a
// spurious invalidation, harmless); never the reverse: each clock value is stored once, so a
// slot that moved away from the value a reader saw never shows it again.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>

namespace cache {

// What the reader keeps: the slot and the value it had. A default Stamp is never current.
struct Stamp {
  std::uint32_t slot = 0;
  std::uint64_t value = 0;
};

// The slots. Thread-safe: any thread may take and check stamps while writers bump them.
class StampTable {
 public:
  static constexpr std::uint32_t kSlots = 65536;

  StampTable() : slots_(new std::atomic<std::uint64_t>[kSlots]) {
    for (std::uint32_t i = 0; i < kSlots; ++i) {
      slots_[i].store(1, std::memory_order_relaxed);  // above a default Stamp's 0
    }
  }

  // The stamp of the object whose key hashes (key_hash) to `hash`. Take it before reading the
  // index: what the read returns stays valid for as long as current() holds.
  Stamp stamp(std::string_view hash) const {
    const std::uint32_t slot = slot_of(hash);
    return Stamp{slot, slots_[slot].load(std::memory_order_acquire)};
  }

  // False once the object (or one sharing its slot) changed after the stamp was taken.
  bool current(const Stamp& s) const {
    return slots_[s.slot % kSlots].load(std::memory_order_acquire) == s.value;
  }

  // After the commit that changed the object of `hash`.
  void bump(std::string_view hash) {
    const std::uint64_t v = clock_.fetch_add(1, std::memory_order_relaxed) + 1;
    slots_[slot_of(hash)].store(v, std::memory_order_release);
  }

 private:
  // The hash's first four hex digits: SHA-256 spreads keys evenly over the 65536 slots.
  static std::uint32_t slot_of(std::string_view hash) {
    std::uint32_t slot = 0;
    for (std::size_t i = 0; i < 4 && i < hash.size(); ++i) {
      const char c = hash[i];
      const std::uint32_t digit =
          c >= 'a' ? static_cast<std::uint32_t>(c - 'a' + 10) : static_cast<std::uint32_t>(c - '0');
      slot = (slot << 4) | (digit & 0xf);
    }
    return slot % kSlots;
  }

  std::unique_ptr<std::atomic<std::uint64_t>[]> slots_;
  std::atomic<std::uint64_t> clock_{1};
};

}  // namespace cache
