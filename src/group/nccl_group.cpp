// A Group over an existing NCCL communicator, for applications that already have one (one rank per GPU). The NCCL
// that drives it is the process's (nccl/nccl_loader.h), which finds the application's own NCCL first: the library
// that made the communicator.
#include <cuda_runtime_api.h>

#include <algorithm>

#include "common/check.h"
#include "common/device_guard.h"
#include "customar/group.h"
#include "nccl/nccl_loader.h"

namespace customar {

namespace {

using detail::DeviceGuard;

class NcclGroup final : public Group {
 public:
  NcclGroup(ncclComm_t comm, int device) : comm_(comm), device_(device) {
    CUSTOMAR_NCCL_CHECK(nccl_.ncclCommUserRank(comm, &rank_));
    CUSTOMAR_NCCL_CHECK(nccl_.ncclCommCount(comm, &size_));
    DeviceGuard g(device_);
    CUSTOMAR_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~NcclGroup() override {
    DeviceGuard g(device_);
    (void)cudaStreamDestroy(stream_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  std::vector<Bytes> all_gather(std::span<const uint8_t> in) override {
    uint64_t len = in.size();
    std::vector<uint64_t> lens(size_);
    gather_raw(&len, sizeof(len), lens.data());
    size_t longest = *std::max_element(lens.begin(), lens.end());
    std::vector<uint8_t> padded(std::max<size_t>(longest, 1), 0);
    std::copy(in.begin(), in.end(), padded.begin());
    std::vector<uint8_t> all(padded.size() * size_);
    gather_raw(padded.data(), padded.size(), all.data());
    std::vector<Bytes> out(size_);
    for (int r = 0; r < size_; ++r)
      out[r].assign(all.begin() + r * padded.size(), all.begin() + r * padded.size() + lens[r]);
    return out;
  }

  void barrier() override {
    uint8_t b = 0;
    std::vector<uint8_t> all(size_);
    gather_raw(&b, 1, all.data());
  }

 private:
  void gather_raw(const void* in, size_t bytes, void* out) {
    DeviceGuard g(device_);
    void* dev = nullptr;
    CUSTOMAR_CUDA_CHECK(cudaMalloc(&dev, bytes * (size_ + 1)));
    auto* dout = static_cast<uint8_t*>(dev) + bytes;
    try {
      CUSTOMAR_CUDA_CHECK(cudaMemcpyAsync(dev, in, bytes, cudaMemcpyHostToDevice, stream_));
      CUSTOMAR_NCCL_CHECK(nccl_.ncclAllGather(dev, dout, bytes, detail::NcclType::kUint8, comm_, stream_));
      CUSTOMAR_CUDA_CHECK(cudaMemcpyAsync(out, dout, bytes * size_, cudaMemcpyDeviceToHost, stream_));
      CUSTOMAR_CUDA_CHECK(cudaStreamSynchronize(stream_));
    } catch (...) {
      (void)cudaFree(dev);
      throw;
    }
    CUSTOMAR_CUDA_CHECK(cudaFree(dev));
  }

  const detail::NcclApi& nccl_ = detail::nccl_api();  // throws NcclError naming what was tried when none is usable
  ncclComm_t comm_;
  int device_;
  int rank_ = 0;
  int size_ = 0;
  cudaStream_t stream_ = nullptr;
};

}  // namespace

std::unique_ptr<Group> make_nccl_group(ncclComm_t comm, int device) {
  CUSTOMAR_ARG_CHECK(comm != nullptr, "make_nccl_group: comm is null");
  return std::make_unique<NcclGroup>(comm, device);
}

}  // namespace customar
