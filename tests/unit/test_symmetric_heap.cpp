// The symmetric heap's own logic (memory/symmetric_heap.h) over forked ranks, without a GPU: the memory and the
// kernels' table are faked, so what is tested is the agreement on sizes and order, the table slots, the lookups and
// the errors of bad use.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "customar/error.h"
#include "customar/launcher.h"
#include "forked_ranks.h"
#include "kernels/symmetric.h"
#include "memory/symmetric_heap.h"

using namespace customar;
using namespace customar::detail;
using customar::test::expect_all_zero;

namespace {

// Host memory standing in for a mapping; rounded up to 4 KiB like a granularity.
class FakeMemory final : public PeerMemory {
 public:
  explicit FakeMemory(size_t bytes) : data_((bytes + 4095) / 4096 * 4096) {}
  void* local() const override { return const_cast<uint8_t*>(data_.data()); }
  void* peer(int) const override { return local(); }
  size_t bytes() const override { return data_.size(); }

 private:
  std::vector<uint8_t> data_;
};

struct FakeOps final : public SymmetricOps {
  std::map<int, const PeerMemory*>* table;
  int* quiesced;
  bool fail_publish;
  FakeOps(std::map<int, const PeerMemory*>* t, int* q, bool fail) : table(t), quiesced(q), fail_publish(fail) {}
  std::unique_ptr<PeerMemory> open(Group&, size_t bytes, uint64_t) override {
    return std::make_unique<FakeMemory>(bytes);
  }
  void publish(int slot, const PeerMemory* memory) override {
    if (memory != nullptr && fail_publish) throw CudaError("cudaMemcpy failed (fake)");
    (*table)[slot] = memory;
  }
  void quiesce() override { ++*quiesced; }
  std::string describe() const override { return "fake"; }
};

// One rank's heap and what its fake recorded.
struct Rank {
  std::map<int, const PeerMemory*> table;
  int quiesced = 0;
  SymmetricHeap heap;
  explicit Rank(Group& g, bool fail_publish = false)
      : heap(g, std::make_unique<FakeOps>(&table, &quiesced, fail_publish)) {}
};

// 0 when `f` throws InvalidArgument containing `needle`.
template <typename F>
int invalid_argument_with(F&& f, const std::string& needle) {
  try {
    f();
  } catch (const InvalidArgument& e) {
    return std::string(e.what()).find(needle) != std::string::npos ? 0 : 2;
  } catch (...) {
    return 3;
  }
  return 1;
}

}  // namespace

TEST(SymmetricHeap, AllocationsAreNumberedAndSlottedAlikeOnEveryRank) {
  expect_all_zero(3, [](Group& g) {
    Rank x(g);
    auto* a = static_cast<uint8_t*>(x.heap.allocate(1000));
    auto* b = static_cast<uint8_t*>(x.heap.allocate(5000));
    const SymmetricBuffer* fa = x.heap.find(a + 999);
    const SymmetricBuffer* fb = x.heap.find(b);
    if (fa == nullptr || fa->id != 1 || fa->slot != 0 || fa->base != a) return 10;
    if (fb == nullptr || fb->id != 2 || fb->slot != 1) return 11;
    if (x.heap.find(a + 1000) != nullptr && x.heap.find(a + 1000) != fb) return 12;  // one past the asked-for bytes
    if (x.table.size() != 2 || x.table[0] == nullptr || x.table[1] == nullptr) return 13;
    return x.heap.count() == 2 ? 0 : 14;
  });
}

TEST(SymmetricHeap, DifferentSizesThrowTheSameErrorOnEveryRankAndAllocateNothing) {
  expect_all_zero(3, [](Group& g) {
    Rank x(g);
    const int rc = invalid_argument_with([&] { x.heap.allocate(g.rank() == 2 ? 2048 : 1024); },
                                         "rank 2 asked for 2048 bytes as its symmetric allocation #1, rank 0 for 1024");
    if (rc != 0) return rc;
    if (x.heap.count() != 0 || !x.table.empty()) return 10;
    // Nothing was used up: the next allocation is #1 everywhere.
    const SymmetricBuffer* b = x.heap.find(x.heap.allocate(64));
    return b != nullptr && b->id == 1 && b->slot == 0 ? 0 : 11;
  });
}

TEST(SymmetricHeap, ZeroBytesIsRejectedOnEveryRank) {
  expect_all_zero(2, [](Group& g) {
    Rank x(g);
    return invalid_argument_with([&] { x.heap.allocate(0); }, "0 bytes");
  });
}

TEST(SymmetricHeap, AtMostTheTableSizeIsLiveAndFreedSlotsAreReused) {
  expect_all_zero(2, [](Group& g) {
    Rank x(g);
    std::vector<void*> p;
    for (int i = 0; i < kMaxSymmetricAllocations; ++i) p.push_back(x.heap.allocate(16));
    if (invalid_argument_with([&] { x.heap.allocate(16); }, "64 symmetric allocations are live already") != 0) return 1;
    x.heap.release(p[5]);
    void* again = x.heap.allocate(16);
    const SymmetricBuffer* b = x.heap.find(again);
    return b != nullptr && b->slot == 5 && b->id == kMaxSymmetricAllocations + 1 ? 0 : 2;
  });
}

TEST(SymmetricHeap, FreeingDifferentAllocationsThrowsOnEveryRankAndFreesNothing) {
  expect_all_zero(3, [](Group& g) {
    Rank x(g);
    void* a = x.heap.allocate(100);
    void* b = x.heap.allocate(100);
    int rc = invalid_argument_with([&] { x.heap.release(g.rank() == 1 ? b : a); },
                                   "rank 1 freed allocation #2 but rank 0 allocation #1");
    if (rc != 0) return 10 + rc;
    rc = invalid_argument_with([&] { x.heap.release(static_cast<uint8_t*>(a) + 16); },
                               "rank 0 freed a pointer that starts no live symmetric allocation");
    if (rc != 0) return 20 + rc;
    return x.heap.count() == 2 && x.quiesced == 0 ? 0 : 30;
  });
}

TEST(SymmetricHeap, FreeWaitsForTheDeviceClearsTheSlotAndRemembersTheRange) {
  expect_all_zero(2, [](Group& g) {
    Rank x(g);
    auto* a = static_cast<uint8_t*>(x.heap.allocate(100));
    x.heap.release(a);
    if (x.quiesced != 1 || x.table[0] != nullptr || x.heap.count() != 0) return 1;
    if (x.heap.find(a) != nullptr) return 2;
    const std::string why = x.heap.why_not_symmetric(a + 50);
    if (why.find("allocation #1, freed since") == std::string::npos) return 3;
    int never = 0;
    if (x.heap.why_not_symmetric(&never).find("no symmetric allocation") == std::string::npos) return 4;
    // Freeing it again is an error on every rank.
    return invalid_argument_with([&] { x.heap.release(a); }, "freed since");
  });
}

TEST(SymmetricHeap, ARangeMustLieInsideItsAllocation) {
  expect_all_zero(1, [](Group& g) {
    Rank x(g);
    auto* a = static_cast<uint8_t*>(x.heap.allocate(1024));
    if (x.heap.find_range(a + 512, 512, "input") == nullptr) return 1;  // exactly to the end
    int v = 0;
    if (x.heap.find_range(&v, 1 << 20, "input") != nullptr) return 2;  // not symmetric: no opinion on its size
    return invalid_argument_with([&] { x.heap.find_range(a + 512, 528, "all_reduce: the input"); },
                                 "all_reduce: the input starts at offset 512 of symmetric allocation #1 (1024 bytes) "
                                 "and its 528 bytes run 16 bytes past the allocation's end");
  });
}

TEST(SymmetricHeap, TheFootprintIsWhatTheMappingsTake) {
  expect_all_zero(2, [](Group& g) {
    Rank x(g);
    void* a = x.heap.allocate(1);
    x.heap.allocate(4097);
    if (x.heap.bytes() != 4096 + 8192) return 1;
    x.heap.release(a);
    return x.heap.bytes() == 8192 ? 0 : 2;
  });
}

TEST(SymmetricHeap, AFailedPublishOnOneRankFailsEveryRankAndLeavesNothingLive) {
  expect_all_zero(3, [](Group& g) {
    Rank x(g, g.rank() == 1);
    bool threw = false;
    try {
      x.heap.allocate(64);
    } catch (const Error& e) {
      threw = std::string(e.what()).find("publishing symmetric allocation #1 failed on rank 1") != std::string::npos;
    }
    if (!threw || x.heap.count() != 0) return 1;
    return x.table.count(0) == 0 || x.table[0] == nullptr ? 0 : 2;
  });
}
