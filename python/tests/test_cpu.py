"""Python binding tests that need no GPU (CI): import, the exception hierarchy, decisions on topology files, and the
errors for tensors customar cannot take."""
import pathlib

import numpy as np
import pytest

import customar

DATA = pathlib.Path(__file__).resolve().parents[2] / "tests" / "unit" / "data"


def test_exception_hierarchy():
    for exc in (customar.InvalidArgument, customar.ConfigError, customar.CudaError, customar.NcclError,
                customar.PeerTimeoutError, customar.StateError, customar.SystemCallError):
        assert issubclass(exc, customar.Error)
    assert issubclass(customar.Error, Exception)


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


def test_cpu_tensor_is_rejected():
    with pytest.raises(customar.InvalidArgument, match="not a CUDA tensor"):
        customar.check_tensor(np.ones(16, dtype=np.float32))


def test_non_contiguous_tensor_is_rejected():
    a = np.ones((8, 8), dtype=np.float16)[:, ::2]
    with pytest.raises(customar.InvalidArgument, match="not contiguous"):
        customar.check_tensor(a)


def test_torch_cpu_tensor_is_rejected():
    torch = pytest.importorskip("torch")
    with pytest.raises(customar.InvalidArgument, match="not a CUDA tensor"):
        customar.check_tensor(torch.ones(16, dtype=torch.bfloat16))
    with pytest.raises(customar.InvalidArgument, match="not contiguous"):
        customar.check_tensor(torch.ones(8, 8).t())


class OneRank:
    rank = 0
    size = 1

    def all_gather(self, data):
        return [data]


def test_world_size_one_group_needs_no_gpu():
    assert customar.dispatch_custom_allreduce(OneRank(), 0) == ("none", "world size 1: nothing to reduce")
    assert customar.can_use_custom_all_reduce_v2(OneRank(), 0) is False


def test_bad_group_is_rejected():
    with pytest.raises(customar.InvalidArgument, match="group"):
        customar.Communicator(object(), 0)

    class Broken(OneRank):
        rank = 3

    with pytest.raises(customar.InvalidArgument, match="rank 3 of size 1"):
        customar.dispatch_custom_allreduce(Broken(), 0)


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
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")]))
    code = "import customar; print(customar._nccl_wheel_library())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == str(lib)
