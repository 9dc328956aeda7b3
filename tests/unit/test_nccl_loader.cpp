// Finding NCCL at run time (nccl/nccl_loader.h) and the NCCL path built on it (nccl/nccl_comm.h), against stand-in
// libraries (fake_nccl.cpp): every library that is not usable is named with its path and the reason, the order of
// the rules holds, an NCCL already loaded comes first, and a group agrees whether NCCL is usable on every rank.
// Each case runs in forked processes: what a case loads stays out of this process and out of the other cases.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <functional>
#include <string>

#include "customar/error.h"
#include "customar/launcher.h"
#include "nccl/nccl_comm.h"
#include "nccl/nccl_loader.h"

using namespace customar;
using namespace customar::detail;

namespace {

const std::string kDir = CUSTOMAR_FAKE_NCCL_DIR;
const std::string kOk = kDir + "/libfake_nccl_ok.so";           // 2.28.3, every entry point
const std::string kPreFp8 = kDir + "/libfake_nccl_pre_fp8.so";  // 2.21.5, no symmetric windows
const std::string kOld = kDir + "/libfake_nccl_old.so";         // 2.8.4
const std::string kNoAbort = kDir + "/libfake_nccl_no_abort.so";
const std::string kSoname = kDir + "/libfake_nccl_soname.so";  // SONAME libnccl.so.2
const std::string kMissing = kDir + "/no-such-libnccl.so.2";

// Runs `check` on `ranks` forked ranks; each returns "" or what went wrong (printed by the rank). True if all passed.
bool on_ranks(int ranks, const std::function<std::string(Group&)>& check) {
  auto exits = launch(
      ranks,
      [&](Group& g) {
        std::string failure = check(g);
        if (failure.empty()) return 0;
        std::fprintf(stderr, "rank %d: %s\n", g.rank(), failure.c_str());
        return 1;
      },
      LaunchOptions{60});
  bool ok = static_cast<int>(exits.size()) == ranks;
  for (const RankExit& e : exits) ok = ok && e.ok();
  return ok;
}
bool isolated(const std::function<std::string()>& check) {
  return on_ranks(1, [&](Group&) { return check(); });
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
std::string expect_in(const std::string& text, const std::string& part) {
  return contains(text, part) ? "" : "'" + part + "' is not in: " + text;
}

bool is_loaded(const std::string& path) {
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  if (h != nullptr) dlclose(h);
  return h != nullptr;
}

NcclLibrary resolve_one(NcclRule rule, const std::string& path) { return resolve_nccl({{rule, path}}); }

// "" when `f` throws NcclError whose message contains every one of `parts`; else what happened.
template <typename F>
std::string throws_nccl_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const NcclError& e) {
    for (const std::string& p : parts)
      if (!contains(e.what(), p)) return "NcclError without '" + p + "': " + e.what();
    return "";
  } catch (const std::exception& e) {
    return std::string("another error: ") + e.what();
  }
  return "no error";
}

}  // namespace

TEST(NcclLoader, MissingFileIsNamedWithTheLoadersReason) {
  EXPECT_TRUE(isolated([] {
    NcclLibrary lib = resolve_one(NcclRule::kEnv, kMissing);
    if (lib.usable) return std::string("usable");
    return expect_in(lib.error(), kMissing + " (CUSTOMAR_NCCL_LIBRARY) cannot be loaded: ");
  }));
}

TEST(NcclLoader, TooOldLibraryIsRejectedWithItsVersion) {
  EXPECT_TRUE(isolated([] {
    NcclLibrary lib = resolve_one(NcclRule::kEnv, kOld);
    if (lib.usable) return std::string("usable");
    return expect_in(lib.error(), kOld + " (CUSTOMAR_NCCL_LIBRARY) is NCCL 2.8.4, older than 2.10.3");
  }));
}

TEST(NcclLoader, LibraryWithoutARequiredEntryPointIsRejected) {
  EXPECT_TRUE(isolated([] {
    NcclLibrary lib = resolve_one(NcclRule::kPython, kNoAbort);
    if (lib.usable) return std::string("usable");
    return expect_in(lib.error(), kNoAbort + " (the nvidia-nccl-cu13 wheel) is NCCL 2.28.3 but lacks ncclCommAbort");
  }));
}

TEST(NcclLoader, LibraryThatIsNotNcclIsRejected) {
  EXPECT_TRUE(isolated([] {
    NcclLibrary lib = resolve_one(NcclRule::kEnv, CUSTOMAR_LIBRARY);
    if (lib.usable) return std::string("usable");
    return expect_in(lib.error(), "exports no ncclGetVersion");
  }));
}

TEST(NcclLoader, ErrorSaysWhatToInstall) {
  EXPECT_TRUE(isolated([] {
    NcclLibrary lib = resolve_one(NcclRule::kEnv, kMissing);
    std::string e = lib.error();
    for (const char* part : {"customar needs NCCL >= 2.10.3", "pip install nvidia-nccl-cu13", "CUSTOMAR_NCCL_LIBRARY"})
      if (!contains(e, part)) return expect_in(e, part);
    return std::string();
  }));
}

TEST(NcclLoader, UsableLibraryGivesItsVersionPathAndOptionalEntryPoints) {
  EXPECT_TRUE(isolated([] {
    NcclLibrary lib = resolve_one(NcclRule::kEnv, kOk);
    if (!lib.usable) return "not usable: " + lib.error();
    if (lib.api.version != nccl_version_code(2, 28, 3) || lib.api.path != kOk || lib.rule != NcclRule::kEnv)
      return "wrong library: " + lib.describe();
    if (lib.api.ncclMemAlloc == nullptr || lib.api.ncclCommWindowRegister == nullptr)
      return std::string("optional entry points not bound");
    return expect_in(lib.describe(), "NCCL 2.28.3 at " + kOk + " (CUSTOMAR_NCCL_LIBRARY)");
  }));
}

TEST(NcclLoader, MissingOptionalEntryPointsAreNull) {
  EXPECT_TRUE(isolated([] {
    NcclLibrary lib = resolve_one(NcclRule::kSystem, kPreFp8);
    if (!lib.usable) return "not usable: " + lib.error();
    if (lib.api.ncclMemAlloc != nullptr || lib.api.ncclCommWindowRegister != nullptr ||
        lib.api.ncclCommWindowDeregister != nullptr || lib.api.ncclMemFree != nullptr)
      return std::string("an optional entry point the library lacks is not null");
    return std::string();
  }));
}

TEST(NcclLoader, FirstUsableCandidateWinsAfterEveryFailureIsNoted) {
  EXPECT_TRUE(isolated([] {
    NcclLibrary lib = resolve_nccl(
        {{NcclRule::kEnv, kMissing}, {NcclRule::kPython, kOld}, {NcclRule::kSystem, kOk}, {NcclRule::kSystem, kPreFp8}},
        {"a note from the candidates"});
    if (!lib.usable || lib.api.path != kOk || lib.rule != NcclRule::kSystem) return "wrong pick: " + lib.describe();
    if (lib.notes.size() != 3 || lib.notes[0] != "a note from the candidates" || !contains(lib.notes[1], kMissing) ||
        !contains(lib.notes[2], kOld))
      return "notes not in order: " + lib.describe();
    if (is_loaded(kPreFp8)) return std::string("a candidate after the usable one was loaded");
    return std::string();
  }));
}

TEST(NcclLoader, RejectedLibraryIsUnloadedAgain) {
  EXPECT_TRUE(isolated([] {
    resolve_nccl({{NcclRule::kEnv, kOld}, {NcclRule::kEnv, kNoAbort}});
    if (is_loaded(kOld) || is_loaded(kNoAbort)) return std::string("a rejected library stays loaded");
    return std::string();
  }));
}

TEST(NcclCandidates, OrderIsEnvThenWheelThenSystemSoname) {
  EXPECT_TRUE(isolated([] {
    std::vector<std::string> notes;
    auto c = nccl_candidates("/env/libnccl.so.2", std::string("/wheel/libnccl.so.2"), &notes);
    if (c.size() != 3 || c[0].rule != NcclRule::kEnv || c[0].path != "/env/libnccl.so.2" ||
        c[1].rule != NcclRule::kPython || c[1].path != "/wheel/libnccl.so.2" || c[2].rule != NcclRule::kSystem ||
        c[2].path != "libnccl.so.2")
      return std::string("wrong candidates");
    if (notes.size() != 1) return "expected one note, got " + std::to_string(notes.size());
    return expect_in(notes[0], "no NCCL is loaded in this process");
  }));
}

TEST(NcclCandidates, UnsetRulesAreNotedNotTried) {
  EXPECT_TRUE(isolated([] {
    std::vector<std::string> outside, no_wheel;
    auto a = nccl_candidates("", std::nullopt, &outside);
    auto b = nccl_candidates("", std::string(), &no_wheel);
    if (a.size() != 1 || b.size() != 1 || a[0].rule != NcclRule::kSystem || b[0].rule != NcclRule::kSystem)
      return std::string("only the system soname should be a candidate");
    if (outside.size() != 3 || no_wheel.size() != 3) return std::string("expected three notes");
    std::string f = expect_in(outside[1], "CUSTOMAR_NCCL_LIBRARY is unset");
    if (f.empty()) f = expect_in(outside[2], "not running from Python");
    if (f.empty()) f = expect_in(no_wheel[2], "nvidia-nccl-cu13 wheel is not installed");
    return f;
  }));
}

TEST(NcclCandidates, AlreadyLoadedLibraryComesFirst) {
  EXPECT_TRUE(isolated([] {
    if (dlopen(kOk.c_str(), RTLD_NOW | RTLD_LOCAL) == nullptr) return std::string("cannot load the fake");
    std::vector<std::string> notes;
    auto c = nccl_candidates(kPreFp8, std::string(kOld), &notes);
    if (c.size() != 4 || c[0].rule != NcclRule::kLoaded || c[0].path != kOk || c[1].path != kPreFp8)
      return std::string("the loaded library is not the first candidate");
    NcclLibrary lib = resolve_nccl(c, notes);
    if (!lib.usable || lib.rule != NcclRule::kLoaded || lib.api.path != kOk) return "wrong pick: " + lib.describe();
    if (is_loaded(kPreFp8)) return std::string("CUSTOMAR_NCCL_LIBRARY was loaded although an NCCL was loaded");
    return expect_in(lib.describe(), "CUSTOMAR_NCCL_LIBRARY=" + kPreFp8 + " comes after the NCCL already loaded");
  }));
}

TEST(NcclCandidates, LoadedLibraryUnderNcclSonameComesBeforeOtherLoadedOnes) {
  EXPECT_TRUE(isolated([] {
    // Loaded first, but not under NCCL's soname: found by the scan, after the one the soname names.
    if (dlopen(kOk.c_str(), RTLD_NOW | RTLD_LOCAL) == nullptr) return std::string("cannot load the fake");
    if (dlopen(kSoname.c_str(), RTLD_NOW | RTLD_LOCAL) == nullptr) return std::string("cannot load the soname fake");
    std::vector<std::string> notes;
    auto c = nccl_candidates("", std::nullopt, &notes);
    if (c.size() != 3 || c[0].path != kSoname || c[1].path != kOk || c[0].rule != NcclRule::kLoaded ||
        c[1].rule != NcclRule::kLoaded)
      return std::string("loaded libraries not found in order");
    return std::string();
  }));
}

TEST(NcclAgreement, UsableOnEveryRankGivesTheOldestVersion) {
  EXPECT_TRUE(on_ranks(2, [](Group& g) {
    NcclAgreement a = agree_nccl(g, resolve_one(NcclRule::kEnv, g.rank() == 0 ? kOk : kPreFp8));
    if (!a.usable || a.min_version != nccl_version_code(2, 21, 5)) return "wrong agreement: " + a.error;
    return std::string();
  }));
}

TEST(NcclAgreement, OneRankWithoutNcclMakesItUnusableOnEveryRank) {
  EXPECT_TRUE(on_ranks(3, [](Group& g) {
    NcclAgreement a = agree_nccl(g, resolve_one(NcclRule::kEnv, g.rank() == 1 ? kMissing : kOk));
    if (a.usable) return std::string("usable");
    return expect_in(a.error, "NCCL is unusable on rank 1: no usable NCCL library");
  }));
}

TEST(NcclPath, NcclBackendWithoutNcclThrowsOnEveryRank) {
  EXPECT_TRUE(on_ranks(2, [](Group& g) {
    NcclLibrary lib = resolve_one(NcclRule::kEnv, g.rank() == 0 ? kOld : kOk);
    return throws_nccl_error(
        [&] { NcclComm::create(g, 0, nullptr, /*required=*/true, lib); },
        {"the NCCL backend cannot be built: NCCL is unusable on rank 0", kOld, "older than 2.10.3"});
  }));
}

TEST(NcclPath, CustomBackendWithoutNcclThrowsOnlyForNcclCalls) {
  EXPECT_TRUE(on_ranks(2, [](Group& g) {
    auto nccl = NcclComm::create(g, 0, nullptr, /*required=*/false, resolve_one(NcclRule::kEnv, kMissing));
    if (nccl->available()) return std::string("available");
    return throws_nccl_error([&] { nccl->all_reduce(nullptr, nullptr, 4, DataType::kInt32, nullptr); },
                             {"all_reduce of 4 x int32 goes to NCCL", "rank 0", kMissing});
  }));
}

TEST(NcclPath, UsableNcclCreatesACommunicatorThatSums) {
  EXPECT_TRUE(on_ranks(2, [](Group& g) {
    NcclLibrary lib = resolve_one(NcclRule::kEnv, kOk);
    auto nccl = NcclComm::create(g, 0, nullptr, /*required=*/true, lib);
    if (!nccl->available()) return std::string("not available");
    nccl->all_reduce(nullptr, nullptr, 4, DataType::kFloat8E4M3, nullptr);
    nccl->all_reduce(nullptr, nullptr, 4, DataType::kBFloat16, nullptr);
    auto* calls = static_cast<int*>(dlsym(dlopen(kOk.c_str(), RTLD_NOW | RTLD_NOLOAD), "fake_nccl_all_reduce_calls"));
    if (calls == nullptr || *calls != 2) return std::string("the fake's ncclAllReduce did not run twice");
    return std::string();
  }));
}

TEST(NcclPath, Fp8OnAGroupWithAnNcclOlderThan224IsAClearError) {
  EXPECT_TRUE(on_ranks(2, [](Group& g) {
    // Rank 0's NCCL sums fp8, rank 1's does not: both ranks refuse alike.
    auto nccl = NcclComm::create(g, 0, nullptr, true, resolve_one(NcclRule::kEnv, g.rank() == 0 ? kOk : kPreFp8));
    return throws_nccl_error([&] { nccl->all_reduce(nullptr, nullptr, 4, DataType::kFloat8E5M2, nullptr); },
                             {"fp8e5m2", "from 2.24.0 on", "oldest NCCL of this group is 2.21.5"});
  }));
}

TEST(NcclPath, HandedInCommunicatorIsCheckedAgainstTheGroup) {
  EXPECT_TRUE(on_ranks(2, [](Group& g) {
    NcclLibrary lib = resolve_one(NcclRule::kEnv, kOk);
    ncclComm_t external = nullptr;
    NcclUniqueId id{};
    lib.api.ncclGetUniqueId(&id);
    lib.api.ncclCommInitRank(&external, 2, id, 1 - g.rank());  // ranks swapped
    try {
      NcclComm::create(g, 0, external, true, lib);
    } catch (const Error& e) {
      return expect_in(e.what(), "CommOptions::nccl_comm has rank");
    }
    return std::string("no error for a communicator whose ranks differ from the group's");
  }));
}

TEST(NcclVersion, BothEncodingsReadBack) {
  EXPECT_EQ(nccl_version_text(nccl_version_code(2, 8, 4)), "2.8.4");
  EXPECT_EQ(nccl_version_text(nccl_version_code(2, 28, 9)), "2.28.9");
  EXPECT_EQ(nccl_version_code(2, 28, 9), 22809);
  EXPECT_EQ(nccl_version_code(2, 8, 4), 2804);
}
