#include "memory/symmetric_heap.h"

#include <algorithm>
#include <cstdio>

#include "common/log.h"
#include "common/serialize.h"
#include "customar/error.h"
#include "group/agree.h"
#include "kernels/symmetric.h"

namespace customar::detail {

namespace {

// Freed ranges kept for messages.
constexpr size_t kFreedHistory = 64;

std::string pointer_text(const void* p) {
  char b[32];
  std::snprintf(b, sizeof(b), "%p", p);
  return b;
}

}  // namespace

SymmetricHeap::SymmetricHeap(Group& group, std::unique_ptr<SymmetricOps> ops) : group_(group), ops_(std::move(ops)) {}

SymmetricHeap::~SymmetricHeap() = default;

int SymmetricHeap::free_slot() const {
  for (int s = 0; s < kMaxSymmetricAllocations; ++s) {
    bool used = false;
    for (const auto& b : live_) used = used || b->slot == s;
    if (!used) return s;
  }
  return -1;
}

// Every rank's request travels first: a rank that asks for another size, or is at another point of its sequence of
// allocations, makes every rank throw the same error before anything is mapped.
void SymmetricHeap::agree_request(size_t bytes, int slot) {
  struct Request {
    uint64_t bytes, id;
    int64_t slot;
  };
  const std::vector<Request> all = all_gather_value(group_, Request{bytes, next_id_, static_cast<int64_t>(slot)});
  for (int r = 1; r < group_.size(); ++r)
    if (all[r].bytes != all[0].bytes || all[r].id != all[0].id || all[r].slot != all[0].slot)
      throw InvalidArgument("alloc_symmetric: rank " + std::to_string(r) + " asked for " +
                            std::to_string(all[r].bytes) + " bytes as its symmetric allocation #" +
                            std::to_string(all[r].id) + ", rank 0 for " + std::to_string(all[0].bytes) + " bytes as #" +
                            std::to_string(all[0].id) +
                            "; every rank must allocate the same sizes in the same order (and free alike)");
  if (bytes == 0)
    throw InvalidArgument("alloc_symmetric: 0 bytes asked for; a symmetric allocation holds at least one byte");
  if (slot < 0)
    throw InvalidArgument("alloc_symmetric: " + std::to_string(kMaxSymmetricAllocations) +
                          " symmetric allocations are live already, the most a communicator holds; free one first "
                          "(or allocate fewer, larger buffers and use parts of them)");
}

void* SymmetricHeap::allocate(size_t bytes) {
  const int slot = free_slot();
  agree_request(bytes, slot);
  auto b = std::make_unique<SymmetricBuffer>();
  b->id = next_id_;
  b->bytes = bytes;
  b->slot = slot;
  b->memory = ops_->open(group_, bytes, b->id);
  b->base = static_cast<uint8_t*>(b->memory->local());
  try {
    run_step(group_, "publishing symmetric allocation #" + std::to_string(b->id),
             [&] { ops_->publish(slot, b->memory.get()); });
  } catch (...) {
    // Cleared where it was written (no kernel has seen it); the step's error is the one to report.
    (void)local_error([&] { ops_->publish(slot, nullptr); });
    throw;
  }
  ++next_id_;
  CUSTOMAR_INFO("MEM", "symmetric allocation #%llu: %zu bytes (%zu mapped) at %p, %s",
                static_cast<unsigned long long>(b->id), bytes, b->memory->bytes(), static_cast<void*>(b->base),
                ops_->describe().c_str());
  live_.push_back(std::move(b));
  return live_.back()->base;
}

// Every rank names the allocation it frees: a pointer that starts none, or another allocation than rank 0's, makes
// every rank throw the same error and nothing is freed.
const SymmetricBuffer& SymmetricHeap::agree_release(const void* ptr) {
  const SymmetricBuffer* mine = find(ptr);
  if (mine != nullptr && mine->base != ptr) mine = nullptr;
  const std::vector<uint64_t> ids = all_gather_value<uint64_t>(group_, mine != nullptr ? mine->id : 0);
  auto what = [](uint64_t id) {
    return id == 0 ? std::string("a pointer that starts no live symmetric allocation")
                   : "allocation #" + std::to_string(id);
  };
  for (int r = 0; r < group_.size(); ++r) {
    if (ids[r] != 0 && ids[r] == ids[0]) continue;
    const std::string here =
        mine == nullptr ? " (this rank passed " + pointer_text(ptr) + ": " + why_not_symmetric(ptr) + ")" : "";
    throw InvalidArgument("free_symmetric: rank " + std::to_string(r) + " freed " + what(ids[r]) +
                          (r == 0 ? "" : " but rank 0 " + what(ids[0])) +
                          "; every rank must free the same allocation, by the pointer alloc_symmetric returned" + here);
  }
  return *mine;
}

void SymmetricHeap::release(const void* ptr) {
  const SymmetricBuffer& b = agree_release(ptr);
  // Once every rank's device has finished its calls (quiesce on every rank, then the step's exchange), no kernel
  // reads the entry or the memory any more.
  run_step(group_, "freeing symmetric allocation #" + std::to_string(b.id), [&] {
    ops_->quiesce();
    ops_->publish(b.slot, nullptr);
  });
  freed_.push_back({{reinterpret_cast<uintptr_t>(b.base), reinterpret_cast<uintptr_t>(b.base) + b.bytes}, b.id});
  if (freed_.size() > kFreedHistory) freed_.pop_front();
  CUSTOMAR_INFO("MEM", "symmetric allocation #%llu freed", static_cast<unsigned long long>(b.id));
  live_.erase(std::find_if(live_.begin(), live_.end(), [&](const auto& x) { return x.get() == &b; }));
  // No rank returns while another is still freeing: a free can synchronise the device, and between virtual ranks
  // (one device) a peer's next kernel, already waiting for this rank, would then never end until its timeout.
  group_.barrier();
}

const SymmetricBuffer* SymmetricHeap::find(const void* p) const {
  const auto a = reinterpret_cast<uintptr_t>(p);
  for (const auto& b : live_) {
    const auto base = reinterpret_cast<uintptr_t>(b->base);
    if (a >= base && a - base < b->bytes) return b.get();
  }
  return nullptr;
}

const SymmetricBuffer* SymmetricHeap::find_range(const void* p, size_t bytes, const char* what) const {
  const SymmetricBuffer* b = find(p);
  if (b == nullptr) return nullptr;
  const size_t offset = static_cast<size_t>(static_cast<const uint8_t*>(p) - b->base);
  if (bytes > b->bytes - offset)
    throw InvalidArgument(std::string(what) + " starts at offset " + std::to_string(offset) +
                          " of symmetric allocation #" + std::to_string(b->id) + " (" + std::to_string(b->bytes) +
                          " bytes) and its " + std::to_string(bytes) + " bytes run " +
                          std::to_string(bytes - (b->bytes - offset)) +
                          " bytes past the allocation's end; a buffer must lie inside one allocation");
  return b;
}

std::string SymmetricHeap::why_not_symmetric(const void* p) const {
  const auto a = reinterpret_cast<uintptr_t>(p);
  for (auto it = freed_.rbegin(); it != freed_.rend(); ++it)
    if (a >= it->first.first && a < it->first.second)
      return "it lies in no live symmetric allocation (its address was in allocation #" + std::to_string(it->second) +
             ", freed since: a freed buffer, or new memory at the same address)";
  return "it lies in no symmetric allocation of this communicator";
}

size_t SymmetricHeap::bytes() const {
  size_t total = 0;
  for (const auto& b : live_) total += b->memory->bytes();
  return total;
}

}  // namespace customar::detail
