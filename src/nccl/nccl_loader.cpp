#include "nccl/nccl_loader.h"

#include <dlfcn.h>
#include <link.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <memory>
#include <mutex>

#include "common/log.h"
#include "customar/env.h"
#include "customar/error.h"

namespace customar::detail {

namespace {

constexpr const char* kSoname = "libnccl.so.2";

// The file that defines `symbol` (a loaded object's own name for it), or "".
std::string defining_file(const void* symbol) {
  Dl_info info{};
  if (symbol == nullptr || dladdr(symbol, &info) == 0 || info.dli_fname == nullptr) return "";
  return info.dli_fname;
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  return realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}

// The file of the NCCL whose ncclGetVersion `handle`'s scope resolves to ("" if none), added to `out` once.
void add_nccl_of(void* handle, std::vector<std::string>* out) {
  if (handle == nullptr) return;
  const std::string file = defining_file(dlsym(handle, "ncclGetVersion"));
  dlclose(handle);  // only drops the reference RTLD_NOLOAD took: the object was loaded before and stays
  if (!file.empty() && std::find(out->begin(), out->end(), file) == out->end()) out->push_back(file);
}

// Every NCCL loaded in this process, the one under NCCL's soname first. The soname (RTLD_NOLOAD) is what an
// application's own NCCL calls bind to when it links NCCL or loads it by name (PyTorch, CuPy, JAX and C++ engines all
// do), so it is the library that made any communicator the application hands over. The scan of every loaded object
// (dl_iterate_phdr) then also finds an NCCL that carries another name, e.g. one linked into an application's own
// shared library with its symbols exported. dladdr names the file that really defines the symbol, since a lookup
// through an object also searches that object's dependencies.
std::vector<std::string> loaded_nccls() {
  std::vector<std::string> found;
  add_nccl_of(dlopen(kSoname, RTLD_NOW | RTLD_NOLOAD), &found);
  // dlopen must not be called inside the callback (it runs under the loader's lock), so collect names first.
  std::vector<std::string> objects;
  dl_iterate_phdr(
      [](struct dl_phdr_info* info, size_t, void* data) {
        if (info->dlpi_name != nullptr && info->dlpi_name[0] != '\0')
          static_cast<std::vector<std::string>*>(data)->push_back(info->dlpi_name);
        return 0;
      },
      &objects);
  for (const std::string& o : objects) add_nccl_of(dlopen(o.c_str(), RTLD_NOW | RTLD_NOLOAD), &found);
  return found;
}

template <typename F>
bool bind(void* handle, const char* name, F* fn) {
  *fn = reinterpret_cast<F>(dlsym(handle, name));
  return *fn != nullptr;
}

// Binds the required entry points; returns the names of those missing.
std::string bind_required(void* h, NcclApi* api) {
  std::string missing;
  auto need = [&](const char* name, auto* fn) {
    if (!bind(h, name, fn)) missing += std::string(missing.empty() ? "" : ", ") + name;
  };
  need("ncclGetUniqueId", &api->ncclGetUniqueId);
  need("ncclCommInitRank", &api->ncclCommInitRank);
  need("ncclCommDestroy", &api->ncclCommDestroy);
  need("ncclCommAbort", &api->ncclCommAbort);
  need("ncclCommCount", &api->ncclCommCount);
  need("ncclCommUserRank", &api->ncclCommUserRank);
  need("ncclAllReduce", &api->ncclAllReduce);
  need("ncclAllGather", &api->ncclAllGather);
  need("ncclGetErrorString", &api->ncclGetErrorString);
  return missing;
}

void bind_optional(void* h, NcclApi* api) {
  bind(h, "ncclMemAlloc", &api->ncclMemAlloc);
  bind(h, "ncclMemFree", &api->ncclMemFree);
  bind(h, "ncclCommWindowRegister", &api->ncclCommWindowRegister);
  bind(h, "ncclCommWindowDeregister", &api->ncclCommWindowDeregister);
}

// Checks an opened library and fills `api`; "" or why it is not usable.
std::string check_and_bind(void* h, NcclApi* api) {
  if (!bind(h, "ncclGetVersion", &api->ncclGetVersion)) return "exports no ncclGetVersion: not an NCCL library";
  int v = 0;
  NcclResult r = api->ncclGetVersion(&v);
  if (r != kNcclSuccess) return "ncclGetVersion failed with NCCL error " + std::to_string(static_cast<int>(r));
  if (v < kMinNcclVersion)
    return "is NCCL " + nccl_version_text(v) + ", older than " + nccl_version_text(kMinNcclVersion) +
           ", the oldest customar supports";
  const std::string missing = bind_required(h, api);
  if (!missing.empty()) return "is NCCL " + nccl_version_text(v) + " but lacks " + missing;
  bind_optional(h, api);
  api->version = v;
  api->path = defining_file(reinterpret_cast<const void*>(api->ncclGetVersion));
  return "";
}

// Opens one candidate; "" with `api` filled, or why not (the library is closed again then).
std::string try_candidate(const NcclCandidate& c, NcclApi* api) {
  const int flags = RTLD_NOW | RTLD_LOCAL | (c.rule == NcclRule::kLoaded ? RTLD_NOLOAD : 0);
  dlerror();
  void* h = dlopen(c.path.c_str(), flags);
  if (h == nullptr) {
    const char* e = dlerror();
    return std::string("cannot be loaded: ") + (e != nullptr ? e : "dlopen failed");
  }
  *api = NcclApi{};
  std::string why = check_and_bind(h, api);
  if (!why.empty()) dlclose(h);  // a usable library stays loaded for the life of the process
  return why;
}

struct ProcessState {
  std::mutex mu;
  std::optional<std::string> python_path;
  std::unique_ptr<const NcclLibrary> resolved;  // set once, on the first usable resolution; never changed after
};

ProcessState& state() {
  static ProcessState s;
  return s;
}

}  // namespace

std::string nccl_version_text(int code) {
  const bool old = code < 10000;  // NCCL_VERSION's encoding up to 2.8: major * 1000 + minor * 100 + patch
  const int major = old ? code / 1000 : code / 10000;
  const int minor = old ? code % 1000 / 100 : code % 10000 / 100;
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(code % 100);
}

const char* nccl_rule_text(NcclRule rule) {
  switch (rule) {
    case NcclRule::kLoaded:
      return "already loaded in this process";
    case NcclRule::kEnv:
      return "CUSTOMAR_NCCL_LIBRARY";
    case NcclRule::kPython:
      return "the nvidia-nccl-cu13 wheel";
    case NcclRule::kSystem:
      return "the system's libnccl.so.2";
  }
  return "unknown";
}

std::vector<NcclCandidate> nccl_candidates(const std::string& env_path, const std::optional<std::string>& python_path,
                                           std::vector<std::string>* notes) {
  std::vector<NcclCandidate> out;
  const std::vector<std::string> loaded = loaded_nccls();
  for (const std::string& p : loaded) out.push_back({NcclRule::kLoaded, p});
  if (loaded.empty()) notes->push_back("no NCCL is loaded in this process yet");
  if (env_path.empty()) {
    notes->push_back("CUSTOMAR_NCCL_LIBRARY is unset");
  } else {
    if (!loaded.empty() && real_path(env_path) != real_path(loaded[0]))
      notes->push_back("CUSTOMAR_NCCL_LIBRARY=" + env_path + " comes after the NCCL already loaded (" + loaded[0] +
                       "): one process drives its communicators with one NCCL");
    out.push_back({NcclRule::kEnv, env_path});
  }
  if (!python_path.has_value())
    notes->push_back("not running from Python: the nvidia-nccl-cu13 wheel is not looked for");
  else if (python_path->empty())
    notes->push_back("the nvidia-nccl-cu13 wheel is not installed for this Python");
  else
    out.push_back({NcclRule::kPython, *python_path});
  out.push_back({NcclRule::kSystem, kSoname});
  return out;
}

NcclLibrary resolve_nccl(const std::vector<NcclCandidate>& candidates, std::vector<std::string> notes) {
  NcclLibrary lib;
  lib.notes = std::move(notes);
  for (const NcclCandidate& c : candidates) {
    NcclApi api;
    std::string why = try_candidate(c, &api);
    if (why.empty()) {
      lib.usable = true;
      lib.api = std::move(api);
      lib.rule = c.rule;
      return lib;
    }
    lib.notes.push_back(c.path + " (" + nccl_rule_text(c.rule) + ") " + why);
  }
  return lib;
}

std::string NcclLibrary::describe() const {
  if (!usable) return error();
  std::string s = "NCCL " + nccl_version_text(api.version) + " at " + api.path + " (" + nccl_rule_text(rule) + ")";
  for (const std::string& n : notes) s += "; " + n;
  return s;
}

std::string NcclLibrary::error() const {
  std::string s =
      "no usable NCCL library (customar needs NCCL >= " + nccl_version_text(kMinNcclVersion) + " at run time): ";
  for (size_t i = 0; i < notes.size(); ++i) s += (i > 0 ? "; " : "") + notes[i];
  return s +
         ". Install one (pip install nvidia-nccl-cu13, or the CUDA toolkit's or the distribution's libnccl2) or set "
         "CUSTOMAR_NCCL_LIBRARY to its libnccl.so.2";
}

NcclLibrary nccl_library() {
  ProcessState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.resolved) return *s.resolved;
  std::vector<std::string> notes;
  std::vector<NcclCandidate> candidates = nccl_candidates(env().nccl_library, s.python_path, &notes);
  NcclLibrary lib = resolve_nccl(candidates, std::move(notes));
  // The variable is an explicit request: say when it did not decide (rejected, or an NCCL was already loaded).
  if (!env().nccl_library.empty() && (!lib.usable || lib.rule != NcclRule::kEnv))
    CUSTOMAR_WARN("INIT", "CUSTOMAR_NCCL_LIBRARY=%s is not the NCCL used: %s", env().nccl_library.c_str(),
                  lib.describe().c_str());
  if (lib.usable) {
    s.resolved = std::make_unique<const NcclLibrary>(lib);
    CUSTOMAR_INFO("INIT", "%s", lib.describe().c_str());
  }
  return lib;
}

const NcclApi& nccl_api() {
  if (const NcclApi* api = resolved_nccl_api()) return *api;
  NcclLibrary lib = nccl_library();
  if (!lib.usable) throw NcclError(lib.error());
  return *resolved_nccl_api();
}

const NcclApi* resolved_nccl_api() {
  ProcessState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  return s.resolved ? &s.resolved->api : nullptr;
}

void set_python_nccl_library(const std::string& path) {
  ProcessState& s = state();
  std::lock_guard<std::mutex> lock(s.mu);
  s.python_path = path;
}

}  // namespace customar::detail
