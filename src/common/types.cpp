#include "customar/types.h"

#include <string>

#include "customar/error.h"

namespace customar {

namespace {

struct TypeInfo {
  size_t size;
  const char* name;
};

// Indexed by the DataType value.
constexpr TypeInfo kTypes[kDataTypeCount] = {
    {2, "fp16"},  {2, "bf16"},   {4, "fp32"},  {8, "fp64"},   {1, "int8"},    {1, "uint8"},
    {4, "int32"}, {4, "uint32"}, {8, "int64"}, {8, "uint64"}, {1, "fp8e4m3"}, {1, "fp8e5m2"},
};

const TypeInfo& type_info(DataType dtype) {
  const int v = static_cast<int>(dtype);
  if (v < 0 || v >= kDataTypeCount)
    throw InvalidArgument("unknown DataType " + std::to_string(v) + "; allowed: 0.." +
                          std::to_string(kDataTypeCount - 1) + " (kFloat16 .. kFloat8E5M2)");
  return kTypes[v];
}

}  // namespace

size_t dtype_size(DataType dtype) { return type_info(dtype).size; }

std::string_view dtype_name(DataType dtype) { return type_info(dtype).name; }

bool custom_dtype(DataType dtype) {
  (void)type_info(dtype);
  return dtype == DataType::kFloat16 || dtype == DataType::kBFloat16 || dtype == DataType::kFloat32;
}

std::string_view backend_name(Backend backend) {
  switch (backend) {
    case Backend::kNone:
      return "none";
    case Backend::kNccl:
      return "nccl";
    case Backend::kV1:
      return "v1";
    case Backend::kV2:
      return "v2";
  }
  return "unknown";
}

std::string_view algo_name(Algo algo) {
  switch (algo) {
    case Algo::kNccl:
      return "nccl";
    case Algo::kOneshotPush:
      return "oneshot_push";
    case Algo::kOneshotPull:
      return "oneshot_pull";
    case Algo::kTwoshot:
      return "twoshot";
  }
  return "unknown";
}

bool parse_algo(std::string_view name, Algo* out) {
  for (Algo a : {Algo::kNccl, Algo::kOneshotPush, Algo::kOneshotPull, Algo::kTwoshot}) {
    if (algo_name(a) == name) {
      *out = a;
      return true;
    }
  }
  return false;
}

}  // namespace customar
