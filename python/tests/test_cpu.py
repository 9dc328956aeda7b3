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
