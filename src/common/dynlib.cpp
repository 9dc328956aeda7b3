#include "common/dynlib.h"

#include <dlfcn.h>

namespace customar::detail {

bool DynLib::open(std::initializer_list<const char*> names) {
  for (const char* n : names) {
    handle_ = dlopen(n, RTLD_NOW | RTLD_LOCAL);
    if (handle_ != nullptr) {
      name_ = n;
      return true;
    }
    const char* e = dlerror();
    if (!error_.empty()) error_ += "; ";
    error_ += e != nullptr ? e : n;
  }
  return false;
}

void* DynLib::sym(const char* name) const { return handle_ != nullptr ? dlsym(handle_, name) : nullptr; }

}  // namespace customar::detail
