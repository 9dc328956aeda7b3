#include "kernels/v2/v2_kernels.h"

#include <algorithm>

#include "common/check.h"
#include "common/log.h"
#include "customar/env.h"
#include "jit/compiler.h"
#include "kernels/v1/launch.h"

namespace customar::detail {

extern const char* const kV2DeviceSource;  // generated at build time from src/kernels/{handle.h,device/*.cuh}

namespace {
const char* const kAlgoNames[3] = {"oneshot_push", "oneshot_pull", "twoshot"};
const char* const kTypeNames[3] = {"f16", "bf16", "f32"};
const char* const kTypeDecls[3] = {"f16", "bf16", "float"};
const char* const kBodies[3] = {"oneshot_push_body", "oneshot_pull_body", "twoshot_body"};
// How each kernel takes its handle. __grid_constant__ keeps the parameter where it is instead of copying it to local
// memory (the body indexes regions[] at run time); a same-lease A/B on 2x H200 (bench/NOTES.md) found it faster for
// the pull at every size (8-16 MiB by 1.5 us) but 0.1-0.2 us slower for the push and for two-shot below 1 MiB.
const char* const kHandleDecl[3] = {"customar::detail::DeviceHandle",
                                    "const __grid_constant__ customar::detail::DeviceHandle",
                                    "customar::detail::DeviceHandle"};

int algo_index(Algo a) {
  switch (a) {
    case Algo::kOneshotPush:
      return 0;
    case Algo::kOneshotPull:
      return 1;
    case Algo::kTwoshot:
      return 2;
    default:
      throw InvalidArgument("V2 has no kernel for algorithm " + std::string(algo_name(a)));
  }
}
}  // namespace

// The push has no per-block flags, so its grid may exceed kMaxBlocks: with 128-thread blocks, four fit on an SM.
constexpr size_t kMaxPushBlocks = 512;

PushShape push_shape(size_t nvec, int max_blocks, int threads) {
  // Built-in shape, from the block-shape sweep on 2x H200 (bench/NOTES.md): one block while the message fits 256
  // threads (a second block costs more than the extra warps), then blocks of 128 threads, which from 8 KiB on beat
  // 512-thread blocks by 0.3-0.6 us: fewer warps per SM to poll and more SMs issuing the remote stores.
  const size_t single = threads > 0 ? static_cast<size_t>(threads) : 256;
  const size_t per_block = threads > 0 ? static_cast<size_t>(threads) : 128;
  if (nvec <= single) {
    // One block with one thread per vector (whole warps).
    return {1u, static_cast<unsigned>(nvec < 32 ? 32 : (nvec + 31) / 32 * 32)};
  }
  const size_t cap = std::clamp<size_t>(static_cast<size_t>(max_blocks) * kThreads / per_block, 1, kMaxPushBlocks);
  const size_t blocks = std::min((nvec + per_block - 1) / per_block, cap);
  return {static_cast<unsigned>(blocks), static_cast<unsigned>(per_block)};
}

std::string v2_module_name(int world) { return "customar_v2_w" + std::to_string(world); }

std::string v2_source(int world) {
  std::string s = kV2DeviceSource;
  s += "\nnamespace customar::detail {\nconstexpr int kWorld = " + std::to_string(world) + ";\n}\n";
  for (int a = 0; a < 3; ++a) {
    for (int t = 0; t < 3; ++t) {
      s += std::string("extern \"C\" __global__ void __launch_bounds__(512) customar_v2_") + kAlgoNames[a] + "_" +
           kTypeNames[t] + "(" + kHandleDecl[a] +
           " h, const void* in, void* out, size_t nvec, int in_aligned, int out_aligned) {\n  using namespace "
           "customar::detail;\n  " +
           kBodies[a] + "<" + kTypeDecls[t] + ", kWorld, true>(h, static_cast<const " + kTypeDecls[t] +
           "*>(in), static_cast<" + kTypeDecls[t] + "*>(out), nvec, in_aligned != 0, out_aligned != 0);\n}\n";
    }
  }
  return s;
}

V2Kernels::V2Kernels(int world, int sm) {
  JitResult jit = jit_compile(v2_module_name(world), v2_source(world), sm);
  compile_ms_ = jit.ms;
  compile_source_ = jit.source == JitResult::Source::kCompiled ? "compiled"
                    : jit.source == JitResult::Source::kDisk   ? "disk cache"
                                                               : "memo";
  CUSTOMAR_CUDA_CHECK(cudaLibraryLoadData(&lib_, jit.cubin.data(), nullptr, nullptr, 0, nullptr, nullptr, 0));
  try {
    for (int a = 0; a < 3; ++a)
      for (int t = 0; t < 3; ++t) {
        std::string name = std::string("customar_v2_") + kAlgoNames[a] + "_" + kTypeNames[t];
        CUSTOMAR_CUDA_CHECK(cudaLibraryGetKernel(&kernels_[a][t], lib_, name.c_str()));
      }
  } catch (...) {
    // The destructor does not run for a constructor that throws: unload here, or the library leaks.
    (void)cudaLibraryUnload(lib_);
    lib_ = nullptr;
    throw;
  }
}

V2Kernels::~V2Kernels() {
  if (lib_ != nullptr) (void)cudaLibraryUnload(lib_);
}

void V2Kernels::launch(Algo algo, const DeviceHandle& h, const void* in, void* out, size_t count, DataType dtype,
                       cudaStream_t stream) const {
  const size_t bytes = count * dtype_size(dtype);
  const int t = dtype == DataType::kFloat16 ? 0 : dtype == DataType::kBFloat16 ? 1 : 2;
  cudaKernel_t kernel = kernels_[algo_index(algo)][t];
  DeviceHandle handle = h;
  size_t nvec = bytes / 16;
  int in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  int out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;
  void* args[] = {&handle, const_cast<void**>(&in), &out, &nvec, &in_aligned, &out_aligned};
  cudaLaunchConfig_t cfg{};
  if (algo == Algo::kOneshotPush) {
    const PushShape shape = push_shape(nvec, h.max_blocks, env().push_threads);
    cfg.gridDim = dim3(shape.blocks);
    cfg.blockDim = dim3(shape.threads);
  } else {
    cfg.gridDim = dim3(static_cast<unsigned>(v1_grid(algo, bytes, h.world, h.max_blocks)));
    cfg.blockDim = dim3(kThreads);
  }
  cfg.stream = stream;
  // Programmatic dependent launch: this kernel may be scheduled while the previous one drains; it waits for it at
  // pdl_wait(). Captured into graphs as a programmatic edge.
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  CUSTOMAR_CUDA_CHECK(cudaLaunchKernelExC(&cfg, reinterpret_cast<const void*>(kernel), args));
}

}  // namespace customar::detail
