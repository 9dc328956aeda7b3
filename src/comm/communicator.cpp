#include "customar/communicator.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <optional>

#include "comm/call_order.h"
#include "comm/custom_backend.h"
#include "comm/lab_access.h"
#include "common/check.h"
#include "common/device_guard.h"
#include "common/log.h"
#include "common/serialize.h"
#include "customar/config.h"
#include "customar/dispatch.h"
#include "customar/env.h"
#include "dispatch/plan.h"
#include "dispatch/setup.h"
#include "group/agree.h"
#include "kernels/kernels.h"
#include "kernels/norm/norm.h"
#include "kernels/symmetric.h"
#include "memory/symmetric_heap.h"
#include "nccl/nccl_comm.h"
#include "virtual/reference.h"
#include "virtual/virtual_group.h"

namespace customar {

namespace {

using detail::DeviceGuard;

// Staging bounds: below 1 MiB the two-shot range would be tiny; above 64 MiB NCCL is at least as fast on every
// machine measured (2x and 4x H100 and H200).
constexpr size_t kMinCapacity = size_t(1) << 20;
constexpr size_t kMaxCapacity = size_t(64) << 20;
// Push slots: one per peer in each of 3 rotating buffers, so 3 x (world - 1) x this per rank. 4 MiB covers every
// one-shot push threshold measured (the largest, 4 MiB at two Hopper GPUs, where push and pull cross); the 256 KiB
// floor lets CUSTOMAR_ALGO=oneshot_push run at any world size.
constexpr size_t kMinPushCapacity = size_t(256) << 10;
constexpr size_t kMaxPushCapacity = size_t(4) << 20;

size_t round16(size_t b) { return (b + 15) / 16 * 16; }

std::string device_error(int dev) {
  int count = 0;
  CUSTOMAR_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (dev >= 0 && dev < count) return "";
  return "Communicator: device " + std::to_string(dev) + " does not exist; this process sees " + std::to_string(count) +
         " GPU(s): 0.." + std::to_string(count - 1);
}

}  // namespace

struct Communicator::Impl {
  Group& group;
  int device;
  int rank;
  int world;
  std::string reason;
  PlanFacts facts;
  detail::LaunchLimits limits;
  bool check_mode = false;
  std::unique_ptr<detail::Fallback> fallback;           // NCCL, or the reference all-reduce of a virtual world
  const detail::VirtualGroup* virtual_group = nullptr;  // set when the ranks are threads on one GPU
  std::unique_ptr<detail::CustomBackend> custom;
  std::unique_ptr<detail::Kernels> kernels;          // set for V1 and V2
  std::unique_ptr<detail::SymmetricHeap> symmetric;  // made by the first alloc_symmetric()
  // Eager calls run in issue order, whatever streams they are issued on: a custom kernel of call k+1 reuses call
  // k-1's staging buffer.
  std::unique_ptr<detail::CallOrder> order;
  // Set once a kernel reported a timed-out wait: the communicator never runs again.
  int failed_rank = -1;
  // Set once a kernel found its symmetric buffer freed (a replayed graph): the communicator never runs again.
  std::string broken;

  Impl(Group& g, int dev, const CommOptions& options)
      : group(g), device(dev), rank(g.rank()), world(g.size()), virtual_group(detail::as_virtual(g)) {
    // A bad device on one rank must not leave the others waiting in the first exchange: for a group it travels in
    // the set-up vote and every rank throws.
    const std::string bad_device = device_error(dev);
    if (!bad_device.empty() && world == 1) throw InvalidArgument(bad_device);
    // Current device first, so that detection's CUDA calls create no context on another GPU.
    std::optional<DeviceGuard> guard;
    if (bad_device.empty()) guard.emplace(dev);
    if (virtual_group != nullptr)
      log::set_thread_rank(rank);
    else
      log::set_rank(rank);
    log_environment();
    facts.world = world;
    Topology topo;
    choose_backend(options, bad_device, &topo);
    if (backend() == Backend::kV2) build_v2_kernels(topo.gpus[0].sm);
    if (backend() == Backend::kV1) kernels = detail::make_v1_kernels(world);
    if (kernels) build_buffers(topo, options);
    load_norm_kernels();
    order = std::make_unique<detail::CallOrder>(virtual_group != nullptr ? detail::kVirtualCallsInFlight : 0);
    CUSTOMAR_INFO("INIT", "communicator rank %d/%d on device %d: backend %s (%s)", rank, world, dev,
                  std::string(backend_name(backend())).c_str(), reason.c_str());
  }

  ~Impl() {
    DeviceGuard guard(device);
    // Peers may still be reading this rank's staging buffer: wait for this rank's work, then for every rank, before
    // unmapping. Skipped once a peer is known to be gone or to have given up (it skips the barrier too), which a
    // rank that was only late learns from the poison word a timed-out peer wrote into its region.
    (void)cudaDeviceSynchronize();
    const bool peer_left = failed_rank >= 0 || (fallback && fallback->error() != 0) ||
                           (custom && (custom->error() != 0 || custom->peer_gave_up() != 0));
    if ((custom || virtual_group != nullptr) && !peer_left) {
      try {
        group.barrier();
      } catch (const std::exception& err) {
        CUSTOMAR_WARN("INIT", "destroying communicator: barrier failed: %s", err.what());
      }
    }
    if (peer_left && virtual_group != nullptr) {
      // A late peer's kernel may still touch this rank's buffers, and in the one shared context a freed address
      // would fail every rank: they go when the whole world has ended.
      virtual_group->keep_until_end(std::shared_ptr<detail::SymmetricHeap>(std::move(symmetric)));
      virtual_group->keep_until_end(std::shared_ptr<detail::CustomBackend>(std::move(custom)));
      virtual_group->keep_until_end(std::shared_ptr<detail::Fallback>(std::move(fallback)));
    }
    symmetric.reset();  // after the barrier: no peer reads this rank's symmetric memory any more
    custom.reset();
    kernels.reset();
    if (peer_left && fallback) fallback->abort_on_destroy();
    fallback.reset();
  }

  Backend backend() const { return facts.backend; }

  void log_environment() const {
    const Env& e = env();
    if (e.non_default.empty() || rank != 0) return;
    std::string all;
    for (const auto& v : e.non_default) all += " " + v;
    CUSTOMAR_INFO("INIT", "environment:%s", all.c_str());
  }

  // Backend, thresholds, CUSTOMAR_ALGO and CUSTOMAR_CHECK come out of one vote, identical on every rank.
  void choose_backend(const CommOptions& options, const std::string& bad_device, Topology* topo) {
    if (world == 1) {
      const Decision d = dispatch_custom_allreduce(group, device);  // no exchange, no detection
      facts.backend = d.backend;
      reason = d.reason;
      return;
    }
    const detail::AgreedChoice c = detail::agree_setup(group, device, options.max_backend, topo, bad_device);
    facts.backend = c.decision.backend;
    facts.thresholds = c.thresholds;
    facts.force_algo = c.force_algo;
    reason = c.decision.reason;
    check_mode = c.check;
    if (virtual_group != nullptr) {
      // NCCL cannot run several ranks on one GPU: its calls go to the reference all-reduce.
      reason = std::to_string(world) + " virtual ranks on one GPU (" + virtual_group->partition() + "), deciding as " +
               reason;
      fallback = detail::make_reference_all_reduce(group, device, uint64_t(env().timeout_ms) * 1000000ull);
      return;
    }
    // NCCL is found at run time; without it on every rank the custom kernels serve alone (nccl/nccl_comm.h).
    fallback = detail::NcclComm::create(group, device, options.nccl_comm, backend() == Backend::kNccl);
  }

  // Compiled (or loaded from the cache) now, at creation: a compile failure degrades to V1 here, on every rank
  // alike, never mid-run.
  void build_v2_kernels(int sm) {
    try {
      detail::run_step(group, "compiling the V2 kernels", [&] { kernels = detail::make_v2_kernels(world, sm); });
      reason += "; " + kernels->describe();
    } catch (const Error& err) {
      kernels.reset();
      CUSTOMAR_WARN("JIT", "V2 unavailable, using V1: %s", err.what());
      facts.backend = Backend::kV1;
      reason = std::string("V2 kernels failed to build (") + err.what() + "); V1 serves";
    }
  }

  void build_buffers(const Topology& topo, const CommOptions& options) {
    const Env& e = env();
    const Thresholds& t = facts.thresholds;
    const size_t cap =
        round16(options.max_buffers ? kMaxCapacity : std::clamp(t.custom_max, kMinCapacity, kMaxCapacity));
    size_t push_cap = 0;
    if (backend() == Backend::kV2)
      push_cap = round16(options.max_buffers ? kMaxPushCapacity
                                             : std::clamp(t.oneshot_push_max, kMinPushCapacity, kMaxPushCapacity));
    try {
      custom = std::make_unique<detail::CustomBackend>(group, device, topo, cap, push_cap,
                                                       uint64_t(e.timeout_ms) * 1000000ull);
    } catch (const Error& err) {
      // Every rank threw the same error at the same exchange (group/agree.h), so all act together. A topology
      // that was given (CUSTOMAR_TOPO_FILE) and does not hold is the caller's error: say so, do not paper over it.
      // A detected one that does not hold (a driver or container that misreports) degrades to NCCL.
      if (!e.topo_file.empty())
        throw ConfigError("CUSTOMAR_TOPO_FILE=" + e.topo_file +
                          " claims peer access that this machine does not give: " + err.what());
      fallback->require(std::string("the custom backend failed to build (") + err.what() + ") and NCCL cannot serve");
      CUSTOMAR_WARN("INIT", "custom backend unavailable, using NCCL: %s", err.what());
      kernels.reset();
      facts.backend = Backend::kNccl;
      reason = std::string("custom backend failed to build (") + err.what() + "); NCCL serves";
      return;
    }
    facts.capacity = custom->capacity();
    facts.push_capacity = custom->push_capacity();
    limits = detail::launch_limits(*kernels, custom->handle().max_blocks, backend() == Backend::kV2);
    if (virtual_group != nullptr) {
      // Every rank's kernels share one GPU and must be resident at once: pushes keep to what __launch_bounds__
      // guarantees per SM, and no kernel takes more than the rank's share.
      for (auto& per_type : limits.push_sm_threads) per_type[0] = per_type[1] = detail::kSafePushThreadsPerSm;
      limits.max_grid_threads = size_t(virtual_group->sm_share()) * detail::kSafePushThreadsPerSm;
    }
  }

  size_t capacity() const { return custom ? custom->capacity() : 0; }

  void check_failed() {
    if (failed_rank >= 0)
      throw StateError("Communicator is broken: an earlier call timed out waiting for rank " +
                       std::to_string(failed_rank) + "; destroy it and build a new one");
    if (!broken.empty()) throw StateError(broken);
    const int err = custom && custom->error() != 0 ? custom->error() : fallback ? fallback->error() : 0;
    if (err == 0) return;
    if (err == detail::kErrorSymmetricUnmapped) {
      broken =
          "Communicator is broken: a kernel found its symmetric buffer freed (a CUDA graph that captured a call "
          "on a symmetric buffer was replayed after free_symmetric()); the call did nothing, and nothing runs "
          "on this communicator any more; destroy it and build a new one";
      throw StateError(broken);
    }
    failed_rank = (err & (detail::kErrorPeerGaveUp - 1)) - 1;
    const std::string what =
        (err & detail::kErrorPeerGaveUp)
            ? " timed out waiting for a peer and left the communicator, so this rank stopped waiting for it"
            : " did not arrive within CUSTOMAR_TIMEOUT_MS=" + std::to_string(env().timeout_ms) + " ms";
    throw TimeoutError("all_reduce on rank " + std::to_string(rank) + ": rank " + std::to_string(failed_rank) + what +
                           "; the communicator is now unusable",
                       failed_rank);
  }

  void verify_same_call(size_t count, DataType dtype) {
    detail::Writer w;
    w.put<uint64_t>(count).put<int32_t>(static_cast<int32_t>(dtype));
    std::vector<Bytes> all = group.all_gather(w.bytes());
    for (int r = 0; r < world; ++r) {
      if (all[r] == all[0]) continue;
      detail::Reader rd(all[r]);
      auto c = rd.get<uint64_t>();
      auto d = rd.get<int32_t>();
      throw InvalidArgument("CUSTOMAR_CHECK: rank " + std::to_string(r) + " called all_reduce with count " +
                            std::to_string(c) + ", dtype " + std::to_string(d) + " but rank 0 with count " +
                            std::to_string(count) + " (this rank), dtype " + std::to_string(static_cast<int>(dtype)) +
                            "; every rank must pass the same count and dtype");
    }
  }

  static void validate(const void* in, const void* out, size_t count, DataType dtype) {
    const size_t esize = dtype_size(dtype);  // throws InvalidArgument for an unknown dtype
    if (in == nullptr || out == nullptr)
      throw InvalidArgument(std::string("all_reduce: ") + (in == nullptr ? "in" : "out") +
                            " is null; both must be device pointers (in == out for in-place)");
    if (count > SIZE_MAX / esize)
      throw InvalidArgument("all_reduce: count " + std::to_string(count) + " of " + std::string(dtype_name(dtype)) +
                            " overflows the byte size");
    if (reinterpret_cast<uintptr_t>(in) % esize != 0 || reinterpret_cast<uintptr_t>(out) % esize != 0)
      throw InvalidArgument("all_reduce: in and out must be aligned to the element size (" + std::to_string(esize) +
                            " bytes for " + std::string(dtype_name(dtype)) + ")");
  }

  // Whether `stream` is being captured into a graph: captured calls are ordered by the graph, not by `order`.
  static bool is_capturing(cudaStream_t stream) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    CUSTOMAR_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
    return capture != cudaStreamCaptureStatusNone;
  }

  // ---- symmetric memory ----

  // Where a call's buffers lie in symmetric memory (allocation number 0: outside it), and what the plan may take
  // from that.
  struct SymmetricUse {
    uint64_t in_id = 0, in_offset = 0, out_id = 0, out_offset = 0;
    CallBuffers buffers;
  };

  // Throws InvalidArgument for a buffer that starts in an allocation and runs past its end. The kernels read and
  // write 16-byte vectors of a peer's copy, so a buffer off 16 bytes (the same on every rank: its offset is) is not
  // symmetric to the plan.
  SymmetricUse symmetric_use(const void* in, const void* out, size_t bytes) const {
    SymmetricUse u;
    u.buffers.in_place = in == out;
    if (!symmetric) return u;
    const detail::SymmetricBuffer* i = symmetric->find_range(in, bytes, "all_reduce: the input");
    const detail::SymmetricBuffer* o = in == out ? i : symmetric->find_range(out, bytes, "all_reduce: the output");
    if (i != nullptr) {
      u.in_id = i->id;
      u.in_offset = static_cast<uint64_t>(static_cast<const uint8_t*>(in) - i->base);
    }
    if (o != nullptr) {
      u.out_id = o->id;
      u.out_offset = static_cast<uint64_t>(static_cast<const uint8_t*>(out) - o->base);
    }
    u.buffers.in_symmetric = i != nullptr && reinterpret_cast<uintptr_t>(in) % 16 == 0;
    u.buffers.out_symmetric = o != nullptr && reinterpret_cast<uintptr_t>(out) % 16 == 0;
    return u;
  }

  static std::string where_text(uint64_t id, uint64_t offset) {
    return id == 0 ? "outside symmetric memory"
                   : "at offset " + std::to_string(offset) + " of symmetric allocation #" + std::to_string(id);
  }

  // CUSTOMAR_CHECK: every rank passes its buffers at the same offsets of the same allocations, or outside symmetric
  // memory on every rank.
  void verify_symmetric_use(const SymmetricUse& u) {
    struct Where {
      uint64_t in_id, in_offset, out_id, out_offset, in_place;
    };
    const Where mine{u.in_id, u.in_offset, u.out_id, u.out_offset, u.buffers.in_place ? 1u : 0u};
    const std::vector<Where> all = all_gather_value(group, mine);
    for (int r = 1; r < world; ++r) {
      const Where& a = all[r];
      const Where& b = all[0];
      if (a.in_id == b.in_id && a.in_offset == b.in_offset && a.out_id == b.out_id && a.out_offset == b.out_offset &&
          a.in_place == b.in_place)
        continue;
      auto text = [](const Where& w) {
        return "its input " + where_text(w.in_id, w.in_offset) +
               (w.in_place ? " (in place)" : " and its output " + where_text(w.out_id, w.out_offset));
      };
      throw InvalidArgument("CUSTOMAR_CHECK: rank " + std::to_string(r) + " passed " + text(a) + ", but rank 0 " +
                            text(b) +
                            "; every rank must pass symmetric buffers at the same offset of the same allocation, or "
                            "buffers outside symmetric memory on every rank");
    }
  }

  void* alloc_symmetric(size_t bytes) {
    check_failed();
    DeviceGuard guard(device);
    if (!symmetric) {
      // Peers map the memory only where kernels read it: V2 has the kernels on symmetric inputs.
      void* region = custom && backend() == Backend::kV2 ? custom->handle().regions[rank] : nullptr;
      const auto timeout = std::chrono::milliseconds(env().init_timeout_ms / 2);
      symmetric =
          std::make_unique<detail::SymmetricHeap>(group, detail::make_symmetric_ops(group, device, region, timeout));
    }
    return symmetric->allocate(bytes);
  }

  void free_symmetric(void* ptr) {
    check_failed();
    DeviceGuard guard(device);
    if (!symmetric) throw InvalidArgument("free_symmetric: no symmetric allocation has been made on this communicator");
    symmetric->release(ptr);
  }

  // The claim of all_reduce_symmetric(): `in` is symmetric.
  void require_symmetric(const void* in, size_t bytes) const {
    const detail::SymmetricBuffer* b =
        symmetric ? symmetric->find_range(in, bytes, "all_reduce_symmetric: the input") : nullptr;
    if (b != nullptr) return;
    char p[32];
    std::snprintf(p, sizeof(p), "%p", in);
    throw InvalidArgument(
        std::string("all_reduce_symmetric: the input ") + p + " is not symmetric: " +
        (symmetric ? symmetric->why_not_symmetric(in) : "no symmetric allocation has been made on this communicator") +
        "; pass memory from alloc_symmetric(), or call all_reduce()");
  }

  void all_reduce(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream) {
    if (count == 0) {
      (void)dtype_size(dtype);
      return;
    }
    validate(in, out, count, dtype);
    const SymmetricUse use = symmetric_use(in, out, count * dtype_size(dtype));
    check_failed();
    DeviceGuard guard(device);
    const bool capturing = is_capturing(stream);
    if (check_mode && !capturing && world > 1) {
      verify_same_call(count, dtype);
      verify_symmetric_use(use);
    }
    if (backend() == Backend::kNone) {
      if (in != out)
        CUSTOMAR_CUDA_CHECK(cudaMemcpyAsync(out, in, count * dtype_size(dtype), cudaMemcpyDeviceToDevice, stream));
      return;
    }
    if (!capturing) order->before(stream);
    const detail::Plan p = detail::plan_launch(facts, limits, count, dtype, use.buffers);
    // Captured calls log under GRAPH, eager ones under COLL, so a replayed graph's calls can be told from eager ones.
    CUSTOMAR_TRACE(capturing ? "GRAPH" : "COLL", "all_reduce %zu x %s: %s (%s)%s", count,
                   std::string(dtype_name(dtype)).c_str(), std::string(algo_name(p.algo)).c_str(), p.reason,
                   capturing ? ", captured into a graph" : "");
    if (p.kernel != detail::Kernel::kNone)
      kernels->launch(p, custom->handle(), in, out, dtype, stream);
    else
      fallback->all_reduce(in, out, count, dtype, stream);
    if (!capturing) order->after(stream);
  }

  // ---- all-reduce + residual add + RMSNorm ----------------------------------------------------------------------

  // The norm kernel runs on every backend; loaded now for the same reason as the custom kernels (load_into_context).
  static void load_norm_kernels() {
    for (DataType d : {DataType::kFloat16, DataType::kBFloat16})
      detail::load_into_context(detail::add_rmsnorm_kernel(d));
  }

  // CUSTOMAR_CHECK: every rank passes the same shape, dtype, output type and eps.
  void verify_same_norm_call(const AddRmsNormArgs& a) {
    const auto describe = [](const Bytes& b) {
      detail::Reader rd(b);
      const auto tokens = rd.get<uint64_t>();
      const auto hidden = rd.get<uint64_t>();
      const auto dtype = rd.get<int32_t>();
      const bool fp8 = rd.get<uint8_t>() != 0;
      return std::to_string(tokens) + " x " + std::to_string(hidden) + ", dtype " + std::to_string(dtype) +
             (fp8 ? ", fp8 out" : "") + ", eps " + std::to_string(rd.get<float>());
    };
    detail::Writer w;
    w.put<uint64_t>(a.tokens).put<uint64_t>(a.hidden).put<int32_t>(static_cast<int32_t>(a.dtype));
    w.put<uint8_t>(a.fp8_out ? 1 : 0).put<float>(a.eps);
    const std::vector<Bytes> all = group.all_gather(w.bytes());
    for (int r = 0; r < world; ++r)
      if (all[r] != all[0])
        throw InvalidArgument("CUSTOMAR_CHECK: rank " + std::to_string(r) + " called all_reduce_add_rmsnorm with " +
                              describe(all[r]) + " but rank 0 with " + describe(all[0]) +
                              "; every rank must pass the same shape, dtype, output type and eps");
  }

  void all_reduce_add_rmsnorm(const AddRmsNormArgs& a, cudaStream_t stream) {
    detail::check_norm_args(a);
    if (a.tokens == 0) return;
    check_failed();
    DeviceGuard guard(device);
    const bool capturing = is_capturing(stream);
    if (check_mode && !capturing && world > 1) verify_same_norm_call(a);
    const detail::NormCall call = detail::norm_call(a);
    if (backend() == Backend::kNone) {
      detail::launch_add_rmsnorm(call, a.dtype, detail::norm_only_plan(limits, a.tokens, a.hidden).norm_grid, false,
                                 stream);
      return;
    }
    if (!capturing) order->before(stream);
    const detail::NormPlan p = detail::plan_norm_launch(facts, limits, a.tokens, a.hidden, a.dtype, a.fp8_out);
    CUSTOMAR_TRACE(capturing ? "GRAPH" : "COLL", "all_reduce_add_rmsnorm %zu x %zu %s%s: %s, %s (%s)%s", a.tokens,
                   a.hidden, std::string(dtype_name(a.dtype)).c_str(), a.fp8_out ? " -> fp8" : "",
                   norm_path_name(p.call.path), std::string(algo_name(p.call.algo)).c_str(), p.call.reason,
                   capturing ? ", captured into a graph" : "");
    if (p.call.path != NormPath::kUnfused) {
      kernels->launch_norm(p.kernel, custom->handle(), call, a.dtype, stream);
    } else {
      // Unfused: the all-reduce in place into `in` (its contents are the call's to use), then the norm kernel.
      if (p.kernel.kernel != detail::Kernel::kNone)
        kernels->launch(p.kernel, custom->handle(), a.in, a.in, a.dtype, stream);
      else
        fallback->all_reduce(a.in, a.in, a.tokens * a.hidden, a.dtype, stream);
      detail::launch_add_rmsnorm(call, a.dtype, p.norm_grid, p.norm_pdl, stream);
    }
    if (!capturing) order->after(stream);
  }
};

namespace detail {

const DeviceHandle& LabAccess::handle(const Communicator& c) { return c.impl_->custom->handle(); }

Plan LabAccess::plan(const Communicator& c, size_t count, DataType dtype) {
  return plan_launch(c.impl_->facts, c.impl_->limits, count, dtype);
}

void LabAccess::replace_kernels(Communicator& c, std::unique_ptr<Kernels> kernels) {
  Communicator::Impl& impl = *c.impl_;
  if (!impl.kernels || !impl.custom) throw StateError("LabAccess: the communicator runs no custom kernels");
  impl.kernels = std::move(kernels);
  impl.limits = launch_limits(*impl.kernels, impl.custom->handle().max_blocks, impl.limits.pdl);
}

}  // namespace detail

Communicator::Communicator(Group& group, int device, const CommOptions& options)
    : impl_(std::make_unique<Impl>(group, device, options)) {}
Communicator::~Communicator() = default;

void Communicator::all_reduce(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream) {
  impl_->all_reduce(in, out, count, dtype, stream);
}
void Communicator::all_reduce_add_rmsnorm(const AddRmsNormArgs& args, cudaStream_t stream) {
  impl_->all_reduce_add_rmsnorm(args, stream);
}
NormPath Communicator::norm_path_for(size_t tokens, size_t hidden, DataType dtype, bool fp8_out) const {
  if (impl_->backend() == Backend::kNone) return NormPath::kUnfused;
  return plan_norm_call(impl_->facts, tokens, hidden, dtype, fp8_out).path;
}
void Communicator::set_norm_path(std::optional<NormPath> path) { impl_->facts.force_norm_path = path; }
void Communicator::check() { impl_->check_failed(); }
void Communicator::set_algo(std::optional<Algo> algo) { impl_->facts.force_algo = algo; }
Backend Communicator::backend() const { return impl_->backend(); }
const std::string& Communicator::reason() const { return impl_->reason; }
Algo Communicator::algo_for(size_t count, DataType dtype) const {
  if (impl_->backend() == Backend::kNone) return Algo::kNccl;
  return plan_call(impl_->facts, count, dtype).algo;
}
size_t Communicator::capacity() const { return impl_->capacity(); }

void Communicator::all_reduce_symmetric(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream) {
  Impl::validate(in, out, count, dtype);
  impl_->require_symmetric(in, count * dtype_size(dtype));
  impl_->all_reduce(in, out, count, dtype, stream);
}
void* Communicator::alloc_symmetric(size_t bytes) { return impl_->alloc_symmetric(bytes); }
void Communicator::free_symmetric(void* ptr) { impl_->free_symmetric(ptr); }
size_t Communicator::symmetric_bytes() const { return impl_->symmetric ? impl_->symmetric->bytes() : 0; }
CallPlan Communicator::plan_for(const void* in, const void* out, size_t count, DataType dtype) const {
  Impl::validate(in, out, count, dtype);
  const Impl::SymmetricUse use = impl_->symmetric_use(in, out, count * dtype_size(dtype));
  if (impl_->backend() == Backend::kNone) return {Algo::kNccl, "world size 1: the call is a copy"};
  return plan_call(impl_->facts, count, dtype, use.buffers);
}
int Communicator::rank() const { return impl_->rank; }
int Communicator::size() const { return impl_->world; }
int Communicator::device() const { return impl_->device; }

}  // namespace customar
