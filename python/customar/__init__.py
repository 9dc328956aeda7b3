"""customar: all-reduce across the GPUs of one machine, faster than NCCL where it can be, NCCL where it cannot.

    import customar
    comm = customar.Communicator(group, device)      # group: a torch.distributed group, or any object with
                                                     # rank, size and all_gather(bytes) -> list[bytes]
    out = comm.all_reduce(tensor)                    # PyTorch, CuPy or JAX (anything with __dlpack__)
    with torch.cuda.graph(g), comm.capture():       # CUDA graphs: nothing to register
        comm.all_reduce(x, out=x)
"""
from __future__ import annotations

import contextlib
from typing import Any

from . import _ext
from ._ext import (  # noqa: F401  (the exception hierarchy is part of the API)
    ConfigError,
    CudaError,
    Error,
    InvalidArgument,
    NcclError,
    PeerTimeoutError,
    StateError,
    SystemCallError,
    check_tensor,
    decide_topology_file,
)

__all__ = [
    "Communicator", "can_use_custom_all_reduce_v2", "dispatch_custom_allreduce", "decide_topology_file",
    "check_tensor", "Error", "InvalidArgument", "ConfigError", "CudaError", "NcclError", "SystemCallError",
    "PeerTimeoutError", "StateError",
]


class _TorchGroup:
    """A torch.distributed process group seen as customar's group (exchanges through all_gather_object, so a gloo
    group, or the CPU side of the default group, carries them)."""

    def __init__(self, pg: Any):
        import torch.distributed as dist

        self._dist = dist
        self._pg = pg
        self.rank = dist.get_rank(pg)
        self.size = dist.get_world_size(pg)

    def all_gather(self, data: bytes) -> list[bytes]:
        out: list[Any] = [None] * self.size
        self._dist.all_gather_object(out, bytes(data), group=self._pg)
        return out


def _as_group(group: Any) -> Any:
    if all(hasattr(group, a) for a in ("rank", "size", "all_gather")) and not callable(getattr(group, "rank")):
        return group
    try:
        import torch.distributed as dist

        if group is None or isinstance(group, dist.ProcessGroup):
            return _TorchGroup(group)
    except ImportError:
        pass
    raise InvalidArgument(
        "group must be a torch.distributed ProcessGroup or an object with rank, size and all_gather(bytes)")


def _framework(t: Any) -> str:
    mod = type(t).__module__
    for name in ("torch", "cupy", "jax", "jaxlib"):
        if mod == name or mod.startswith(name + "."):
            return "jax" if name == "jaxlib" else name
    return "other"


def _current_stream(t: Any) -> int:
    fw = _framework(t)
    if fw == "torch":
        import torch

        return torch.cuda.current_stream(t.device).cuda_stream
    if fw == "cupy":
        import cupy

        return cupy.cuda.get_current_stream().ptr
    return 0  # the legacy default stream, which JAX and others synchronise with


def _empty_like(t: Any) -> Any:
    fw = _framework(t)
    if fw == "torch":
        import torch

        return torch.empty_like(t, memory_format=torch.contiguous_format)
    if fw == "cupy":
        import cupy

        return cupy.empty_like(t)
    raise InvalidArgument(f"out= is required for tensors of type {type(t).__name__}")


def _stream_handle(stream: Any) -> int:
    if stream is None:
        return 0
    if isinstance(stream, int):
        return stream
    for attr in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy.cuda.Stream
        if hasattr(stream, attr):
            return int(getattr(stream, attr))
    raise InvalidArgument("stream must be an int handle, a torch.cuda.Stream or a cupy.cuda.Stream")


class Communicator:
    """All-reduce (sum) across the ranks of `group`, this rank driving CUDA device `device`. Collective."""

    def __init__(self, group: Any, device: int):
        if hasattr(device, "index"):  # torch.device
            device = device.index
        self._impl = _ext._Communicator(_as_group(group), int(device))

    @property
    def backend(self) -> str:
        """'v2', 'v1', 'nccl' or 'none'."""
        return self._impl.backend

    @property
    def reason(self) -> str:
        return self._impl.reason

    @property
    def rank(self) -> int:
        return self._impl.rank

    @property
    def size(self) -> int:
        return self._impl.size

    def all_reduce(self, tensor: Any, out: Any = None, stream: Any = None) -> Any:
        """Sums `tensor` over ranks into `out` (a new tensor of the same framework if None; `out=tensor` for in place)
        on `stream` (default: the framework's current stream). Returns `out`."""
        fw = _framework(tensor)
        if out is None:
            if fw == "jax":
                # JAX arrays are immutable: reduce into a CuPy buffer and hand it back to JAX without a copy.
                import cupy
                import jax.dlpack

                src = cupy.from_dlpack(tensor)
                res = cupy.empty_like(src)
                self._impl.all_reduce(src, res, cupy.cuda.get_current_stream().ptr)
                cupy.cuda.get_current_stream().synchronize()
                return jax.dlpack.from_dlpack(res)
            out = _empty_like(tensor)
        s = _stream_handle(stream) if stream is not None else _current_stream(tensor)
        self._impl.all_reduce(tensor, out, s)
        return out

    def check(self) -> None:
        """Raises PeerTimeoutError if an earlier call timed out waiting for a peer."""
        self._impl.check()

    @contextlib.contextmanager
    def capture(self):
        """Scope for CUDA-graph capture. customar's kernels stage their input themselves, so nothing is registered
        before or after capture; the scope exists so that code written for registering all-reduces ports unchanged."""
        yield self


def dispatch_custom_allreduce(group: Any, device: int) -> tuple[str, str]:
    """The reference system's dispatch (collective): (backend, reason), the same on every rank."""
    return _ext.dispatch_custom_allreduce(_as_group(group), int(device))


def can_use_custom_all_reduce_v2(group: Any, device: int) -> bool:
    """True when the V2 (run-time compiled) backend would serve this group (collective)."""
    return _ext.can_use_custom_all_reduce_v2(_as_group(group), int(device))


def _nccl_wheel_library() -> str:
    """libnccl.so.2 of the nvidia-nccl-cu13 wheel (the NCCL of PyTorch's CUDA 13 wheels; nvidia-nccl-cu12 installs the
    same path), or "" when not installed. `nvidia` is a namespace package (no __init__.py): every directory it spans
    is searched."""
    import importlib.util
    import os

    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return ""
    for base in (spec.submodule_search_locations or []) if spec is not None else []:
        path = os.path.join(base, "nccl", "lib", "libnccl.so.2")
        if os.path.isfile(path):
            return path
    return ""


# Before any communicator exists: customar loads this NCCL when none is loaded in the process yet (PyTorch's, when
# torch was imported, comes first) and CUSTOMAR_NCCL_LIBRARY is unset. Nothing is loaded here.
_ext._set_nccl_wheel_library(_nccl_wheel_library())
