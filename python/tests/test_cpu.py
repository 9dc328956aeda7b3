"""Python binding tests that need no GPU (CI): import, the exception hierarchy, decisions on topology files, and
everything the binding validates before the library sees it: tensors (NumPy arrays, and DLPack tensors made by hand
in fake_dlpack.py, which can claim a CUDA device without one), groups, devices, streams and paths."""
import pathlib

import numpy as np
import pytest

import customar
from fake_dlpack import (BFLOAT, BOOL, COMPLEX, CPU, CUDA_HOST, CUDA_MANAGED, FLOAT, FLOAT8_E4M3FN, FLOAT8_E4M3FNUZ,
                         FLOAT8_E5M2, FLOAT8_E5M2FNUZ, INT, ROCM, UINT, FakeTensor)

DATA = pathlib.Path(__file__).resolve().parents[2] / "tests" / "unit" / "data"
ALLOWED = "allowed: float16, bfloat16, float32, float64, int8, uint8, int32, uint32, int64, uint64, float8_e4m3fn"


def test_exception_hierarchy():
    for exc in (customar.InvalidArgument, customar.ConfigError, customar.CudaError, customar.NcclError,
                customar.PeerTimeoutError, customar.StateError, customar.SystemCallError):
        assert issubclass(exc, customar.Error)
    assert issubclass(customar.Error, Exception)


# ---- decisions on topology files ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, backend", [
    ("pcie2.json", "v1"),
    ("pcie4.json", "nccl"),
    ("nvlink8.json", "v2"),
    ("nvlink2_no_nvrtc.json", "v1"),
    ("two_hosts.json", "nccl"),
    ("nvlink4_missing_pair.json", "nccl"),
])
def test_decisions_on_topology_files(name, backend):
    got, reason = customar.decide_topology_file(str(DATA / name))
    assert got == backend, reason
    assert reason


def test_decision_switches():
    assert customar.decide_topology_file(str(DATA / "nvlink8.json"), disable_v2=True)[0] == "v1"
    assert customar.decide_topology_file(str(DATA / "nvlink8.json"), disable=True)[0] == "nccl"


def test_bad_topology_file_is_a_config_error():
    with pytest.raises(customar.ConfigError, match="nvlink"):
        customar.decide_topology_file(str(DATA / "bad_shape.json"))
    with pytest.raises(customar.ConfigError, match="cannot be opened"):
        customar.decide_topology_file("/nonexistent.json")


@pytest.mark.parametrize("path", [DATA / "pcie2.json", bytes(DATA / "pcie2.json")], ids=["pathlib", "bytes"])
def test_topology_path_may_be_pathlike_or_bytes(path):
    assert customar.decide_topology_file(path)[0] == "v1"


@pytest.mark.parametrize("path", [str(DATA / "pcie2.json") + "\0.txt", "a\0b", b"a\0b"], ids=["suffix", "str", "bytes"])
def test_path_with_nul_is_rejected_not_cut(path):
    with pytest.raises(customar.InvalidArgument, match="NUL character"):
        customar.decide_topology_file(path)


def test_path_of_wrong_type_is_rejected():
    with pytest.raises(customar.InvalidArgument, match="path must be"):
        customar.decide_topology_file(3)


# ---- dtypes -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("code, bits, name", [
    (FLOAT, 16, "fp16"), (BFLOAT, 16, "bf16"), (FLOAT, 32, "fp32"), (FLOAT, 64, "fp64"),
    (INT, 8, "int8"), (UINT, 8, "uint8"), (INT, 32, "int32"), (UINT, 32, "uint32"), (INT, 64, "int64"),
    (UINT, 64, "uint64"), (FLOAT8_E4M3FN, 8, "fp8e4m3"), (FLOAT8_E5M2, 8, "fp8e5m2"),
])
def test_every_dtype_nccl_sums_is_accepted(code, bits, name):
    assert customar.check_tensor(FakeTensor((3, 5), code=code, bits=bits, device_id=1)) == (15, name, 1)


@pytest.mark.parametrize("code, bits, shown", [
    (BOOL, 8, "bool"), (COMPLEX, 64, "complex64"), (INT, 16, "int16"), (UINT, 16, "uint16"), (FLOAT, 8, "float8"),
    (BFLOAT, 32, "bfloat32"), (FLOAT8_E4M3FNUZ, 8, "float8_e4m3fnuz"), (FLOAT8_E5M2FNUZ, 8, "float8_e5m2fnuz"),
    (8, 8, "float8_e4m3"), (14, 8, "float8_e8m0fnu"), (17, 4, "float4_e2m1fn"), (FLOAT8_E4M3FN, 16, "float8_e4m3fn of 16 bits"),
    (99, 8, "DLPack type code 99 of 8 bits"),
])
def test_other_dtypes_are_named_and_rejected(code, bits, shown):
    with pytest.raises(customar.InvalidArgument, match=f"dtype {shown}.*{ALLOWED}"):
        customar.check_tensor(FakeTensor((4,), code=code, bits=bits))


def test_vector_lanes_are_rejected():
    with pytest.raises(customar.InvalidArgument, match="float32 x4 vector lanes"):
        customar.check_tensor(FakeTensor((4,), lanes=4))


@pytest.mark.parametrize("dtype, name", [
    (np.float16, "fp16"), (np.float32, "fp32"), (np.float64, "fp64"), (np.int8, "int8"), (np.uint8, "uint8"),
    (np.int32, "int32"), (np.uint32, "uint32"), (np.int64, "int64"), (np.uint64, "uint64"),
])
def test_numpy_dtype_is_mapped_then_refused_as_cpu_memory(dtype, name):
    with pytest.raises(customar.InvalidArgument, match=rf"\(6 x {name}\) is not a CUDA tensor"):
        customar.check_tensor(np.zeros((2, 3), dtype=dtype))


@pytest.mark.parametrize("dtype, shown", [(np.bool_, "bool"), (np.complex64, "complex64"), (np.int16, "int16"),
                                          (np.uint16, "uint16")])
def test_numpy_dtype_nccl_does_not_sum_is_rejected_first(dtype, shown):
    with pytest.raises(customar.InvalidArgument, match=f"dtype {shown}"):
        customar.check_tensor(np.zeros(4, dtype=dtype))


@pytest.mark.parametrize("as_dtype, name", [("float8_e4m3fn", "fp8e4m3"), ("fp8e5m2", "fp8e5m2")])
def test_uint8_storage_reads_as_fp8(as_dtype, name):
    assert customar._ext.check_tensor(FakeTensor((8,), code=UINT, bits=8), as_dtype) == (8, name, 0)


@pytest.mark.parametrize("as_dtype, tensor, error", [
    ("bogus", FakeTensor((8,), code=UINT, bits=8), "'bogus' is not one customar sums"),
    ("bfloat16", FakeTensor((8,), code=UINT, bits=8), "only fp8 types"),
    ("float8_e4m3fn", FakeTensor((8,), code=INT, bits=32), "must be uint8 storage"),
])
def test_reading_storage_as_another_dtype_is_limited_to_fp8(as_dtype, tensor, error):
    with pytest.raises(customar.InvalidArgument, match=error):
        customar._ext.check_tensor(tensor, as_dtype)


# ---- shapes, sizes, layouts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, strides, count", [
    ((4, 6), None, 24),
    ((4, 6), (1, 4), 24),                 # transposed
    ((2, 3, 4, 5), (60, 1, 15, 3), 120),  # channels-last
    ((3, 1, 4), (1, 77, 3), 12),          # an extent-1 dimension may have any stride
    ((3, 0, 5), (0, 0, 0), 0),            # empty: nothing to reduce, whatever the strides
    ((), None, 1),                        # a scalar
])
def test_dense_layouts_are_accepted(shape, strides, count):
    assert customar.check_tensor(FakeTensor(shape, strides))[0] == count


@pytest.mark.parametrize("make", [
    lambda: np.zeros((4, 6), np.float32).T,
    lambda: np.zeros((2, 3, 4), np.float32).transpose(2, 0, 1),
    lambda: np.zeros((4, 6), np.float32)[1:2],
], ids=["transposed", "permuted", "one_row"])
def test_numpy_dense_views_pass_the_layout_check(make):
    with pytest.raises(customar.InvalidArgument, match="not a CUDA tensor"):
        customar.check_tensor(make())


@pytest.mark.parametrize("make, error", [
    (lambda: np.zeros((8, 8), np.float16)[:, ::2], "has gaps"),
    (lambda: np.zeros((8, 8), np.float16)[:, :4], "has gaps"),
    (lambda: np.broadcast_to(np.zeros(4, np.float32), (3, 4)), "is broadcast"),
    (lambda: np.lib.stride_tricks.as_strided(np.zeros(8, np.float32), (4, 4), (4, 4)), "overlaps itself"),
    (lambda: np.zeros(4, np.float32)[::-1], "negative stride"),
], ids=["step", "narrowed", "broadcast", "overlapping", "reversed"])
def test_non_dense_views_are_rejected_with_the_fix(make, error):
    with pytest.raises(customar.InvalidArgument, match=f"{error}.*pass a dense tensor"):
        customar.check_tensor(make())


@pytest.mark.parametrize("kwargs, error", [
    (dict(shape=(4, -1)), r"negative extent in dimension 1"),
    (dict(shape=(2**40, 2**40)), "element count overflows"),
    (dict(shape=(2**31, 2**31), bits=64), "byte size overflows"),
    (dict(shape=(4, 4), strides=(4, 2)), "has gaps"),
    (dict(shape=(4, 4), strides=(1, 1)), "overlaps itself"),
    (dict(shape=(4,), device_id=-5), "device id -5"),
    (dict(shape=(4,), device_type=CPU), r"device type 1 \(CPU\)"),
    (dict(shape=(4,), device_type=CUDA_HOST), r"device type 3 \(CUDA host"),
    (dict(shape=(4,), device_type=CUDA_MANAGED), r"device type 13 \(CUDA managed"),
    (dict(shape=(4,), device_type=ROCM), r"device type 10 \(ROCm"),
    (dict(shape=(4,), data=0), "null data pointer"),
    (dict(shape=(4,), data=2**64 - 8, byte_offset=16), "byte offset that overflows"),
], ids=["negative_extent", "count_overflow", "byte_size_overflow", "strides_with_gaps", "strides_overlapping",
        "negative_device_id", "cpu", "cuda_host", "cuda_managed", "rocm", "null_data", "byte_offset_overflow"])
def test_malformed_dlpack_tensor_is_rejected(kwargs, error):
    with pytest.raises(customar.InvalidArgument, match=error):
        customar.check_tensor(FakeTensor(**kwargs))


@pytest.mark.parametrize("obj", [[1.0, 2.0], "abc", None, object()], ids=["list", "str", "none", "object"])
def test_non_tensor_is_rejected_with_what_to_pass(obj):
    with pytest.raises(customar.InvalidArgument, match="cannot be read as a tensor.*__dlpack__"):
        customar.check_tensor(obj)


def test_torch_cpu_tensor_is_rejected():
    torch = pytest.importorskip("torch")
    with pytest.raises(customar.InvalidArgument, match=r"\(16 x bf16\) is not a CUDA tensor"):
        customar.check_tensor(torch.ones(16, dtype=torch.bfloat16))
    with pytest.raises(customar.InvalidArgument, match="not a CUDA tensor"):  # transposed: the layout is fine
        customar.check_tensor(torch.ones(8, 4).t())
    with pytest.raises(customar.InvalidArgument, match="has gaps"):
        customar.check_tensor(torch.ones(8, 8)[:, ::2])


@pytest.mark.parametrize("dtype, name", [("float8_e4m3fn", "fp8e4m3"), ("float8_e5m2", "fp8e5m2")])
@pytest.mark.parametrize("exports", [True, False], ids=["dlpack", "uint8_view"])
def test_torch_fp8_is_read_through_dlpack_or_its_bytes(monkeypatch, dtype, name, exports):
    torch = pytest.importorskip("torch")
    if exports and not customar._torch_exports_fp8():
        pytest.skip("this torch does not export fp8 through DLPack")
    monkeypatch.setattr(customar, "_torch_exports_fp8", lambda: exports)
    with pytest.raises(customar.InvalidArgument, match=rf"\(6 x {name}\) is not a CUDA tensor"):
        customar.check_tensor(torch.zeros(2, 3, dtype=getattr(torch, dtype)))


# ---- groups -------------------------------------------------------------------------------------------------------

class FakeGroup:
    def __init__(self, rank=0, size=1, gather=None):
        self.rank, self.size, self._gather = rank, size, gather

    def all_gather(self, data):
        return self._gather(data) if self._gather else [data] * self.size


def test_world_size_one_group_needs_no_gpu():
    assert customar.dispatch_custom_allreduce(FakeGroup(), 0) == ("none", "world size 1: nothing to reduce")
    assert customar.can_use_custom_all_reduce_v2(FakeGroup(), 0) is False


def test_numpy_integer_rank_is_an_int():
    assert customar.dispatch_custom_allreduce(FakeGroup(rank=np.int64(0), size=np.int32(1)), 0)[0] == "none"


def test_object_without_group_attributes_is_rejected():
    with pytest.raises(customar.InvalidArgument, match="group"):
        customar.Communicator(object(), 0)


@pytest.mark.parametrize("attr, value, error", [
    ("rank", 0.0, "group.rank must be an int, got float"),
    ("rank", "0", "group.rank must be an int, got str"),
    ("rank", True, "group.rank must be an int, got bool"),
    ("rank", 2**70, "group.rank = int .* does not fit in an int"),
    ("size", 1.0, "group.size must be an int, got float"),
    ("size", "1", "group.size must be an int, got str"),
    ("size", True, "group.size must be an int, got bool"),
    ("size", 2**40, "group.size = int .* does not fit in an int"),
    ("rank", 3, "rank 3 of size 1"),
    ("size", 0, "rank 0 of size 0"),
], ids=["rank_float", "rank_str", "rank_bool", "rank_huge", "size_float", "size_str", "size_bool", "size_huge",
        "rank_out_of_range", "size_zero"])
@pytest.mark.parametrize("entry", ["dispatch", "communicator"])
def test_bad_group_rank_or_size_is_rejected(attr, value, error, entry):
    group = FakeGroup(**{attr: value})
    with pytest.raises(customar.InvalidArgument, match=error):
        if entry == "dispatch":
            customar.dispatch_custom_allreduce(group, 0)
        else:
            customar.Communicator(group, 0)


@pytest.mark.parametrize("gather, error", [
    (lambda d: [d], "got 1 items"),
    (lambda d: [d, d, d], "got 3 items"),
    (lambda d: [d, "x"], "item 1 is str"),
    (lambda d: [d, None], "item 1 is NoneType"),
    (lambda d: d, "got bytes"),
    (lambda d: None, "got NoneType"),
    (lambda d: iter([d, d]), "got list_iterator"),
], ids=["too_few", "too_many", "str_item", "none_item", "bytes_not_list", "none", "iterator"])
def test_bad_all_gather_result_is_rejected(gather, error):
    with pytest.raises(customar.InvalidArgument, match=f"group.all_gather must return a list of 2 bytes.*{error}"):
        customar.dispatch_custom_allreduce(FakeGroup(size=2, gather=gather), 0)


def test_all_gather_may_return_a_tuple_of_bytearrays():
    # Accepted: the exchange goes on to the GPU description, which a CPU-only machine cannot give (an Error that is
    # not about all_gather) and a GPU machine gives (a decision).
    group = FakeGroup(size=2, gather=lambda d: (bytearray(d), bytes(d)))
    try:
        backend, _ = customar.dispatch_custom_allreduce(group, 0)
        assert backend in ("v2", "v1", "nccl")
    except customar.Error as err:
        assert "all_gather" not in str(err)


# ---- devices ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("device, error", [
    (1.5, "got float 1.5"), ("0", "got str '0'"), (True, "got bool"), (None, "got NoneType"),
    (-1, r"in \[0, 2\*\*31\), got -1"), (2**40, r"in \[0, 2\*\*31\)"),
], ids=["float", "str", "bool", "none", "negative", "huge"])
@pytest.mark.parametrize("entry", ["communicator", "dispatch"])
def test_bad_device_is_rejected_before_the_library(device, error, entry):
    with pytest.raises(customar.InvalidArgument, match=f"device must be .*{error}"):
        if entry == "communicator":
            customar.Communicator(FakeGroup(), device)
        else:
            customar.dispatch_custom_allreduce(FakeGroup(), device)


def test_bad_device_in_a_group_fails_every_rank_together():
    # In a group of several ranks this rank still joins the exchange (with device -1, which every rank's vote
    # rejects), so no peer waits for it; it then raises its own error, caused by the collective one.
    seen = []
    group = FakeGroup(size=2, gather=lambda d: seen.append(d) or [d, d])
    with pytest.raises(customar.InvalidArgument, match="got float 1.5") as err:
        customar.dispatch_custom_allreduce(group, 1.5)
    assert seen, "the exchange was skipped: the other ranks would wait for this one"
    assert isinstance(err.value.__cause__, customar.Error)


def test_torch_cpu_device_is_rejected():
    torch = pytest.importorskip("torch")
    with pytest.raises(customar.InvalidArgument, match="must be a CUDA device"):
        customar.Communicator(FakeGroup(), torch.device("cpu"))


# ---- streams and dtype names ----------------------------------------------------------------------------------------

class FakeStream:
    def __init__(self, **attrs):
        self.__dict__.update(attrs)


@pytest.mark.parametrize("stream, handle", [
    (0, 0), (7, 7), (2**64 - 1, 2**64 - 1), (FakeStream(cuda_stream=11), 11), (FakeStream(ptr=12), 12),
], ids=["legacy", "int", "largest", "torch_like", "cupy_like"])
def test_stream_handles_are_taken(stream, handle):
    assert customar._stream_handle(stream) == handle


@pytest.mark.parametrize("stream, error", [
    (1.5, "got float"), ("0", "got str"), (True, "got bool"), (-1, "got int -1"), (2**64, "got int"),
    (object(), "got object"), (FakeStream(cuda_stream="x"), "got str 'x'"), (FakeStream(ptr=1.0), "got float"),
], ids=["float", "str", "bool", "negative", "huge", "object", "str_attr", "float_attr"])
def test_bad_stream_is_rejected(stream, error):
    with pytest.raises(customar.InvalidArgument, match=f"stream.*{error}"):
        customar._stream_handle(stream)


def test_stream_of_another_device_is_rejected():
    with pytest.raises(customar.InvalidArgument, match="device 1 but the communicator is on device 0"):
        customar._stream_handle(FakeStream(ptr=5, device_id=1), 0)


@pytest.mark.parametrize("dtype, name", [("bf16", "bf16"), (np.float16, "float16"), (np.dtype("int8"), "int8")])
def test_dtype_names(dtype, name):
    assert customar._dtype_name(dtype) == name


def test_torch_dtype_name():
    torch = pytest.importorskip("torch")
    assert customar._dtype_name(torch.float8_e4m3fn) == "float8_e4m3fn"


def test_extension_has_no_link_time_nccl():
    """NCCL is found at run time (the process's own first): neither the extension nor the libcustomar beside it
    names one among its NEEDED entries, so importing customar never takes the soname libnccl.so.2."""
    import shutil
    import subprocess

    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf is not installed")
    ext = pathlib.Path(customar._ext.__file__)
    for lib in [ext, *sorted(ext.parent.glob("libcustomar.so*"))]:
        out = subprocess.run([readelf, "-d", str(lib)], capture_output=True, text=True, check=True).stdout
        needed = [line for line in out.splitlines() if "(NEEDED)" in line]
        assert needed, f"readelf -d {lib} lists no NEEDED entry"
        assert not [line for line in needed if "libnccl" in line], f"{lib} needs NCCL at link time: {needed}"


def test_import_loads_no_nccl():
    """`import customar` loads no NCCL: a framework imported after it loads its own."""
    import subprocess
    import sys

    code = "import customar; print(sum('libnccl' in line for line in open('/proc/self/maps')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"


def test_nccl_wheel_library_is_found_in_the_nvidia_namespace(tmp_path):
    """The package hands the nvidia-nccl-cu13 wheel's nvidia/nccl/lib/libnccl.so.2 to the loader, from whichever
    directory of the `nvidia` namespace package holds it."""
    import os
    import subprocess
    import sys

    (tmp_path / "a" / "nvidia").mkdir(parents=True)
    lib = tmp_path / "b" / "nvidia" / "nccl" / "lib" / "libnccl.so.2"
    lib.parent.mkdir(parents=True)
    lib.write_bytes(b"")
    # The installed customar stays importable (it may itself come from PYTHONPATH, as on the GPU machine).
    here = str(pathlib.Path(customar.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b"), here]))
    code = "import customar; print(customar._nccl_wheel_library())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == str(lib)



# ---- virtual ranks: arguments, and the harness around the threads ---------------------------------------------------

def _never_called(group):
    raise AssertionError("the rank function ran")


@pytest.mark.parametrize("n, error", [
    (0, r"1\.\.8, got 0"), (9, r"1\.\.8, got 9"), (-1, r"1\.\.8, got -1"), (1.5, "got float 1.5"), ("2", "got str"),
    (True, "got bool"), (None, "got NoneType"),
], ids=["zero", "nine", "negative", "float", "str", "bool", "none"])
def test_run_virtual_rejects_a_bad_rank_count(n, error):
    with pytest.raises(customar.InvalidArgument, match=f"n must be .*{error}"):
        customar.run_virtual(n, _never_called)


@pytest.mark.parametrize("fn", [None, 3, "fn"], ids=["none", "int", "str"])
def test_run_virtual_rejects_a_function_that_is_not_callable(fn):
    with pytest.raises(customar.InvalidArgument, match="fn must be callable"):
        customar.run_virtual(2, fn)


@pytest.mark.parametrize("device, error", [(-1, r"in \[0, 2\*\*31\), got -1"), (1.0, "got float"), ("0", "got str")],
                         ids=["negative", "float", "str"])
def test_run_virtual_rejects_a_bad_device(device, error):
    with pytest.raises(customar.InvalidArgument, match=f"device must be .*{error}"):
        customar.run_virtual(2, _never_called, device=device)


@pytest.mark.parametrize("partition", ["green", "capped", "AUTO", "", None, 0])
def test_run_virtual_rejects_an_unknown_partition(partition):
    with pytest.raises(customar.InvalidArgument, match="partition must be one of auto, green_contexts, capped_grids"):
        customar.run_virtual(2, _never_called, partition=partition)


def test_extension_rejects_an_unknown_partition_too():
    with pytest.raises(customar.InvalidArgument, match="partition 'green' is unknown"):
        customar._ext._launch_virtual(2, _never_called, 0, "green")


@pytest.mark.skipif(pathlib.Path("/dev/nvidia0").exists(), reason="a GPU is present")
def test_run_virtual_without_a_gpu_raises_before_any_rank_runs():
    with pytest.raises(customar.Error, match="cudaGetDeviceCount"):
        customar.run_virtual(2, _never_called)


def test_virtual_group_is_made_by_run_virtual_only():
    with pytest.raises(TypeError):
        customar.VirtualGroup()


class _ThreadLauncher:
    """Stands in for the extension's launcher: body(group) on one thread per rank, FakeGroup as the group."""

    def __init__(self, n):
        import threading

        self.threads = [threading.Thread(target=self._run, args=(r, n)) for r in range(n)]

    def _run(self, rank, n):
        self.body(FakeGroup(rank=rank, size=n))

    def __call__(self, body):
        self.body = body
        for t in self.threads:
            t.start()
        for t in self.threads:
            t.join()


def test_run_world_returns_every_rank_result_in_rank_order():
    from customar.virtual import _run_world

    assert _run_world(4, lambda g: (g.rank, g.size), _ThreadLauncher(4)) == [(0, 4), (1, 4), (2, 4), (3, 4)]


def test_run_world_raises_the_first_failure_after_every_rank_has_ended():
    from customar.virtual import _run_world

    import threading

    launcher, ended, started = _ThreadLauncher(4), [], threading.Barrier(4)

    def fn(group):
        started.wait()
        if group.rank == 2:
            raise ValueError("rank two broke")
        launcher.threads[2].join()  # rank 2's failure is recorded first
        if group.rank == 0:
            raise customar.PeerTimeoutError("rank 2 finished while rank 0 waited for it")
        ended.append(group.rank)
        return group.rank

    with pytest.raises(ValueError, match="rank two broke") as err:
        _run_world(4, fn, launcher)
    assert sorted(ended) == [1, 3]
    assert getattr(err.value, "__notes__", []) == ["customar.run_virtual: raised on rank 2 of 4 (then ranks [0] "
                                                   "failed too)"]


def test_run_world_reports_a_rank_that_never_ran_the_function():
    from customar.virtual import _run_world

    def half_launcher(body):  # rank 1's thread dies outside the function (as a failed set-up of the rank would)
        body(FakeGroup(rank=0, size=2))

    with pytest.raises(customar.Error, match=r"ranks \[1\] ended without running the function"):
        _run_world(2, lambda g: g.rank, half_launcher)


def test_run_world_refuses_a_second_world_at_once():
    from customar.virtual import _run_world

    inner = []

    def fn(group):
        with pytest.raises(customar.StateError, match="another virtual world is running"):
            _run_world(1, lambda g: None, _ThreadLauncher(1))
        inner.append(group.rank)

    _run_world(2, fn, _ThreadLauncher(2))
    assert sorted(inner) == [0, 1]


def test_virtual_world_lock_is_free_again_after_a_failure():
    from customar.virtual import _run_world

    with pytest.raises(RuntimeError):
        _run_world(1, lambda g: (_ for _ in ()).throw(RuntimeError("x")), _ThreadLauncher(1))
    assert _run_world(1, lambda g: "again", _ThreadLauncher(1)) == ["again"]


# ---- torch ops: what needs no torch -------------------------------------------------------------------------------

def test_unknown_communicator_handle_is_a_state_error():
    with pytest.raises(customar.StateError, match="handle 123456 names no open communicator"):
        customar._live_communicator(123456)


def test_fused_call_availability_is_a_bool():
    assert customar.HAS_ALL_REDUCE_ADD_RMSNORM in (True, False)
    assert customar.HAS_ALL_REDUCE_ADD_RMSNORM == hasattr(customar._ext._Communicator, "all_reduce_add_rmsnorm")
