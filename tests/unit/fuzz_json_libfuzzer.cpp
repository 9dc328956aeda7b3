// libFuzzer entry point for the JSON readers, for runs longer than CI's (tests/unit/CMakeLists.txt builds it when
// the compiler is clang): every input is tried as a topology file and as a config file, under the checks of
// fuzz_json_checks.h; a failed check aborts, which libFuzzer reports with the input.
//   fuzz_json_libfuzzer -max_total_time=600 -max_len=4096 corpus/ tests/unit/data tests/unit/fuzz_seeds
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "fuzz_json_checks.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const customar::Config base = customar::builtin_config();
  const std::string input(reinterpret_cast<const char*>(data), size);
  try {
    customar::fuzz::check_topology(input);
    customar::fuzz::check_config(input, base);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_json: %s\n", e.what());
    std::abort();
  }
  return 0;
}
