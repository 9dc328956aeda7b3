#include "customar/types.h"

#include <string>

#include "customar/error.h"

namespace customar {

size_t dtype_size(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat16:
      return 2;
    case DataType::kBFloat16:
      return 2;
    case DataType::kFloat32:
      return 4;
  }
  throw InvalidArgument("unknown DataType " + std::to_string(static_cast<int>(dtype)) +
                        "; allowed: kFloat16 (0), kBFloat16 (1), kFloat32 (2)");
}

std::string_view dtype_name(DataType dtype) {
  switch (dtype) {
    case DataType::kFloat16:
      return "fp16";
    case DataType::kBFloat16:
      return "bf16";
    case DataType::kFloat32:
      return "fp32";
  }
  throw InvalidArgument("unknown DataType " + std::to_string(static_cast<int>(dtype)) +
                        "; allowed: kFloat16 (0), kBFloat16 (1), kFloat32 (2)");
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
