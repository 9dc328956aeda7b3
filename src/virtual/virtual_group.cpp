#include "virtual/virtual_group.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "common/check.h"
#include "common/log.h"
#include "customar/env.h"
#include "customar/virtual.h"
#include "kernels/handle.h"
#include "virtual/green_contexts.h"

namespace customar::detail {

// What the threads of one virtual world share: the exchange (one round at a time, every rank's contribution kept until
// all have read it), who has finished, and the GPU's partition.
struct VirtualWorld {
  int size = 0;
  int device = 0;
  std::mutex mu;
  std::condition_variable cv;
  uint64_t round = 0;                          // completed exchange rounds
  int arrived = 0;                             // ranks in the current round
  std::vector<uint64_t> entered;               // exchange rounds each rank has entered, to name who is missing
  std::vector<bool> finished;                  // the rank's function has returned
  std::vector<Bytes> slots;                    // contributions of the current round
  std::shared_ptr<std::vector<Bytes>> result;  // the last completed round's contributions
  std::unique_ptr<GreenPartition> green;
  std::vector<cudaStream_t> plain_streams;  // without green contexts
  int sm_share = 1;
  std::string partition;
  std::vector<std::shared_ptr<void>> kept;  // keep_until_end()

  ~VirtualWorld() {
    (void)cudaDeviceSynchronize();
    kept.clear();
    for (cudaStream_t s : plain_streams) (void)cudaStreamDestroy(s);
  }

  std::vector<Bytes> exchange(int rank, Bytes mine) {
    std::unique_lock<std::mutex> lock(mu);
    const uint64_t my_round = ++entered[rank];
    slots[rank] = std::move(mine);
    if (++arrived == size) {
      result = std::make_shared<std::vector<Bytes>>(std::move(slots));
      slots.assign(size, {});
      arrived = 0;
      ++round;
      cv.notify_all();
      return *result;
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(env().init_timeout_ms);
    while (round < my_round) {
      for (int r = 0; r < size; ++r)
        if (finished[r] && entered[r] < my_round)
          throw TimeoutError("virtual ranks: rank " + std::to_string(r) + " finished while rank " +
                                 std::to_string(rank) + " waited for it in an exchange",
                             r);
      if (cv.wait_until(lock, deadline) == std::cv_status::timeout && round < my_round) {
        int missing = 0;
        while (missing < size && entered[missing] >= my_round) ++missing;
        throw TimeoutError("virtual ranks: rank " + std::to_string(missing) + " did not reach the exchange within " +
                               std::to_string(env().init_timeout_ms) + " ms (CUSTOMAR_INIT_TIMEOUT_MS)",
                           missing);
      }
    }
    return *result;
  }

  void finish(int rank) {
    std::lock_guard<std::mutex> lock(mu);
    finished[rank] = true;
    cv.notify_all();
  }
};

VirtualGroup::VirtualGroup(std::shared_ptr<VirtualWorld> world, int rank) : world_(std::move(world)), rank_(rank) {}
int VirtualGroup::size() const { return world_->size; }
std::vector<Bytes> VirtualGroup::all_gather(std::span<const uint8_t> mine) {
  return world_->exchange(rank_, Bytes(mine.begin(), mine.end()));
}
void VirtualGroup::barrier() { (void)world_->exchange(rank_, {}); }
int VirtualGroup::device() const { return world_->device; }
cudaStream_t VirtualGroup::stream() const {
  return world_->green ? world_->green->stream(rank_) : world_->plain_streams[rank_];
}
int VirtualGroup::sm_share() const { return world_->sm_share; }
bool VirtualGroup::green() const { return world_->green != nullptr; }
const std::string& VirtualGroup::partition() const { return world_->partition; }
void VirtualGroup::keep_until_end(std::shared_ptr<void> object) const {
  std::lock_guard<std::mutex> lock(world_->mu);
  world_->kept.push_back(std::move(object));
}

const VirtualGroup* as_virtual(const Group& group) { return dynamic_cast<const VirtualGroup*>(&group); }

namespace {

const VirtualGroup& require_virtual(const Group& group, const char* call) {
  const VirtualGroup* v = as_virtual(group);
  if (v == nullptr) throw InvalidArgument(std::string(call) + ": the group was not made by launch_virtual()");
  return *v;
}

// The GPU's SMs shared among the ranks: green contexts where asked for and possible, else capped grids.
void partition_sms(VirtualWorld& w, SmPartition mode) {
  int sms = 0;
  CUSTOMAR_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, w.device));
  std::string why;
  if (mode != SmPartition::kCappedGrids) w.green = GreenPartition::create(w.device, w.size, &why);
  if (w.green) {
    w.sm_share = w.green->sms_each();
    w.partition = std::to_string(w.size) + " green contexts of " + std::to_string(w.sm_share) + " SMs";
    return;
  }
  if (mode == SmPartition::kGreenContexts) throw CudaError("virtual ranks: green contexts unavailable: " + why);
  w.sm_share = std::max(1, sms / (2 * w.size));
  w.partition = "capped grids of " + std::to_string(w.sm_share) + " blocks on " + std::to_string(sms) + " SMs" +
                (why.empty() ? std::string() : " (green contexts unavailable: " + why + ")");
  w.plain_streams.assign(w.size, nullptr);
  for (cudaStream_t& s : w.plain_streams) CUSTOMAR_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
}

int run_rank(const std::shared_ptr<VirtualWorld>& w, int rank, const std::function<int(Group&)>& fn) {
  int code = 1;
  try {
    log::set_thread_rank(rank);
    if (w->green)
      w->green->make_current(rank);
    else
      CUSTOMAR_CUDA_CHECK(cudaSetDevice(w->device));
    VirtualGroup group(w, rank);
    code = fn(group);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "customar virtual ranks: rank %d failed: %s\n", rank, e.what());
  } catch (...) {
    std::fprintf(stderr, "customar virtual ranks: rank %d failed with an unknown exception\n", rank);
  }
  w->finish(rank);
  return code;
}

}  // namespace

}  // namespace customar::detail

namespace customar {

std::vector<RankExit> launch_virtual(int nranks, const std::function<int(Group&)>& fn, const VirtualOptions& options) {
  if (nranks < 1 || nranks > detail::kMaxRanks)
    throw InvalidArgument("launch_virtual: nranks=" + std::to_string(nranks) + "; allowed: 1.." +
                          std::to_string(detail::kMaxRanks));
  int count = 0;
  CUSTOMAR_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (options.device < 0 || options.device >= count)
    throw InvalidArgument("launch_virtual: device " + std::to_string(options.device) + " does not exist; " +
                          std::to_string(count) + " visible");
  auto w = std::make_shared<detail::VirtualWorld>();
  w->size = nranks;
  w->device = options.device;
  w->entered.assign(nranks, 0);
  w->finished.assign(nranks, false);
  w->slots.assign(nranks, {});
  CUSTOMAR_CUDA_CHECK(cudaSetDevice(options.device));
  detail::partition_sms(*w, options.partition);
  std::vector<RankExit> exits(nranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < nranks; ++r) threads.emplace_back([&, r] { exits[r] = {r, detail::run_rank(w, r, fn)}; });
  for (std::thread& t : threads) t.join();
  return exits;
}

cudaStream_t virtual_stream(const Group& group) { return detail::require_virtual(group, "virtual_stream").stream(); }

std::string virtual_partition(const Group& group) {
  return detail::require_virtual(group, "virtual_partition").partition();
}

}  // namespace customar
