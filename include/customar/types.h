// Plain value types shared by every part of customar: data types, backends, algorithms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace customar {

/// Element type of an all-reduce. The reduction is always a sum, accumulated in fp32.
enum class DataType : int { kFloat16 = 0, kBFloat16 = 1, kFloat32 = 2 };

/// Size of one element in bytes. Throws InvalidArgument for a value outside DataType.
size_t dtype_size(DataType dtype);

/// "fp16", "bf16", "fp32". Throws InvalidArgument for a value outside DataType.
std::string_view dtype_name(DataType dtype);

/// The backend that serves a communicator, in the order of preference V2 > V1 > NCCL.
/// kNone means there is nothing to do (world size 1).
enum class Backend : int { kNone = 0, kNccl = 1, kV1 = 2, kV2 = 3 };

/// "none", "nccl", "v1", "v2".
std::string_view backend_name(Backend backend);

/// The algorithm that runs one call.
enum class Algo : int {
  kNccl = 0,         ///< ncclAllReduce.
  kOneshotPush = 1,  ///< every rank pushes its data into every peer's slot (flag in the data), then reduces locally.
  kOneshotPull = 2,  ///< every rank reads every peer's buffer and reduces all of it.
  kTwoshot = 3,      ///< reduce-scatter then all-gather; each rank reduces 1/N of the data.
};

/// "nccl", "oneshot_push", "oneshot_pull", "twoshot".
std::string_view algo_name(Algo algo);

/// Parses algo_name()'s spelling. Returns false if `name` is none of them.
bool parse_algo(std::string_view name, Algo* out);

/// Smallest and largest world sizes served by the custom backends. Larger or smaller groups use NCCL.
inline constexpr int kMinWorldSize = 2;
inline constexpr int kMaxWorldSize = 8;

}  // namespace customar
