// One small switch from run-time (world size, dtype) to template parameters, so kernels are written once.
#pragma once

#include <string>
#include <type_traits>

#include "customar/error.h"
#include "customar/types.h"
#include "kernels/device/common.cuh"

namespace customar::detail {

template <typename F>
void with_world(int world, F&& f) {
  switch (world) {
    case 2:
      f(std::integral_constant<int, 2>{});
      break;
    case 3:
      f(std::integral_constant<int, 3>{});
      break;
    case 4:
      f(std::integral_constant<int, 4>{});
      break;
    case 5:
      f(std::integral_constant<int, 5>{});
      break;
    case 6:
      f(std::integral_constant<int, 6>{});
      break;
    case 7:
      f(std::integral_constant<int, 7>{});
      break;
    case 8:
      f(std::integral_constant<int, 8>{});
      break;
    default:
      throw InvalidArgument("custom kernels serve world sizes 2..8, not " + std::to_string(world));
  }
}

template <typename F>
void with_dtype(DataType dtype, F&& f) {
  switch (dtype) {
    case DataType::kFloat16:
      f(f16{});
      break;
    case DataType::kBFloat16:
      f(bf16{});
      break;
    case DataType::kFloat32:
      f(float{});
      break;
    default:
      throw InvalidArgument("unknown DataType " + std::to_string(static_cast<int>(dtype)));
  }
}

}  // namespace customar::detail
