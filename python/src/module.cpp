// The Python extension `customar._ext`: the Communicator over any DLPack tensor, the decision functions, virtual
// ranks, and the library's exceptions as a Python hierarchy. Everything that arrives from Python (groups, tensors,
// names, paths) is validated here, at the boundary, so that the library only ever sees values it documents; every
// rejection is an InvalidArgument that says what was wrong and what is allowed. The Python package
// (python/customar/__init__.py) adds the torch.distributed adapter, device and stream validation, and the
// framework-aware output allocation.
//
// The GIL is released around every call that may wait for other ranks (a communicator's construction and
// destruction, exchanges, all-reduce): the ranks of a virtual world are threads of this process, and a rank that
// waited holding the GIL would keep the others from ever arriving. A Python group's all_gather takes it back.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "customar/communicator.h"
#include "customar/config.h"
#include "customar/dispatch.h"
#include "customar/error.h"
#include "customar/topology.h"
#include "customar/virtual.h"
#include "nccl/nccl_loader.h"

namespace nb = nanobind;
using namespace customar;

namespace {

// What a Python value is, for error messages: its type and a short repr.
std::string describe(nb::handle h) {
  std::string r = nb::repr(h).c_str();
  if (r.size() > 60) r = r.substr(0, 57) + "...";
  return std::string(Py_TYPE(h.ptr())->tp_name) + " " + r;
}

// ---- groups -------------------------------------------------------------------------------------------------------

// group.rank / group.size: an int (or anything with __index__, as numpy integers have) that fits in a C int. bool is
// refused although Python counts it as an int: True as a rank is a bug, not a rank.
int group_int(const nb::object& group, const char* attr) {
  if (!nb::hasattr(group, attr)) throw InvalidArgument(std::string("group has no attribute '") + attr + "'");
  nb::object v = group.attr(attr);
  if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr()))
    throw InvalidArgument(std::string("group.") + attr + " must be an int, got " + describe(v));
  nb::object i = nb::steal(PyNumber_Index(v.ptr()));
  if (!i.is_valid()) throw nb::python_error();
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (overflow != 0 || x < INT_MIN || x > INT_MAX)
    throw InvalidArgument(std::string("group.") + attr + " = " + describe(v) + " does not fit in an int");
  return static_cast<int>(x);
}

// A Group whose exchanges are done by a Python object with `rank`, `size` and `all_gather(bytes) -> list[bytes]`.
// Built and destroyed with the GIL held; all_gather takes the GIL itself, as the library calls it with it released.
class PyGroup final : public Group {
 public:
  explicit PyGroup(nb::object obj) : obj_(std::move(obj)) {
    rank_ = group_int(obj_, "rank");
    size_ = group_int(obj_, "size");
    if (size_ < 1 || rank_ < 0 || rank_ >= size_)
      throw InvalidArgument("group has rank " + std::to_string(rank_) + " of size " + std::to_string(size_) +
                            "; expected 0 <= rank < size");
    if (!nb::hasattr(obj_, "all_gather")) throw InvalidArgument("group has no all_gather(bytes) method");
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::vector<Bytes> all_gather(std::span<const uint8_t> mine) override {
    nb::gil_scoped_acquire gil;
    nb::bytes in(reinterpret_cast<const char*>(mine.data()), mine.size());
    return to_bytes_list(obj_.attr("all_gather")(in));
  }
  void barrier() override { all_gather({}); }

 private:
  // all_gather's answer: a list or tuple of exactly size() bytes (or bytearray) objects, one per rank.
  std::vector<Bytes> to_bytes_list(const nb::object& result) const {
    const std::string expect = "group.all_gather must return a list of " + std::to_string(size_) +
                               " bytes objects (one per rank, in rank order)";
    if (!nb::isinstance<nb::list>(result) && !nb::isinstance<nb::tuple>(result))
      throw InvalidArgument(expect + ", got " + describe(result));
    if (nb::len(result) != static_cast<size_t>(size_))
      throw InvalidArgument(expect + ", got " + std::to_string(nb::len(result)) + " items");
    std::vector<Bytes> out;
    for (nb::handle item : result) {
      const char* p = nullptr;
      size_t n = 0;
      if (PyBytes_Check(item.ptr())) {
        p = PyBytes_AS_STRING(item.ptr());
        n = static_cast<size_t>(PyBytes_GET_SIZE(item.ptr()));
      } else if (PyByteArray_Check(item.ptr())) {
        p = PyByteArray_AS_STRING(item.ptr());
        n = static_cast<size_t>(PyByteArray_GET_SIZE(item.ptr()));
      } else {
        throw InvalidArgument(expect + "; item " + std::to_string(out.size()) + " is " + describe(item));
      }
      out.emplace_back(reinterpret_cast<const uint8_t*>(p), reinterpret_cast<const uint8_t*>(p) + n);
    }
    return out;
  }

  nb::object obj_;
  int rank_ = 0, size_ = 1;
};

// ---- data types ---------------------------------------------------------------------------------------------------

// DLPack type codes (dlpack.h, DLPack 1.1). Spelled out rather than taken from nanobind, whose enum gained the fp8
// codes only in later releases.
constexpr uint8_t kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, kDLFloat8E4M3FN = 10, kDLFloat8E5M2 = 12;

// Every type customar sums, with its DLPack code and width and the name torch, NumPy, CuPy and JAX give it.
struct DtypeEntry {
  DataType type;
  uint8_t code;
  uint8_t bits;
  const char* name;
};
constexpr DtypeEntry kDtypes[] = {
    {DataType::kFloat16, kDLFloat, 16, "float16"},
    {DataType::kBFloat16, kDLBfloat, 16, "bfloat16"},
    {DataType::kFloat32, kDLFloat, 32, "float32"},
    {DataType::kFloat64, kDLFloat, 64, "float64"},
    {DataType::kInt8, kDLInt, 8, "int8"},
    {DataType::kUInt8, kDLUInt, 8, "uint8"},
    {DataType::kInt32, kDLInt, 32, "int32"},
    {DataType::kUInt32, kDLUInt, 32, "uint32"},
    {DataType::kInt64, kDLInt, 64, "int64"},
    {DataType::kUInt64, kDLUInt, 64, "uint64"},
    {DataType::kFloat8E4M3, kDLFloat8E4M3FN, 8, "float8_e4m3fn"},
    {DataType::kFloat8E5M2, kDLFloat8E5M2, 8, "float8_e5m2"},
};
static_assert(std::size(kDtypes) == kDataTypeCount, "one entry per DataType");

const std::string& allowed_dtypes() {
  static const std::string list = [] {
    std::string s;
    for (const DtypeEntry& e : kDtypes) s += std::string(s.empty() ? "" : ", ") + e.name;
    return s;
  }();
  return list;
}

// A DLPack dtype as the frameworks spell it ("int16", "complex64", "bool", "float8_e4m3fnuz", "float32 x4 ...").
std::string dlpack_dtype_name(nb::dlpack::dtype t) {
  // Indexed by DLPack type code.
  // clang-format off
  static const char* const kNames[] = {
      "int", "uint", "float", "opaque_handle", "bfloat", "complex", "bool", "float8_e3m4", "float8_e4m3",
      "float8_e4m3b11fnuz", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu",
      "float6_e2m3fn", "float6_e3m2fn", "float4_e2m1fn", "bcomplex"};
  // clang-format on
  std::string s;
  if (t.code >= std::size(kNames)) {
    s = "DLPack type code " + std::to_string(t.code) + " of " + std::to_string(t.bits) + " bits";
  } else if (t.code <= 5 || t.code == 18) {  // named with their width
    s = kNames[t.code] + std::to_string(t.bits);
  } else {  // a fixed format: its width is part of the name, said only when it is not the format's own
    s = kNames[t.code];
    const int own = t.code <= 14 ? 8 : t.code <= 16 ? 6 : 4;  // bool and fp8, fp6, fp4
    if (t.bits != own) s += " of " + std::to_string(t.bits) + " bits";
  }
  if (t.lanes != 1) s += " x" + std::to_string(t.lanes) + " vector lanes";
  return s;
}

DataType dtype_from_dlpack(nb::dlpack::dtype t, const std::string& what) {
  if (t.lanes == 1)
    for (const DtypeEntry& e : kDtypes)
      if (e.code == t.code && e.bits == t.bits) return e.type;
  throw InvalidArgument(what + " has dtype " + dlpack_dtype_name(t) +
                        ", which customar does not sum; allowed: " + allowed_dtypes());
}

// A dtype given by name: the frameworks' names (kDtypes) or customar's own (dtype_name: "bf16", "fp8e4m3"...).
DataType dtype_from_name(const std::string& name) {
  for (const DtypeEntry& e : kDtypes)
    if (name == e.name || name == dtype_name(e.type)) return e.type;
  throw InvalidArgument("dtype '" + name + "' is not one customar sums; allowed: " + allowed_dtypes());
}

nb::dlpack::dtype dtype_to_dlpack(DataType d) {
  for (const DtypeEntry& e : kDtypes)
    if (e.type == d) return {e.code, e.bits, 1};
  throw InvalidArgument("unknown DataType " + std::to_string(static_cast<int>(d)));
}

// The dtype a tensor is read as. `as` reinterprets a one-byte integer tensor as an fp8 type: the route for torch
// versions whose DLPack export refuses fp8 (the caller passes t.view(torch.uint8) and the fp8 name).
DataType tensor_dtype(nb::dlpack::dtype t, const std::optional<std::string>& as, const std::string& what) {
  if (!as) return dtype_from_dlpack(t, what);
  const DataType d = dtype_from_name(*as);
  if (d != DataType::kFloat8E4M3 && d != DataType::kFloat8E5M2)
    throw InvalidArgument(what + ": only fp8 types can be read from uint8 storage, not '" + *as + "'");
  if (t.code != kDLUInt || t.bits != 8 || t.lanes != 1)
    throw InvalidArgument(what + " must be uint8 storage to be read as " + *as + ", got " + dlpack_dtype_name(t));
  return d;
}

// ---- tensors ------------------------------------------------------------------------------------------------------

// A validated DLPack tensor: dense, of a type customar sums, on a CUDA device, its byte size representable.
struct Tensor {
  nb::ndarray<nb::ro> array;  // holds the producer's export until the call has been enqueued
  void* data = nullptr;       // written only for tensors imported writable (the output)
  size_t count = 0;
  DataType dtype = DataType::kFloat32;
  int device = 0;
  std::vector<int64_t> shape, strides;
};

std::string ints_text(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

// Why an object is not a DLPack tensor, asked only once the import has failed: its own __dlpack__ error if it has one.
std::string not_a_tensor_reason(nb::handle obj) {
  if (!nb::hasattr(obj, "__dlpack__")) return "it has no __dlpack__ method";
  try {
    obj.attr("__dlpack__")();
  } catch (nb::python_error& e) {
    return std::string("its __dlpack__() raised ") + nb::str(e.value()).c_str();
  }
  return "its DLPack export is malformed (dimension count out of range)";
}

// Imports a DLPack tensor without copying. The output must be writable: a read-only export (a JAX array, a
// read-only NumPy view) is refused as an output but accepted as an input.
nb::ndarray<nb::ro> import_tensor(nb::handle obj, const std::string& what, bool writable) {
  nb::ndarray<> w;
  if (writable && nb::try_cast(obj, w, false)) return nb::ndarray<nb::ro>(w);
  nb::ndarray<nb::ro> r;
  if (nb::try_cast(obj, r, false)) {
    if (writable)
      throw InvalidArgument(what + " is read-only (" + describe(obj) +
                            "); pass a writable tensor, or leave out=None to get a new one");
    return r;
  }
  throw InvalidArgument(what + " (" + describe(obj) + ") cannot be read as a tensor: " + not_a_tensor_reason(obj) +
                        "; pass a CUDA tensor with __dlpack__ (torch, CuPy, JAX)");
}

// Number of elements; every extent must be >= 0 and their product must fit in 64 bits.
size_t element_count(const std::vector<int64_t>& shape, const std::string& what) {
  for (size_t d = 0; d < shape.size(); ++d)
    if (shape[d] < 0)
      throw InvalidArgument(what + " has shape " + ints_text(shape) + " with a negative extent in dimension " +
                            std::to_string(d));
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  uint64_t count = 1;
  for (int64_t extent : shape)
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(extent), &count))
      throw InvalidArgument(what + " has shape " + ints_text(shape) + ", whose element count overflows 64 bits");
  return count;
}

void check_byte_size(size_t count, DataType dtype, const std::string& what) {
  if (count > static_cast<size_t>(PTRDIFF_MAX) / dtype_size(dtype))
    throw InvalidArgument(what + " holds " + std::to_string(count) + " elements of " + std::string(dtype_name(dtype)) +
                          ", whose byte size overflows");
}

// Dense means: the elements fill one block of memory, each exactly once, in some order of the dimensions (a
// contiguous tensor, a transposed view, channels-last). Dimensions of extent 1 have no say (frameworks give them any
// stride). The others, sorted by stride, must chain: the smallest stride is 1 and each next stride is the previous
// one times its extent. The all-reduce is elementwise, so such a tensor is reduced as it lies in memory.
void check_dense(const Tensor& t, const std::string& what) {
  if (t.count == 0) return;                  // nothing to reduce, whatever the strides
  auto fail = [&](const std::string& why) {  // messages are built only on failure: this runs on every call
    return InvalidArgument(what + " with shape " + ints_text(t.shape) + " and strides " + ints_text(t.strides) + why +
                           "; pass a dense tensor (e.g. t.contiguous() or cupy.ascontiguousarray(t))");
  };
  std::vector<size_t> dims;
  for (size_t d = 0; d < t.shape.size(); ++d) {
    if (t.shape[d] <= 1) continue;
    if (t.strides[d] == 0)
      throw fail(" is broadcast (stride 0 in dimension " + std::to_string(d) + ": an expanded view repeats elements)");
    if (t.strides[d] < 0) throw fail(" has a negative stride in dimension " + std::to_string(d) + " (a reversed view)");
    dims.push_back(d);
  }
  std::sort(dims.begin(), dims.end(), [&](size_t a, size_t b) { return t.strides[a] < t.strides[b]; });
  int64_t expect = 1;  // never overflows: it stays <= the element count, checked before
  for (size_t d : dims) {
    if (t.strides[d] != expect)
      throw fail((t.strides[d] < expect ? " overlaps itself (dimension " : " has gaps (dimension ") +
                 std::to_string(d) + " has stride " + std::to_string(t.strides[d]) + ", a dense layout needs " +
                 std::to_string(expect) + ")");
    expect *= t.shape[d];
  }
}

const char* device_type_name(int type) {
  switch (type) {
    case 1:
      return "CPU";
    case 3:
      return "CUDA host (pinned) memory";
    case 10:
      return "ROCm";
    case 13:
      return "CUDA managed memory";
    default:
      return "not CUDA";
  }
}

void check_device(const nb::ndarray<nb::ro>& a, const Tensor& t, const std::string& what) {
  auto fail = [&](const std::string& why) {
    return InvalidArgument(what + " (" + std::to_string(t.count) + " x " + std::string(dtype_name(t.dtype)) + ")" +
                           why);
  };
  if (a.device_type() != nb::device::cuda::value)
    throw fail(" is not a CUDA tensor: DLPack device type " + std::to_string(a.device_type()) + " (" +
               device_type_name(a.device_type()) + "); customar reduces CUDA device memory only (type 2)");
  if (a.device_id() < 0)
    throw fail(" has DLPack device id " + std::to_string(a.device_id()) + "; a CUDA device id is an ordinal >= 0");
  if (t.count > 0 && a.data_handle() == nullptr) throw fail(" has a null data pointer");
  if (a.byte_offset() > UINTPTR_MAX - reinterpret_cast<uintptr_t>(a.data_handle()))
    throw fail(" has a DLPack byte offset that overflows its data pointer");
}

// Everything the all-reduce needs from a tensor, checked in this order: dtype, shape, byte size, layout, device (so a
// CPU array reaches every check but the last, which is what the CPU tests rely on).
Tensor parse_tensor(nb::handle obj, const std::string& what, bool writable, const std::optional<std::string>& as) {
  Tensor t;
  t.array = import_tensor(obj, what, writable);
  const nb::ndarray<nb::ro>& a = t.array;
  t.dtype = tensor_dtype(a.dtype(), as, what);
  t.shape.assign(a.shape_ptr(), a.shape_ptr() + a.ndim());
  if (a.ndim() > 0) t.strides.assign(a.stride_ptr(), a.stride_ptr() + a.ndim());  // nanobind fills absent strides
  t.count = element_count(t.shape, what);
  check_byte_size(t.count, t.dtype, what);
  check_dense(t, what);
  check_device(a, t, what);
  t.data = const_cast<void*>(a.data());
  t.device = a.device_id();
  return t;
}

bool same_layout(const Tensor& a, const Tensor& b) {
  if (a.shape != b.shape) return false;
  if (a.count == 0) return true;  // no element, so no stride matters
  for (size_t d = 0; d < a.shape.size(); ++d)
    if (a.shape[d] > 1 && a.strides[d] != b.strides[d]) return false;
  return true;
}

// The output must match the input element for element in memory: same dtype, same shape and strides, same device,
// and either the very same memory (in place) or memory that does not overlap it.
void check_pair(const Tensor& in, const Tensor& out, int device) {
  if (in.dtype != out.dtype)
    throw InvalidArgument("output has dtype " + std::string(dtype_name(out.dtype)) + " but the input " +
                          std::string(dtype_name(in.dtype)) + "; they must be the same");
  if (!same_layout(in, out))
    throw InvalidArgument("output has shape " + ints_text(out.shape) + " and strides " + ints_text(out.strides) +
                          " but the input shape " + ints_text(in.shape) + " and strides " + ints_text(in.strides) +
                          "; the output must have the input's layout (leave out=None to get one, or use "
                          "torch.empty_like(input))");
  if (in.device != device || out.device != device)
    throw InvalidArgument("input is on device " + std::to_string(in.device) + " and output on device " +
                          std::to_string(out.device) + ", but the communicator is on device " + std::to_string(device));
  const size_t bytes = in.count * dtype_size(in.dtype);
  const auto i = reinterpret_cast<uintptr_t>(in.data), o = reinterpret_cast<uintptr_t>(out.data);
  if (bytes > 0 && i != o && i < o + bytes && o < i + bytes)
    throw InvalidArgument(
        "output overlaps the input without being the same memory; pass out=input for in place, or "
        "a separate tensor");
}

// A tensor of the fused call: `shape` (every extent), `dtype`, row-major (C-contiguous) and on `device`.
void check_fused_tensor(const Tensor& t, const std::string& what, const std::vector<int64_t>& shape, DataType dtype,
                        int device) {
  if (t.dtype != dtype)
    throw InvalidArgument("all_reduce_add_rmsnorm: " + what + " has dtype " + std::string(dtype_name(t.dtype)) +
                          "; it must be " + std::string(dtype_name(dtype)));
  if (t.shape != shape)
    throw InvalidArgument("all_reduce_add_rmsnorm: " + what + " has shape " + ints_text(t.shape) + "; it must be " +
                          ints_text(shape));
  int64_t expect = 1;
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] > 1 && t.strides[d] != expect)
      throw InvalidArgument("all_reduce_add_rmsnorm: " + what + " has strides " + ints_text(t.strides) +
                            "; the fused call reads whole rows, so it must be row-major (C-contiguous): pass "
                            "t.contiguous()");
    expect *= shape[d];
  }
  if (t.device != device)
    throw InvalidArgument("all_reduce_add_rmsnorm: " + what + " is on device " + std::to_string(t.device) +
                          ", but the communicator is on device " + std::to_string(device));
}

nb::tuple tensor_info(nb::handle obj, const std::optional<std::string>& as) {
  Tensor t = parse_tensor(obj, "tensor", false, as);
  return nb::make_tuple(t.count, std::string(dtype_name(t.dtype)), t.device);
}

// A writable uint8 CUDA buffer seen as a C-contiguous tensor of `dtype` and `shape`, keeping `buffer` alive: how the
// package hands JAX a new output of any dtype over memory CuPy allocated (CuPy has no fp8 type to allocate with).
nb::ndarray<nb::array_api> typed_view(nb::handle buffer, const std::string& dtype, const std::vector<int64_t>& shape) {
  const DataType d = dtype_from_name(dtype);
  Tensor b = parse_tensor(buffer, "buffer", true, std::nullopt);
  const size_t count = element_count(shape, "view");
  check_byte_size(count, d, "view");
  if (b.dtype != DataType::kUInt8 || b.count != count * dtype_size(d))
    throw InvalidArgument("buffer must be " + std::to_string(count * dtype_size(d)) + " bytes of uint8 for a view of " +
                          ints_text(shape) + " " + std::string(dtype_name(d)));
  std::vector<size_t> extents(shape.begin(), shape.end());
  return nb::ndarray<nb::array_api>(b.data, extents.size(), extents.data(), buffer, nullptr, dtype_to_dlpack(d),
                                    nb::device::cuda::value, b.device);
}

// ---- virtual ranks ------------------------------------------------------------------------------------------------

// Releases the GIL for its scope where the calling thread holds it (a destructor runs with it; a clean-up path may
// not).
class GilRelease {
 public:
  GilRelease() : state_(PyGILState_Check() ? PyEval_SaveThread() : nullptr) {}
  ~GilRelease() {
    if (state_ != nullptr) PyEval_RestoreThread(state_);
  }
  GilRelease(const GilRelease&) = delete;
  GilRelease& operator=(const GilRelease&) = delete;

 private:
  PyThreadState* state_;
};

struct PyCommunicator;

// One rank of a virtual world as Python sees it (customar.VirtualGroup). The C++ group exists while the rank's
// function runs, and the rank's context is current on the rank's thread only: so the group is usable there and then,
// and every communicator built over it is closed when the function returns (none outlives the group it waits on).
// Touched only with the GIL held, which orders the rank's thread and a garbage collection on another one.
class VirtualRank {
 public:
  VirtualRank(Group& g, int device)
      : rank(g.rank()),
        size(g.size()),
        device(device),
        stream(reinterpret_cast<uintptr_t>(virtual_stream(g))),
        partition(virtual_partition(g)),
        group_(&g),
        thread_(std::this_thread::get_id()) {}
  VirtualRank(const VirtualRank&) = delete;
  VirtualRank& operator=(const VirtualRank&) = delete;

  const int rank, size, device;
  const uintptr_t stream;
  const std::string partition;

  bool on_own_thread() const { return std::this_thread::get_id() == thread_; }
  bool running() const { return group_ != nullptr; }

  // The C++ group, for `call`: StateError once the rank's function has returned, InvalidArgument on another thread.
  Group& group(const std::string& call) const {
    if (group_ == nullptr)
      throw StateError(call + ": the virtual group of rank " + std::to_string(rank) +
                       " is gone (its rank function has returned)");
    if (!on_own_thread())
      throw InvalidArgument(call +
                            ": a virtual group is used from its rank's own thread (the one run_virtual called "
                            "the function on), where the rank's context is current");
    return *group_;
  }

  nb::list all_gather(nb::handle data) {
    Group& g = group("VirtualGroup.all_gather");
    Py_buffer view;
    if (PyObject_GetBuffer(data.ptr(), &view, PyBUF_SIMPLE) != 0) {
      PyErr_Clear();
      throw InvalidArgument("VirtualGroup.all_gather takes bytes (or another contiguous buffer), got " +
                            describe(data));
    }
    const auto* p = static_cast<const uint8_t*>(view.buf);
    Bytes mine(p, p + view.len);
    PyBuffer_Release(&view);
    std::vector<Bytes> all;
    {
      nb::gil_scoped_release release;
      all = g.all_gather(mine);
    }
    nb::list out;
    for (const Bytes& b : all) out.append(nb::bytes(reinterpret_cast<const char*>(b.data()), b.size()));
    return out;
  }

  void barrier() {
    Group& g = group("VirtualGroup.barrier");
    nb::gil_scoped_release release;
    g.barrier();
  }

  void adopt(PyCommunicator* c) { comms_.push_back(c); }
  void forget(PyCommunicator* c) { comms_.erase(std::remove(comms_.begin(), comms_.end(), c), comms_.end()); }
  // A communicator collected on another thread: closed on this rank's thread when its function returns.
  void defer_close(std::unique_ptr<Communicator> c) { deferred_.push_back(std::move(c)); }

  // The rank's function has returned: closes what is still open over the group (every rank does this at the same
  // point, so the collective teardowns meet), then lets go of the group.
  void finish();

 private:
  Group* group_;
  std::thread::id thread_;
  std::vector<PyCommunicator*> comms_;
  std::vector<std::unique_ptr<Communicator>> deferred_;
};

// The C++ group behind a Python group object: a virtual rank's own group, or a PyGroup over the object.
class GroupRef {
 public:
  GroupRef(nb::object g, const std::string& call) {
    if (nb::isinstance<VirtualRank>(g)) {
      virtual_rank_ = nb::cast<VirtualRank*>(g);
      group_ = &virtual_rank_->group(call);
      keep_ = std::move(g);
    } else {
      owned_ = std::make_unique<PyGroup>(std::move(g));
      group_ = owned_.get();
    }
  }
  Group& get() const { return *group_; }
  VirtualRank* virtual_rank() const { return virtual_rank_; }

 private:
  std::unique_ptr<PyGroup> owned_;
  VirtualRank* virtual_rank_ = nullptr;
  nb::object keep_;  // keeps the virtual rank alive
  Group* group_ = nullptr;
};

// Runs `body(group)` on every rank of a virtual world of `n` ranks on `device`. `body` reports its own outcome (the
// package's wrapper keeps fn's result or exception); an exception that escapes it anyway is printed as unraisable.
void run_virtual_world(int n, const nb::callable& body, int device, SmPartition partition) {
  VirtualOptions options;
  options.device = device;
  options.partition = partition;
  auto rank_main = [&](Group& g) {
    nb::gil_scoped_acquire gil;
    auto* rank = new VirtualRank(g, device);
    nb::object handle = nb::cast(rank, nb::rv_policy::take_ownership);
    int code = 0;
    try {
      body(handle);
    } catch (nb::python_error& e) {
      e.discard_as_unraisable("customar.run_virtual rank function");
      code = 1;
    }
    rank->finish();
    return code;
  };
  nb::gil_scoped_release release;
  (void)launch_virtual(n, rank_main, options);
}

SmPartition partition_from_name(const std::string& name) {
  if (name == "auto") return SmPartition::kAuto;
  if (name == "green_contexts") return SmPartition::kGreenContexts;
  if (name == "capped_grids") return SmPartition::kCappedGrids;
  throw InvalidArgument("partition '" + name + "' is unknown; allowed: auto, green_contexts, capped_grids");
}

// ---- communicator -------------------------------------------------------------------------------------------------

struct PyCommunicator {
  // Declared in this order so the communicator (whose destructor uses the group) goes first.
  GroupRef group;
  std::unique_ptr<Communicator> comm;

  PyCommunicator(nb::object g, int device) : group(std::move(g), "Communicator") {
    {
      nb::gil_scoped_release release;  // collective: the other ranks may need the GIL to arrive
      comm = std::make_unique<Communicator>(group.get(), device);
    }
    if (VirtualRank* v = group.virtual_rank()) v->adopt(this);
  }
  ~PyCommunicator() {
    VirtualRank* v = group.virtual_rank();
    if (v != nullptr && comm && v->running() && !v->on_own_thread()) {
      v->forget(this);  // collected on another thread: the rank's own thread closes it when its function returns
      v->defer_close(std::move(comm));
    }
    teardown();
  }

  // Collective, as destruction is (the Communicator's destructor waits for every rank). Idempotent.
  void close() {
    if (VirtualRank* v = group.virtual_rank(); v != nullptr && comm && !v->on_own_thread())
      throw InvalidArgument("close: a communicator over a virtual group is closed from its rank's own thread");
    teardown();
  }
  void teardown() {
    std::unique_ptr<Communicator> c = std::move(comm);
    if (VirtualRank* v = group.virtual_rank()) v->forget(this);
    GilRelease release;
    c.reset();
  }
  Communicator& get() const {
    if (!comm)
      throw StateError("Communicator is closed (by close() or the end of its with-block); build a new one to reduce");
    if (VirtualRank* v = group.virtual_rank(); v != nullptr && !v->on_own_thread())
      throw InvalidArgument("a communicator over a virtual group is used from its rank's own thread");
    return *comm;
  }

  void all_reduce(nb::handle in, nb::handle out, uintptr_t stream, const std::optional<std::string>& in_as,
                  const std::optional<std::string>& out_as) {
    Communicator& c = get();
    Tensor i = parse_tensor(in, "input", false, in_as);
    Tensor o = parse_tensor(out, "output", true, out_as);
    check_pair(i, o, c.device());
    nb::gil_scoped_release release;  // virtual ranks may wait here for earlier calls, which wait for peers
    c.all_reduce(i.data, o.data, i.count, i.dtype, reinterpret_cast<cudaStream_t>(stream));
  }

  // The fused all-reduce + residual add + RMSNorm on framework tensors (shapes, dtypes and layouts checked here; the
  // library checks sizes, alignment and overlaps). `input` is written to: its contents are unspecified afterwards.
  void all_reduce_add_rmsnorm(nb::handle in, nb::handle residual_in, nb::handle residual_out, nb::handle gamma,
                              nb::handle norm_out, double eps, nb::handle fp8_scale, uintptr_t stream,
                              const std::optional<std::string>& norm_out_as) {
    Communicator& c = get();
    const Tensor x = parse_tensor(in, "input", true, std::nullopt);
    if (x.shape.size() != 2 || (x.dtype != DataType::kFloat16 && x.dtype != DataType::kBFloat16))
      throw InvalidArgument("all_reduce_add_rmsnorm: input must be [tokens, hidden] float16 or bfloat16, got " +
                            std::string(dtype_name(x.dtype)) + " " + ints_text(x.shape));
    const Tensor r_in = parse_tensor(residual_in, "residual_in", false, std::nullopt);
    const Tensor r_out = parse_tensor(residual_out, "residual_out", true, std::nullopt);
    const Tensor g = parse_tensor(gamma, "gamma", false, std::nullopt);
    const Tensor n = parse_tensor(norm_out, "norm_out", true, norm_out_as);
    const bool fp8 = !fp8_scale.is_none();
    check_fused_tensor(x, "input", x.shape, x.dtype, c.device());
    check_fused_tensor(r_in, "residual_in", x.shape, x.dtype, c.device());
    check_fused_tensor(r_out, "residual_out", x.shape, x.dtype, c.device());
    check_fused_tensor(g, "gamma", {x.shape[1]}, x.dtype, c.device());
    check_fused_tensor(n, fp8 ? "norm_out (fp8_scale is given)" : "norm_out", x.shape,
                       fp8 ? DataType::kFloat8E4M3 : x.dtype, c.device());
    AddRmsNormArgs a;
    if (fp8) {
      const Tensor sc = parse_tensor(fp8_scale, "fp8_scale", false, std::nullopt);
      check_fused_tensor(sc, "fp8_scale", sc.shape, DataType::kFloat32, c.device());
      if (sc.count != 1)
        throw InvalidArgument("all_reduce_add_rmsnorm: fp8_scale has " + std::to_string(sc.count) +
                              " elements; it must be one float32 (the dequantisation scale)");
      a.scale = static_cast<const float*>(sc.data);
      a.fp8_out = true;
    }
    a.in = x.data;
    a.residual_in = r_in.data;
    a.residual_out = r_out.data;
    a.gamma = g.data;
    a.norm_out = n.data;
    a.tokens = static_cast<size_t>(x.shape[0]);
    a.hidden = static_cast<size_t>(x.shape[1]);
    a.dtype = x.dtype;
    a.eps = static_cast<float>(eps);
    nb::gil_scoped_release release;  // virtual ranks may wait here for earlier calls, which wait for peers
    c.all_reduce_add_rmsnorm(a, reinterpret_cast<cudaStream_t>(stream));
  }

  std::string algo_for(size_t count, const std::string& dtype) const {
    const DataType d = dtype_from_name(dtype);
    check_byte_size(count, d, "algo_for: the message");
    return std::string(algo_name(get().algo_for(count, d)));
  }

  // Symmetric memory: a C-contiguous tensor over a new symmetric allocation (collective), owned by the communicator
  // (freed by free_symmetric() or close(), never by the tensor's own lifetime: a free is collective, and ranks drop
  // their tensors at different times).
  nb::ndarray<nb::array_api> empty(const std::vector<int64_t>& shape, const std::string& dtype) {
    Communicator& c = get();
    const DataType d = dtype_from_name(dtype);
    const size_t count = element_count(shape, "shape");
    check_byte_size(count, d, "shape");
    void* p = nullptr;
    {
      nb::gil_scoped_release release;  // the group's exchanges take it back to call into Python
      p = c.alloc_symmetric(std::max<size_t>(count * dtype_size(d), 1));
    }
    std::vector<size_t> extents(shape.begin(), shape.end());
    // The owner only keeps nanobind from copying at export: the memory is the communicator's (freed by
    // free_symmetric() or close()), so its deleter frees nothing.
    nb::capsule owner(p, [](void*) noexcept {});
    return nb::ndarray<nb::array_api>(p, extents.size(), extents.data(), owner, nullptr, dtype_to_dlpack(d),
                                      nb::device::cuda::value, c.device());
  }

  void free_symmetric(nb::handle tensor) {
    Communicator& c = get();
    const Tensor t = parse_tensor(tensor, "tensor", false, std::nullopt);
    nb::gil_scoped_release release;
    c.free_symmetric(t.data);
  }

  void set_algo(const std::optional<std::string>& name) {
    Communicator& c = get();
    if (!name) return c.set_algo(std::nullopt);
    Algo a;
    if (!parse_algo(*name, &a))
      throw InvalidArgument("unknown algorithm '" + *name +
                            "'; allowed: oneshot_push, oneshot_pull, twoshot, nccl, or None for the config's choice");
    c.set_algo(a);
  }
};

void VirtualRank::finish() {
  // Teardowns release the GIL, during which a collection on another thread may defer one more: drain until none is
  // left, then mark the group gone with the GIL held, after which nothing is added.
  for (;;) {
    if (!comms_.empty()) {
      comms_.front()->teardown();
    } else if (!deferred_.empty()) {
      std::unique_ptr<Communicator> c = std::move(deferred_.back());
      deferred_.pop_back();
      GilRelease release;
      c.reset();
    } else {
      break;
    }
  }
  group_ = nullptr;
}

nb::tuple decision_tuple(const Decision& d) { return nb::make_tuple(std::string(backend_name(d.backend)), d.reason); }

// A file name as the C library will see it: a NUL would silently cut it short, so it is an error instead.
const std::string& checked_path(const std::string& path) {
  if (const size_t nul = path.find('\0'); nul != std::string::npos)
    throw InvalidArgument("path contains a NUL character at offset " + std::to_string(nul) +
                          "; a file name cannot contain one");
  return path;
}

}  // namespace

NB_MODULE(_ext, m) {
  m.doc() = "customar: all-reduce across the GPUs of one machine (C++ extension)";

  auto error = nb::exception<Error>(m, "Error");
  nb::exception<InvalidArgument>(m, "InvalidArgument", error);
  nb::exception<ConfigError>(m, "ConfigError", error);
  nb::exception<CudaError>(m, "CudaError", error);
  nb::exception<NcclError>(m, "NcclError", error);
  nb::exception<SystemError>(m, "SystemCallError", error);
  nb::exception<TimeoutError>(m, "PeerTimeoutError", error);
  nb::exception<StateError>(m, "StateError", error);

  nb::class_<PyCommunicator>(m, "_Communicator")
      .def(nb::init<nb::object, int>(), nb::arg("group"), nb::arg("device"))
      .def("all_reduce", &PyCommunicator::all_reduce, nb::arg("input").none(), nb::arg("output").none(),
           nb::arg("stream"), nb::arg("input_as") = nb::none(), nb::arg("output_as") = nb::none())
      .def("all_reduce_add_rmsnorm", &PyCommunicator::all_reduce_add_rmsnorm, nb::arg("input").none(),
           nb::arg("residual_in").none(), nb::arg("residual_out").none(), nb::arg("gamma").none(),
           nb::arg("norm_out").none(), nb::arg("eps"), nb::arg("fp8_scale").none(), nb::arg("stream"),
           nb::arg("norm_out_as") = nb::none())
      .def("algo_for", &PyCommunicator::algo_for, nb::arg("count"), nb::arg("dtype"))
      .def("set_algo", &PyCommunicator::set_algo, nb::arg("algo").none())
      .def("close", &PyCommunicator::close)
      .def("ensure_open", [](const PyCommunicator& self) { (void)self.get(); })
      .def("check", [](const PyCommunicator& self) { self.get().check(); })
      .def_prop_ro("closed", [](const PyCommunicator& self) { return !self.comm; })
      .def_prop_ro("capacity", [](const PyCommunicator& self) { return self.get().capacity(); })
      .def_prop_ro("backend",
                   [](const PyCommunicator& self) { return std::string(backend_name(self.get().backend())); })
      .def_prop_ro("reason", [](const PyCommunicator& self) { return self.get().reason(); })
      .def_prop_ro("rank", [](const PyCommunicator& self) { return self.get().rank(); })
      .def_prop_ro("size", [](const PyCommunicator& self) { return self.get().size(); })
      .def_prop_ro("device", [](const PyCommunicator& self) { return self.get().device(); })
      .def("empty", &PyCommunicator::empty, nb::arg("shape"), nb::arg("dtype"))
      .def("free_symmetric", &PyCommunicator::free_symmetric, nb::arg("tensor").none())
      .def_prop_ro("symmetric_bytes", [](const PyCommunicator& self) { return self.get().symmetric_bytes(); });

  nb::class_<VirtualRank>(m, "VirtualGroup",
                          "One rank of a virtual world (customar.run_virtual): usable from its rank's thread while "
                          "the rank's function runs.")
      .def_ro("rank", &VirtualRank::rank)
      .def_ro("size", &VirtualRank::size)
      .def_ro("device", &VirtualRank::device, "The CUDA device every rank of the world runs on.")
      .def_ro("stream", &VirtualRank::stream,
              "The rank's cudaStream_t as an int (torch.cuda.ExternalStream / cupy.cuda.ExternalStream).")
      .def_ro("partition", &VirtualRank::partition, "How the ranks share the GPU's SMs.")
      .def("all_gather", &VirtualRank::all_gather, nb::arg("data"), "Collective: every rank's bytes, in rank order.")
      .def("barrier", &VirtualRank::barrier, "Collective: returns when every rank has called it.")
      .def("__repr__", [](const VirtualRank& v) {
        return "customar.VirtualGroup(rank " + std::to_string(v.rank) + " of " + std::to_string(v.size) + ", device " +
               std::to_string(v.device) + ", " + v.partition + ")";
      });
  m.def(
      "_launch_virtual",
      [](int n, nb::callable body, int device, const std::string& partition) {
        run_virtual_world(n, body, device, partition_from_name(partition));
      },
      nb::arg("n"), nb::arg("body"), nb::arg("device"), nb::arg("partition"),
      "Runs body(group) on n threads, one per rank of a virtual world on `device`, and returns when all have ended.");

  m.def(
      "dispatch_custom_allreduce",
      [](nb::object g, int device) {
        GroupRef group(std::move(g), "dispatch_custom_allreduce");
        Decision d;
        {
          nb::gil_scoped_release release;  // collective
          d = customar::dispatch_custom_allreduce(group.get(), device);
        }
        return decision_tuple(d);
      },
      nb::arg("group"), nb::arg("device"),
      "Detects the group's topology (collective), decides and agrees across ranks: (backend, reason).");
  m.def(
      "can_use_custom_all_reduce_v2",
      [](nb::object g, int device) {
        GroupRef group(std::move(g), "can_use_custom_all_reduce_v2");
        nb::gil_scoped_release release;  // collective
        return customar::can_use_custom_all_reduce_v2(group.get(), device);
      },
      nb::arg("group"), nb::arg("device"));
  m.def(
      "decide_topology_file",
      [](const std::string& path, bool disable, bool disable_v2) {
        DispatchOptions o;
        o.disable = disable;
        o.disable_v2 = disable_v2;
        return decision_tuple(decide_backend(load_topology_file(checked_path(path)), global_config(), o));
      },
      nb::arg("path"), nb::arg("disable") = false, nb::arg("disable_v2") = false,
      "The decision for a topology file (no GPU needed): (backend, reason).");
  m.def("check_tensor", &tensor_info, nb::arg("tensor").none(), nb::arg("as_dtype") = nb::none(),
        "Validates a tensor as all_reduce would: (count, dtype, device) or an InvalidArgument.");
  m.def("_typed_view", &typed_view, nb::arg("buffer"), nb::arg("dtype"), nb::arg("shape"));
  m.def("_set_nccl_wheel_library", &detail::set_python_nccl_library, nb::arg("path"),
        "Called by the package at import: the nvidia-nccl-cu13 wheel's libnccl.so.2, or '' when it is not installed. "
        "customar takes it when no NCCL is loaded in the process and CUSTOMAR_NCCL_LIBRARY is unset.");
}
