// Plain value types shared by every part of customar: data types, backends, algorithms.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace customar {

/// Element type of an all-reduce; the reduction is always a sum. customar's own kernels sum fp16, bf16 and fp32
/// (accumulating in fp32); every other type is one NCCL sums and goes to NCCL on every rank alike (integers wrap as
/// NCCL's do; the fp8 types need NCCL 2.24 or newer).
enum class DataType : int {
  kFloat16 = 0,
  kBFloat16 = 1,
  kFloat32 = 2,
  kFloat64 = 3,
  kInt8 = 4,
  kUInt8 = 5,
  kInt32 = 6,
  kUInt32 = 7,
  kInt64 = 8,
  kUInt64 = 9,
  kFloat8E4M3 = 10,  ///< OCP e4m3 ("fn": no infinities)
  kFloat8E5M2 = 11,
};

/// Number of DataType values (they are 0..kDataTypeCount-1).
inline constexpr int kDataTypeCount = 12;

/// Size of one element in bytes. Throws InvalidArgument for a value outside DataType.
size_t dtype_size(DataType dtype);

/// "fp16", "bf16", "fp32", "fp64", "int8", "uint8", "int32", "uint32", "int64", "uint64", "fp8e4m3", "fp8e5m2".
/// Throws InvalidArgument for a value outside DataType.
std::string_view dtype_name(DataType dtype);

/// True for the types customar's own kernels reduce (fp16, bf16, fp32); the others always go to NCCL.
bool custom_dtype(DataType dtype);

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
