#include <customar/config.h>
#include <customar/dispatch.h>

#include <cstdio>

int main() {
  customar::Decision d =
      customar::decide_backend(customar::example_topology(), customar::builtin_config(), customar::DispatchOptions{});
  std::printf("package consumer: example machine -> %s\n", std::string(customar::backend_name(d.backend)).c_str());
  return d.backend == customar::Backend::kV2 ? 0 : 1;
}
