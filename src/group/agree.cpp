#include "group/agree.h"

#include "customar/error.h"

namespace customar::detail {

void agree_or_throw(Group& group, const std::string& my_error, const std::string& step) {
  std::vector<Bytes> all =
      group.all_gather(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(my_error.data()), my_error.size()));
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    if (!all[r].empty())
      throw Error(step + " failed on rank " + std::to_string(r) + ": " + std::string(all[r].begin(), all[r].end()));
  }
}

}  // namespace customar::detail
