// The Python extension `customar._ext`: the Communicator over any DLPack tensor, the decision functions, and the
// library's exceptions as a Python hierarchy. The Python package (python/customar/__init__.py) adds the
// torch.distributed adapter and the framework-aware output allocation.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <memory>
#include <string>

#include "customar/communicator.h"
#include "customar/config.h"
#include "customar/dispatch.h"
#include "customar/error.h"
#include "customar/topology.h"
#include "nccl/nccl_loader.h"

namespace nb = nanobind;
using namespace customar;

namespace {

// A Group whose exchanges are done by a Python object with `rank`, `size` and `all_gather(bytes) -> list[bytes]`.
// Called only from the thread that holds the GIL (construction and destruction of a Communicator run from Python).
class PyGroup final : public Group {
 public:
  explicit PyGroup(nb::object obj) : obj_(std::move(obj)) {
    rank_ = nb::cast<int>(obj_.attr("rank"));
    size_ = nb::cast<int>(obj_.attr("size"));
    if (size_ < 1 || rank_ < 0 || rank_ >= size_)
      throw InvalidArgument("group has rank " + std::to_string(rank_) + " of size " + std::to_string(size_) +
                            "; expected 0 <= rank < size");
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::vector<Bytes> all_gather(std::span<const uint8_t> mine) override {
    nb::gil_scoped_acquire gil;
    nb::bytes in(reinterpret_cast<const char*>(mine.data()), mine.size());
    nb::object result = obj_.attr("all_gather")(in);
    std::vector<Bytes> out;
    for (nb::handle item : result) {
      nb::bytes b = nb::cast<nb::bytes>(item);
      const auto* p = static_cast<const uint8_t*>(b.data());
      out.emplace_back(p, p + b.size());
    }
    if (static_cast<int>(out.size()) != size_)
      throw Error("group.all_gather returned " + std::to_string(out.size()) + " items for a group of size " +
                  std::to_string(size_));
    return out;
  }
  void barrier() override { all_gather({}); }

 private:
  nb::object obj_;
  int rank_ = 0, size_ = 1;
};

struct Tensor {
  void* data;
  size_t count;
  DataType dtype;
  int device;
};

// Everything the all-reduce needs from a DLPack tensor, with a clear error for anything it cannot take.
Tensor parse_tensor(const nb::ndarray<>& a, const char* what) {
  // Contiguity first: it is the error a CPU test can reach too.
  int64_t expect = 1;
  for (size_t d = a.ndim(); d-- > 0;) {
    if (a.shape(d) != 1 && a.stride(d) != expect)
      throw InvalidArgument(std::string(what) + " is not contiguous (stride " + std::to_string(a.stride(d)) +
                            " in dimension " + std::to_string(d) + ", expected " + std::to_string(expect) +
                            "); pass a contiguous tensor (e.g. t.contiguous())");
    expect *= a.shape(d);
  }
  if (a.device_type() != nb::device::cuda::value)
    throw InvalidArgument(std::string(what) + " is not a CUDA tensor (DLPack device type " +
                          std::to_string(a.device_type()) + "); customar reduces GPU memory only");
  nb::dlpack::dtype t = a.dtype();
  DataType d;
  if (t.lanes == 1 && t.code == static_cast<uint8_t>(nb::dlpack::dtype_code::Float) && t.bits == 16)
    d = DataType::kFloat16;
  else if (t.lanes == 1 && t.code == static_cast<uint8_t>(nb::dlpack::dtype_code::Bfloat) && t.bits == 16)
    d = DataType::kBFloat16;
  else if (t.lanes == 1 && t.code == static_cast<uint8_t>(nb::dlpack::dtype_code::Float) && t.bits == 32)
    d = DataType::kFloat32;
  else
    throw InvalidArgument(std::string(what) + " has DLPack dtype (code " + std::to_string(t.code) + ", bits " +
                          std::to_string(t.bits) + "); allowed: float16, bfloat16, float32");
  return {a.data(), a.size(), d, a.device_id()};
}

struct PyCommunicator {
  // Declared in this order so the communicator (whose destructor uses the group) goes first.
  std::unique_ptr<PyGroup> group;
  std::unique_ptr<Communicator> comm;
  PyCommunicator(nb::object g, int device)
      : group(std::make_unique<PyGroup>(std::move(g))), comm(std::make_unique<Communicator>(*group, device)) {}
  ~PyCommunicator() {
    comm.reset();
    group.reset();
  }
};

nb::tuple decision_tuple(const Decision& d) { return nb::make_tuple(std::string(backend_name(d.backend)), d.reason); }

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
      .def(
          "all_reduce",
          [](PyCommunicator& self, nb::ndarray<> in, nb::ndarray<> out, uintptr_t stream) {
            Tensor i = parse_tensor(in, "input");
            Tensor o = parse_tensor(out, "output");
            if (i.count != o.count || i.dtype != o.dtype)
              throw InvalidArgument("output must have the input's number of elements and dtype");
            if (i.device != self.comm->device() || o.device != self.comm->device())
              throw InvalidArgument("tensors are on device " + std::to_string(i.device) +
                                    " but the communicator is on device " + std::to_string(self.comm->device()));
            nb::gil_scoped_release release;  // the call only enqueues work
            self.comm->all_reduce(i.data, o.data, i.count, i.dtype, reinterpret_cast<cudaStream_t>(stream));
          },
          nb::arg("input"), nb::arg("output"), nb::arg("stream"))
      .def("check", [](PyCommunicator& self) { self.comm->check(); })
      .def_prop_ro("backend", [](PyCommunicator& self) { return std::string(backend_name(self.comm->backend())); })
      .def_prop_ro("reason", [](PyCommunicator& self) { return self.comm->reason(); })
      .def_prop_ro("rank", [](PyCommunicator& self) { return self.comm->rank(); })
      .def_prop_ro("size", [](PyCommunicator& self) { return self.comm->size(); })
      .def_prop_ro("device", [](PyCommunicator& self) { return self.comm->device(); });

  m.def(
      "dispatch_custom_allreduce",
      [](nb::object g, int device) {
        PyGroup group(std::move(g));
        return decision_tuple(customar::dispatch_custom_allreduce(group, device));
      },
      nb::arg("group"), nb::arg("device"),
      "Detects the group's topology (collective), decides and agrees across ranks: (backend, reason).");
  m.def(
      "can_use_custom_all_reduce_v2",
      [](nb::object g, int device) {
        PyGroup group(std::move(g));
        return customar::can_use_custom_all_reduce_v2(group, device);
      },
      nb::arg("group"), nb::arg("device"));
  m.def(
      "decide_topology_file",
      [](const std::string& path, bool disable, bool disable_v2) {
        DispatchOptions o;
        o.disable = disable;
        o.disable_v2 = disable_v2;
        return decision_tuple(decide_backend(load_topology_file(path), global_config(), o));
      },
      nb::arg("path"), nb::arg("disable") = false, nb::arg("disable_v2") = false,
      "The decision for a topology file (no GPU needed): (backend, reason).");
  m.def(
      "check_tensor",
      [](nb::ndarray<> t) {
        Tensor x = parse_tensor(t, "tensor");
        return nb::make_tuple(x.count, std::string(dtype_name(x.dtype)), x.device);
      },
      nb::arg("tensor"), "Validates a DLPack tensor as all_reduce would: (count, dtype, device) or an exception.");
  m.def("_set_nccl_wheel_library", &detail::set_python_nccl_library, nb::arg("path"),
        "Called by the package at import: the nvidia-nccl-cu13 wheel's libnccl.so.2, or '' when it is not installed. "
        "customar takes it when no NCCL is loaded in the process and CUSTOMAR_NCCL_LIBRARY is unset.");
}
