// A library with a link-time NCCL dependency: it calls the stand-in under NCCL's soname, so the linker keeps that
// one as a NEEDED entry (an unused library would be dropped). The readelf check must reject it.
extern "C" int ncclGetVersion(int* version);

extern "C" int fake_nccl_needer_version() {
  int v = 0;
  return ncclGetVersion(&v) == 0 ? v : -1;
}
