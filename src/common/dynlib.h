// dlopen'ed libraries (NVML, NVRTC): customar must load on machines without them and report them as unavailable.
#pragma once

#include <initializer_list>
#include <string>

namespace customar::detail {

class DynLib {
 public:
  DynLib() = default;
  DynLib(const DynLib&) = delete;
  DynLib& operator=(const DynLib&) = delete;
  /// Tries each name in turn (RTLD_NOW | RTLD_LOCAL). Returns false and remembers dlerror() if none loads.
  bool open(std::initializer_list<const char*> names);
  bool loaded() const { return handle_ != nullptr; }
  /// The symbol's address, or nullptr.
  void* sym(const char* name) const;
  template <typename F>
  bool bind(const char* name, F* fn) const {
    *fn = reinterpret_cast<F>(sym(name));
    return *fn != nullptr;
  }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }

 private:
  void* handle_ = nullptr;  // never closed: drivers' libraries do not support unloading safely
  std::string error_;
  std::string name_;
};

}  // namespace customar::detail
