// A stand-in for libnccl.so.2 in the NCCL loader's tests, built in several variants (tests/unit/CMakeLists.txt):
// FAKE_NCCL_VERSION is what ncclGetVersion reports; FAKE_NCCL_NO_ABORT leaves out ncclCommAbort (a library that
// lacks a required entry point); FAKE_NCCL_WINDOWS adds the optional ncclMemAlloc / ncclCommWindowRegister family.
// Every entry point succeeds without a GPU: a communicator is one static object of this process, collectives only
// count their calls (fake_nccl_all_reduce_calls), so a test can build customar's NCCL path on a CPU.
#include <cstddef>
#include <cstring>

namespace {
struct FakeComm {
  int nranks = 0;
  int rank = 0;
} g_comm;
struct FakeId {
  char internal[128];
};
}  // namespace

extern "C" {

__attribute__((visibility("default"))) int fake_nccl_all_reduce_calls = 0;

int ncclGetVersion(int* version) {
  *version = FAKE_NCCL_VERSION;
  return 0;
}
int ncclGetUniqueId(FakeId* id) {
  std::memset(id->internal, 0x5a, sizeof(id->internal));
  return 0;
}
int ncclCommInitRank(FakeComm** comm, int nranks, FakeId id, int rank) {
  if (id.internal[0] != 0x5a) return 4;  // ncclInvalidArgument: the id did not travel intact
  g_comm = {nranks, rank};
  *comm = &g_comm;
  return 0;
}
int ncclCommDestroy(FakeComm*) { return 0; }
#ifndef FAKE_NCCL_NO_ABORT
int ncclCommAbort(FakeComm*) { return 0; }
#endif
int ncclCommCount(FakeComm* comm, int* count) {
  *count = comm->nranks;
  return 0;
}
int ncclCommUserRank(FakeComm* comm, int* rank) {
  *rank = comm->rank;
  return 0;
}
int ncclAllReduce(const void*, void*, size_t, int, int, FakeComm*, void*) {
  ++fake_nccl_all_reduce_calls;
  return 0;
}
int ncclAllGather(const void*, void*, size_t, int, FakeComm*, void*) { return 0; }
const char* ncclGetErrorString(int) { return "fake NCCL error"; }
#ifdef FAKE_NCCL_WINDOWS
int ncclMemAlloc(void**, size_t) { return 0; }
int ncclMemFree(void*) { return 0; }
int ncclCommWindowRegister(FakeComm*, void*, size_t, void**, int) { return 0; }
int ncclCommWindowDeregister(FakeComm*, void*) { return 0; }
#endif
}
