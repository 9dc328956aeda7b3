#include "kernels/v2/v2_kernels.h"

#include <cstdio>

#include "common/check.h"
#include "common/log.h"
#include "jit/compiler.h"

namespace customar::detail {

extern const char* const kV2DeviceSource;  // generated at build time from src/kernels/{handle.h,shape.h,device/*.cuh}

namespace {

// The custom dtypes in DataType order, with their suffix and device type.
struct V2Type {
  const char* suffix;
  const char* decl;
};
constexpr V2Type kV2Types[3] = {{"f16", "f16"}, {"bf16", "bf16"}, {"f32", "float"}};

int type_index(DataType dtype) {
  if (!custom_dtype(dtype))
    throw InvalidArgument("V2 has no kernel for dtype " + std::string(dtype_name(dtype)) + " (fp16, bf16, fp32 only)");
  return static_cast<int>(dtype);
}

class V2Kernels final : public Kernels {
 public:
  V2Kernels(int world, int sm, const std::string& device_source) {
    JitResult jit = jit_compile(v2_module_name(world), v2_source(world, device_source), sm);
    const char* from = jit.source == JitResult::Source::kCompiled ? "compiled"
                       : jit.source == JitResult::Source::kDisk   ? "loaded from the disk cache"
                                                                  : "reused";
    char buf[96];
    std::snprintf(buf, sizeof(buf), "V2 kernels %s in %.0f ms", from, jit.ms);
    describe_ = buf;
    CUSTOMAR_CUDA_CHECK(cudaLibraryLoadData(&lib_, jit.cubin.data(), nullptr, nullptr, 0, nullptr, nullptr, 0));
    try {
      for (const KernelVariant& v : kKernelVariants)
        for (int t = 0; t < 3; ++t) {
          const std::string name = v2_entry_name(v.id, static_cast<DataType>(t));
          CUSTOMAR_CUDA_CHECK(cudaLibraryGetKernel(&kernels_[static_cast<int>(v.id)][t], lib_, name.c_str()));
          load_into_context(reinterpret_cast<const void*>(kernels_[static_cast<int>(v.id)][t]));
        }
      measure_push_residency();
    } catch (...) {
      // The destructor does not run for a constructor that throws: unload here, or the library leaks.
      (void)cudaLibraryUnload(lib_);
      throw;
    }
  }
  ~V2Kernels() override { (void)cudaLibraryUnload(lib_); }
  V2Kernels(const V2Kernels&) = delete;
  V2Kernels& operator=(const V2Kernels&) = delete;

  void launch(const Plan& plan, const DeviceHandle& h, const void* in, void* out, DataType dtype,
              cudaStream_t stream) const override {
    if (takes_norm_call(plan.kernel))
      throw InvalidArgument(std::string("launch: ") + kernel_variant(plan.kernel).name + " takes a NormCall");
    DeviceHandle handle = h;
    size_t nvec = plan.nvec;
    int in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
    int out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;
    void* args[] = {&handle, const_cast<void**>(&in), &out, &nvec, &in_aligned, &out_aligned};
    launch_entry(plan, kernels_[static_cast<int>(plan.kernel)][type_index(dtype)], args, stream);
  }

  void launch_norm(const Plan& plan, const DeviceHandle& h, const NormCall& call, DataType dtype,
                   cudaStream_t stream) const override {
    if (!takes_norm_call(plan.kernel))
      throw InvalidArgument(std::string("launch_norm: ") + kernel_variant(plan.kernel).name +
                            " is not an all-reduce + RMSNorm kernel");
    DeviceHandle handle = h;
    NormCall c = call;
    void* args[] = {&handle, &c};
    launch_entry(plan, kernels_[static_cast<int>(plan.kernel)][type_index(dtype)], args, stream);
  }

  int push_sm_threads(Kernel kernel, DataType dtype) const override {
    return push_sm_threads_[type_index(dtype)][kernel == Kernel::kPushWide ? 1 : 0];
  }

  std::string describe() const override { return describe_; }

 private:
  // A push grid of up to kPushThreadsPerSm threads per SM only where that many of the kernel that runs it are
  // resident per SM at once on the current device: register use grows with the world size (about 84 per thread at 8
  // ranks), so this is asked, not assumed; a failed query keeps the cap __launch_bounds__ guarantees.
  void measure_push_residency() {
    const Kernel kind_of[2] = {Kernel::kPushMultiBlock, Kernel::kPushWide};
    const int block_of[2] = {kPushBlock, kWidePushBlock};
    for (int t = 0; t < 3; ++t)
      for (int w = 0; w < 2; ++w) {
        int resident = 0;
        const cudaError_t err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            &resident, reinterpret_cast<const void*>(kernels_[static_cast<int>(kind_of[w])][t]), block_of[w], 0);
        if (err != cudaSuccess) {
          (void)cudaGetLastError();
          CUSTOMAR_WARN("JIT", "occupancy of the V2 push (%s, %s) unknown (%s): its grid keeps %d threads per SM",
                        kernel_variant(kind_of[w]).name, kV2Types[t].suffix, cudaGetErrorName(err),
                        kSafePushThreadsPerSm);
          resident = 0;
        }
        push_sm_threads_[t][w] =
            resident * block_of[w] >= kPushThreadsPerSm ? kPushThreadsPerSm : kSafePushThreadsPerSm;
      }
  }

  // Launches `kernel` on the plan's grid with `args`. Programmatic dependent launch: this kernel may be scheduled
  // while the previous one drains; it waits for it at pdl_wait(). Captured into graphs as a programmatic edge.
  static void launch_entry(const Plan& plan, cudaKernel_t kernel, void** args, cudaStream_t stream) {
    cudaLaunchConfig_t cfg{};
    cfg.gridDim = dim3(plan.grid);
    cfg.blockDim = dim3(plan.block);
    cfg.stream = stream;
    cudaLaunchAttribute attr{};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = plan.pdl ? 1 : 0;
    CUSTOMAR_CUDA_CHECK(cudaLaunchKernelExC(&cfg, reinterpret_cast<const void*>(kernel), args));
  }

  cudaLibrary_t lib_ = nullptr;
  cudaKernel_t kernels_[kKernelCount][3] = {};
  int push_sm_threads_[3][2] = {};
  std::string describe_;
};

}  // namespace

std::string v2_device_source() { return kV2DeviceSource; }

std::string v2_module_name(int world) { return "customar_v2_w" + std::to_string(world); }

std::string v2_entry_name(Kernel kernel, DataType dtype) {
  return std::string("customar_v2_") + kernel_variant(kernel).name + "_" + kV2Types[type_index(dtype)].suffix;
}

std::string v2_source(int world) { return v2_source(world, v2_device_source()); }

std::string v2_source(int world, const std::string& device_source) {
  std::string s = device_source;
  s += "\n// ---- V2 entry points (generated by customar from kernels/variants.h)\n";
  s += "namespace customar::detail {\nconstexpr int kWorld = " + std::to_string(world) + ";\n}\n";
  for (const KernelVariant& v : kKernelVariants) {
    const std::string handle =
        std::string(v.grid_constant ? "const __grid_constant__ " : "") + "customar::detail::DeviceHandle";
    for (int t = 0; t < 3; ++t) {
      const std::string type = kV2Types[t].decl;
      s += "extern \"C\" __global__ void __launch_bounds__(512) " + v2_entry_name(v.id, static_cast<DataType>(t)) +
           "(" + handle + " h, ";
      if (takes_norm_call(v.id)) {
        s += "customar::detail::NormCall c) {\n  using namespace customar::detail;\n  " + std::string(v.body) + "<" +
             type + ", kWorld, true>(h, c);\n}\n";
        continue;
      }
      s += "const void* in, void* out, size_t nvec, int in_aligned, int out_aligned) {\n  using namespace "
           "customar::detail;\n  " +
           std::string(v.body) + "<" + type + ", kWorld, true>(h, static_cast<const " + type + "*>(in), static_cast<" +
           type + "*>(out), nvec, in_aligned != 0, out_aligned != 0);\n}\n";
    }
  }
  return s;
}

std::unique_ptr<Kernels> make_v2_kernels(int world, int sm) {
  return make_v2_kernels_from_source(world, sm, kV2DeviceSource);
}

std::unique_ptr<Kernels> make_v2_kernels_from_source(int world, int sm, const std::string& device_source) {
  return std::make_unique<V2Kernels>(world, sm, device_source);
}

}  // namespace customar::detail
