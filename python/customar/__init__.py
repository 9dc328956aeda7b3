"""customar: all-reduce across the GPUs of one machine, faster than NCCL where it can be, NCCL where it cannot.

    import customar
    comm = customar.Communicator(group, device)      # collective; group: a torch.distributed group, or any object
                                                     # with rank, size and all_gather(bytes) -> list[bytes]
    out = comm.all_reduce(tensor)                    # PyTorch, CuPy or JAX (anything with __dlpack__)
    with torch.cuda.graph(g), comm.capture():       # CUDA graphs: nothing to register
        comm.all_reduce(x, out=x)
    comm.close()                                     # collective, like the constructor (or: with Communicator(...))

    customar.run_virtual(4, fn)                      # fn(group) on 4 threads sharing one GPU, as 4 ranks (virtual.py)
    y = comm.torch_all_reduce(x)                     # torch.library ops: torch.compile(fullgraph=True), CUDA graphs
    norm, residual = comm.all_reduce_add_rmsnorm(x, residual, gamma, eps)   # fused (ops.py)

Types: float16, bfloat16 and float32 are summed by customar's own kernels (accumulating in float32); float64, int8,
uint8, int32, uint32, int64, uint64, float8_e4m3fn and float8_e5m2 are summed by NCCL (integers wrap as NCCL's do;
fp8 needs NCCL 2.24 or newer). Anything else (bool, complex, int16, other fp8 formats) is an InvalidArgument.

Layouts: any dense tensor (contiguous, transposed, channels-last: every element exactly once, no gaps) is reduced as
it lies in memory; every rank must pass the same shape and strides.

Values: one algorithm changes two values, the one-shot push (comm.algo_for(x) == "oneshot_push"), which marks its
empty slots with a sentinel: an fp32 element whose bits are 0x80008000 (a negative denormal, -4.6e-41) is summed as
-0.0, and an fp16/bf16 -0.0 is summed as +0.0 (so a sum of only -0.0 gives +0.0, not -0.0). Every other value is
summed exactly as the other algorithms do; forcing another one with comm.set_algo() avoids the change.

Errors are customar.Error subclasses: InvalidArgument, ConfigError, CudaError, NcclError, PeerTimeoutError,
StateError, SystemCallError.
"""
from __future__ import annotations

import contextlib
import functools
import itertools
import operator
import os
import sys
import weakref
from typing import Any, Callable, Optional

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
    VirtualGroup,
)

__all__ = [
    "Communicator", "can_use_custom_all_reduce_v2", "dispatch_custom_allreduce", "decide_topology_file",
    "check_tensor", "run_virtual", "VirtualGroup", "HAS_ALL_REDUCE_ADD_RMSNORM", "Error", "InvalidArgument",
    "ConfigError", "CudaError", "NcclError", "SystemCallError", "PeerTimeoutError", "StateError",
]

# Whether this build of the extension has the fused all-reduce + residual add + RMSNorm.
HAS_ALL_REDUCE_ADD_RMSNORM = hasattr(_ext._Communicator, "all_reduce_add_rmsnorm")

_ALGOS = ("oneshot_push", "oneshot_pull", "twoshot", "nccl")


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
        return group  # rank, size and what all_gather returns are validated by the extension
    try:
        import torch.distributed as dist

        if group is None or isinstance(group, dist.ProcessGroup):
            return _TorchGroup(group)
    except ImportError:
        pass
    raise InvalidArgument(
        "group must be a torch.distributed ProcessGroup or an object with rank, size and all_gather(bytes)")


def _device_index(device: Any) -> int:
    """A CUDA ordinal from an int (or anything with __index__) or a torch.device('cuda', i)."""
    if _framework(device) == "torch" and type(device).__name__ == "device":
        if device.type != "cuda":
            raise InvalidArgument(f"device must be a CUDA device, got {device!r}")
        if device.index is None:
            import torch

            return torch.cuda.current_device()
        return int(device.index)
    if isinstance(device, bool) or not hasattr(type(device), "__index__"):
        raise InvalidArgument(f"device must be an int CUDA ordinal or a torch.device('cuda', i), got "
                              f"{type(device).__name__} {device!r}")
    index = operator.index(device)
    if not 0 <= index < 2**31:
        raise InvalidArgument(f"device must be a CUDA ordinal in [0, 2**31), got {index}")
    return index


def _group_size(group: Any) -> int:
    size = getattr(group, "size", 1)
    return size if isinstance(size, int) and not isinstance(size, bool) else 1


def _rank_device(group: Any, device: Any) -> int:
    """This rank's device: a CUDA ordinal, and for a virtual group the world's device."""
    index = _device_index(device)
    if isinstance(group, VirtualGroup) and index != group.device:
        raise InvalidArgument(f"device {index} is not the device of this virtual world ({group.device}); pass "
                              "group.device")
    return index


def _collective(group: Any, device: Any, call: Callable[[int], Any]) -> Any:
    """Runs `call(device index)`, a collective entry point of the extension. A device this rank cannot use must not
    leave the other ranks waiting in an exchange it never joins: in a group of several ranks it goes to the extension
    as -1, which every rank's set-up vote rejects together, and this rank then raises its own clearer error."""
    try:
        index, bad = _rank_device(group, device), None
    except InvalidArgument as err:
        if _group_size(group) <= 1:
            raise
        index, bad = -1, err
    try:
        result = call(index)
    except Error as err:
        if bad is not None:
            raise bad from err
        raise
    if bad is not None:  # the exchange needed no device (CUSTOMAR_TOPO_FILE): every rank has its answer, this one fails
        raise bad
    return result


def _framework(t: Any) -> str:
    mod = type(t).__module__
    for name in ("torch", "cupy", "jax", "jaxlib"):
        if mod == name or mod.startswith(name + "."):
            return "jax" if name == "jaxlib" else name
    return "other"


@functools.lru_cache(maxsize=None)
def _torch_fp8() -> dict:
    import torch

    return {getattr(torch, n): n for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n)}


@functools.lru_cache(maxsize=None)
def _torch_exports_fp8() -> bool:
    """Whether this torch exports fp8 tensors through DLPack (newer releases do, older ones raise)."""
    import torch

    try:
        torch.empty(1, dtype=torch.float8_e4m3fn).__dlpack__()
        return True
    except Exception:  # torch raises RuntimeError or BufferError, depending on the release
        return False


def _exportable(t: Any) -> tuple[Any, Optional[str]]:
    """What goes to the extension for `t`: the tensor itself, or, for a torch fp8 tensor that this torch cannot
    export through DLPack, its bytes (t.view(torch.uint8), same layout) and the fp8 type to read them as."""
    if _framework(t) == "torch" and t.dtype in _torch_fp8() and not _torch_exports_fp8():
        import torch

        return t.view(torch.uint8), _torch_fp8()[t.dtype]
    return t, None


def check_tensor(tensor: Any) -> tuple[int, str, int]:
    """Validates `tensor` as all_reduce would and returns (element count, customar dtype name, CUDA device); raises
    InvalidArgument saying what is wrong otherwise (dtype, shape, layout, device, in that order)."""
    return _ext.check_tensor(*_exportable(tensor))


def decide_topology_file(path: Any, disable: bool = False, disable_v2: bool = False) -> tuple[str, str]:
    """The decision for a topology file (no GPU needed): (backend, reason). `path`: str, bytes or os.PathLike."""
    try:
        path = os.fsdecode(os.fspath(path))
    except TypeError:
        raise InvalidArgument(f"path must be a str, bytes or os.PathLike, got {type(path).__name__}") from None
    return _ext.decide_topology_file(path, disable=disable, disable_v2=disable_v2)


def _current_stream(t: Any) -> int:
    fw = _framework(t)
    if fw == "torch" and t.is_cuda:
        import torch

        return torch.cuda.current_stream(t.device).cuda_stream
    if fw == "cupy":
        import cupy

        with t.device:
            return cupy.cuda.get_current_stream().ptr
    return 0  # the legacy default stream, which JAX and others synchronise with


def _stream_handle(stream: Any, device: Optional[int] = None) -> int:
    """A cudaStream_t value from an int handle, a torch.cuda.Stream (cuda_stream) or a cupy.cuda.Stream (ptr)."""
    handle = stream
    if not isinstance(stream, int):
        attr = next((a for a in ("cuda_stream", "ptr") if hasattr(stream, a)), None)
        if attr is None:
            raise InvalidArgument(f"stream must be an int handle, a torch.cuda.Stream or a cupy.cuda.Stream, got "
                                  f"{type(stream).__name__} {stream!r}")
        handle = getattr(stream, attr)
        own = getattr(getattr(stream, "device", None), "index", getattr(stream, "device_id", None))
        if device is not None and isinstance(own, int) and own != device:
            raise InvalidArgument(f"stream belongs to device {own} but the communicator is on device {device}")
    if isinstance(handle, bool) or not isinstance(handle, int) or not 0 <= handle < 2**64:
        raise InvalidArgument(f"stream handle must be an int in [0, 2**64), got {type(handle).__name__} {handle!r}")
    return handle


def _empty_like(t: Any) -> Any:
    """A new tensor of t's framework, dtype, shape and strides (the same layout in memory)."""
    fw = _framework(t)
    if fw == "torch":
        import torch

        return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device)
    if fw == "cupy":
        import cupy

        with t.device:
            base = cupy.empty(t.size, dtype=t.dtype)
        return cupy.ndarray(t.shape, t.dtype, base.data, t.strides)
    raise InvalidArgument(f"out= is required for tensors of type {type(t).__name__} (torch, CuPy and JAX get a new "
                          "output when out is None)")


def _dtype_name(dtype: Any) -> str:
    """A dtype's name: str as given, torch.float16 -> 'float16', NumPy/CuPy/JAX dtypes by numpy.dtype(d).name."""
    if isinstance(dtype, str):
        return dtype
    text = str(dtype)
    if text.startswith("torch."):
        return text[len("torch."):]
    try:
        import numpy

        return numpy.dtype(dtype).name
    except (ImportError, TypeError):
        raise InvalidArgument(f"dtype must be a name or a torch/NumPy/CuPy/JAX dtype, got {dtype!r}") from None


# Live communicators by handle, for the torch ops (ops.py), which take a communicator as an int. Weak: a communicator
# that nothing else holds is collected (and torn down) as before; close() removes it at once. Handles are never reused.
_LIVE: "weakref.WeakValueDictionary[int, Communicator]" = weakref.WeakValueDictionary()
_HANDLES = itertools.count(1)


def _live_communicator(handle: int) -> "Communicator":
    comm = _LIVE.get(handle)
    if comm is None:
        raise StateError(f"customar communicator handle {handle} names no open communicator (closed, collected, or "
                         "never made); pass Communicator.handle of an open one")
    return comm


def _load_torch_ops() -> Any:
    from . import ops  # registers torch.ops.customar.*

    return ops


class Communicator:
    """All-reduce (sum) across the ranks of `group`, this rank driving CUDA device `device` (an int ordinal or a
    torch.device('cuda', i)). `group` may be a torch.distributed ProcessGroup, an object with rank, size and
    all_gather(bytes) -> list[bytes], or the customar.VirtualGroup that run_virtual gives a rank (then `device` is
    group.device).

    Collective: every rank of the group constructs it, and every rank closes it (close(), the end of a with-block,
    or garbage collection, which runs the same collective teardown), at the same point of its program. Use it from
    one thread per rank (for a virtual group, the rank's own thread). Every method raises StateError once it is
    closed. Built once torch is imported, it also registers customar's torch ops (customar.ops)."""

    def __init__(self, group: Any, device: Any):
        g = _as_group(group)
        self._impl = _collective(g, device, lambda index: _ext._Communicator(g, index))
        self._handle = next(_HANDLES)
        _LIVE[self._handle] = self
        self._ops = None
        if "torch" in sys.modules:
            try:
                self._ops = _load_torch_ops()
            except Exception:  # an unusable torch: the torch methods raise the reason when called
                self._ops = None

    def __enter__(self) -> "Communicator":
        self._impl.ensure_open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._impl.closed:
            return "customar.Communicator(closed)"
        i = self._impl
        return f"customar.Communicator(rank {i.rank} of {i.size}, device {i.device}, backend {i.backend!r})"

    def close(self) -> None:
        """Releases the buffers, the NCCL communicator and the group. Collective, like the constructor: every rank
        calls it (it waits for every rank before unmapping peers' buffers). Closing twice does nothing. Call it only
        when no CUDA graph that captured this communicator will be replayed again, and not while another thread is
        inside a call on it."""
        self._impl.close()
        _LIVE.pop(self._handle, None)

    @property
    def handle(self) -> int:
        """The int that names this communicator to customar's torch ops (torch.ops.customar.*, see customar.ops),
        valid until close(). Unique in the process, never reused."""
        return self._handle

    @property
    def closed(self) -> bool:
        return self._impl.closed

    @property
    def backend(self) -> str:
        """'v2', 'v1', 'nccl' or 'none' (world size 1)."""
        return self._impl.backend

    @property
    def reason(self) -> str:
        """Why the backend was chosen."""
        return self._impl.reason

    @property
    def rank(self) -> int:
        return self._impl.rank

    @property
    def size(self) -> int:
        return self._impl.size

    @property
    def device(self) -> int:
        return self._impl.device

    @property
    def capacity(self) -> int:
        """The largest message in bytes that the custom backend's buffers hold (0 for NCCL and world size 1);
        larger messages go to NCCL."""
        return self._impl.capacity

    def algo_for(self, tensor_or_count: Any, dtype: Any = None) -> str:
        """The algorithm all_reduce runs for this tensor, or for `count` elements of `dtype` (a name such as
        'bfloat16' or 'bf16', or a torch/NumPy/JAX dtype): 'oneshot_push', 'oneshot_pull', 'twoshot' or 'nccl'
        (also for world size 1, where the call is a copy)."""
        if dtype is None:
            count, name, _ = check_tensor(tensor_or_count)
        else:
            count, name = tensor_or_count, _dtype_name(dtype)
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise InvalidArgument(f"count must be an int >= 0, got {count!r}")
        return self._impl.algo_for(count, name)

    def set_algo(self, algo: Optional[str]) -> None:
        """Forces 'oneshot_push', 'oneshot_pull', 'twoshot' or 'nccl' for later calls (None: back to the config's
        choice), where the backend can run it for a call (e.g. V1 has no push: it runs the pull; messages larger than
        capacity go to NCCL). Every rank must make the same call at the same point of its program."""
        if algo is not None and not isinstance(algo, str):
            raise InvalidArgument(f"algo must be one of {', '.join(_ALGOS)} or None, got {algo!r}")
        self._impl.set_algo(algo)

    def all_reduce(self, tensor: Any, out: Any = None, stream: Any = None) -> Any:
        """Sums `tensor` over all ranks into `out` and returns `out`.

        tensor: a CUDA tensor (torch, CuPy, JAX, or anything with __dlpack__) on this communicator's device, of
            float16, bfloat16, float32 (customar's kernels), float64, int8, uint8, int32, uint32, int64, uint64,
            float8_e4m3fn or float8_e5m2 (NCCL), and dense: contiguous or any permutation of dimensions (a transposed
            view, channels-last) is reduced as it lies in memory. Every rank passes the same shape, strides and dtype.
        out: None for a new tensor of the same framework, dtype, shape and strides; `tensor` itself for in place; or
            a tensor of the same dtype, shape and strides that does not overlap it. JAX arrays are immutable: for
            them leave out=None (the result is a new jax.Array; this needs CuPy, and the call synchronises).
        stream: an int cudaStream_t, a torch.cuda.Stream or a cupy.cuda.Stream; default: the framework's current
            stream (the legacy default stream for JAX).

        Values: the one-shot push (algo_for(tensor) == 'oneshot_push', V2 only) marks its empty slots with a
        sentinel, which changes two values: an fp32 element whose bits are 0x80008000 (-4.6e-41, a negative denormal)
        is summed as -0.0, and an fp16/bf16 -0.0 is summed as +0.0, so a sum of only -0.0 gives +0.0 rather than
        -0.0. Every other value is summed exactly as the other algorithms do; forcing another algorithm with
        set_algo() avoids the change where it matters.

        May be captured in a CUDA graph as it is. Raises InvalidArgument for a tensor it cannot take (what is wrong
        and what is allowed), PeerTimeoutError / StateError after a peer timed out, StateError after close()."""
        device = self._impl.device  # StateError once closed, before anything is allocated
        if _framework(tensor) == "jax":
            return self._all_reduce_jax(tensor, out, stream, device)
        if out is None:
            out = _empty_like(tensor)
        handle = _stream_handle(stream, device) if stream is not None else _current_stream(tensor)
        src, src_as = _exportable(tensor)
        dst, dst_as = _exportable(out)
        self._impl.all_reduce(src, dst, handle, src_as, dst_as)
        return out

    def _all_reduce_jax(self, tensor: Any, out: Any, stream: Any, device: int) -> Any:
        # JAX hands its arrays out through DLPack once they are ready, and has no stream to order a foreign write
        # after; so the result goes into memory CuPy allocates, the stream is synchronised, and only then is the
        # memory handed to JAX (zero-copy, kept alive by JAX).
        import cupy

        if out is not None and _framework(out) == "jax":
            raise InvalidArgument("out must not be a JAX array (JAX arrays are immutable): leave out=None to get a "
                                  "new one, or pass a CuPy array")
        count, name, _ = check_tensor(tensor)
        handle = _stream_handle(stream, device) if stream is not None else 0
        if out is not None:
            self._impl.all_reduce(tensor, out, handle)
            return out
        import jax.dlpack

        with cupy.cuda.Device(device):
            view = _ext._typed_view(cupy.empty(tensor.nbytes, dtype=cupy.uint8), name, list(tensor.shape))
            self._impl.all_reduce(tensor, view, handle)
            (cupy.cuda.Stream.null if handle == 0 else cupy.cuda.ExternalStream(handle)).synchronize()
        return jax.dlpack.from_dlpack(view)

    def check(self) -> None:
        """Raises PeerTimeoutError if an earlier call timed out waiting for a peer."""
        self._impl.check()

    def _torch_ops(self) -> Any:
        if self._ops is None:
            self._ops = _load_torch_ops()
        return self._ops

    def torch_all_reduce(self, tensor: Any, out: Any = None) -> Any:
        """all_reduce for torch tensors through customar's torch.library ops, so that torch.compile(fullgraph=True)
        traces it without a graph break and CUDA graphs capture it: out=None gives a new tensor of the input's
        layout (torch.ops.customar.all_reduce), out=tensor sums in place (all_reduce_inplace), another tensor of
        the same dtype, shape and strides receives the sum (all_reduce_out). Runs on torch's current stream; takes
        the tensors all_reduce() takes; returns the result."""
        return self._torch_ops().all_reduce(tensor, self._handle, out)

    def all_reduce_add_rmsnorm(self, input: Any, residual: Any, gamma: Any, eps: float, fp8_scale: Any = None, *,
                               norm_out: Any = None, in_place: bool = False) -> tuple[Any, Any]:
        """The fused all-reduce + residual add + RMSNorm, for torch tensors, through customar's torch ops (traced by
        torch.compile, captured by CUDA graphs):

            residual_out = residual + input summed over ranks
            norm_out = residual_out / sqrt(mean(residual_out**2 over the row) + eps) * gamma

        input, residual: [tokens, hidden] float16 or bfloat16 CUDA tensors of one dtype, row-major; gamma: [hidden].
        input is consumed: its contents are unspecified afterwards (the ops declare it mutated). fp8_scale:
        None, or a 1-element float32 CUDA tensor: norm_out is then float8_e4m3fn, quantised with that per-tensor
        scale (read on the device, so that a graph replays with the scale's current value). Returns (norm_out,
        residual_out): new tensors (torch.ops.customar.all_reduce_add_rmsnorm), or with in_place=True, residual
        itself updated and norm_out written into the tensor given (a new one if None;
        all_reduce_add_rmsnorm_inplace). Runs on torch's current stream. Raises NotImplementedError when this build
        has no fused call (customar.HAS_ALL_REDUCE_ADD_RMSNORM is False)."""
        return self._torch_ops().all_reduce_add_rmsnorm(input, residual, gamma, eps, self._handle, fp8_scale,
                                                        norm_out, in_place)

    def _all_reduce_add_rmsnorm(self, input: Any, residual_in: Any, residual_out: Any, gamma: Any, norm_out: Any,
                                eps: float, fp8_scale: Any) -> None:
        """The binding's fused call, on the input's current stream (the ops' real implementation)."""
        if not HAS_ALL_REDUCE_ADD_RMSNORM:
            raise NotImplementedError("all_reduce_add_rmsnorm: this build of customar has no fused all-reduce + "
                                      "RMSNorm (customar.HAS_ALL_REDUCE_ADD_RMSNORM is False)")
        self._impl.ensure_open()
        dst, dst_as = _exportable(norm_out)
        extra = {"norm_out_as": dst_as} if dst_as is not None else {}  # fp8 that this torch cannot export
        self._impl.all_reduce_add_rmsnorm(input, residual_in, residual_out, gamma, dst, float(eps), fp8_scale,
                                          _current_stream(input), **extra)

    def empty(self, shape: Any, dtype: Any = "bfloat16") -> Any:
        """A new C-contiguous tensor of `shape` and `dtype` in symmetric memory: a torch tensor when torch can be
        imported, else the DLPack object of empty_dlpack(). all_reduce() reads symmetric inputs in place on every peer
        (no staging copy; docs/symmetric-buffers.md) when every rank passes the same tensor (or the same view of it).
        Collective: every rank calls it with the same shape and dtype, in the same order as its other empty() and
        free() calls. The memory belongs to the communicator: it lives until free(tensor) or close(), whatever
        happens to the tensor object, and must not be used after either."""
        obj = self.empty_dlpack(shape, dtype)
        try:
            import torch
        except ImportError:
            return obj
        return torch.from_dlpack(obj)

    def empty_dlpack(self, shape: Any, dtype: Any = "bfloat16") -> Any:
        """empty() as a framework-neutral object with __dlpack__ and __dlpack_device__, for cupy.from_dlpack(),
        jax.dlpack.from_dlpack() or torch.from_dlpack(). `dtype`: a name ('bfloat16', 'bf16') or a torch/NumPy/CuPy
        dtype. Collective, like empty()."""
        shape = (shape,) if isinstance(shape, int) and not isinstance(shape, bool) else shape
        try:
            dims = [operator.index(d) for d in shape]
        except TypeError:
            raise InvalidArgument(f"shape must be an int or a sequence of ints, got {shape!r}") from None
        return self._impl.empty(dims, _dtype_name(dtype))

    def free(self, tensor: Any) -> None:
        """Frees the symmetric memory of a tensor from empty() (the tensor itself, not a view that starts elsewhere).
        Collective: every rank frees the same tensor at the same point. Raises InvalidArgument, on every rank, for a
        tensor that does not start a symmetric allocation or when the ranks free different ones."""
        self._impl.free_symmetric(_exportable(tensor)[0])

    @property
    def symmetric_bytes(self) -> int:
        """Device memory in bytes this rank holds for symmetric memory (empty()), allocation granularity included."""
        return self._impl.symmetric_bytes

    @contextlib.contextmanager
    def capture(self):
        """Scope for CUDA-graph capture. customar's kernels stage their input themselves, so nothing is registered
        before or after capture; the scope exists so that code written for registering all-reduces ports unchanged."""
        self._impl.ensure_open()
        yield self


def dispatch_custom_allreduce(group: Any, device: Any) -> tuple[str, str]:
    """The dispatch of SGLang's custom all-reduce V2, under its name (collective): (backend, reason), the same on every
    rank."""
    g = _as_group(group)
    return _collective(g, device, lambda index: _ext.dispatch_custom_allreduce(g, index))


def can_use_custom_all_reduce_v2(group: Any, device: Any) -> bool:
    """True when the V2 (run-time compiled) backend would serve this group (collective)."""
    g = _as_group(group)
    return _collective(g, device, lambda index: _ext.can_use_custom_all_reduce_v2(g, index))


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


from .virtual import run_virtual  # noqa: E402  (uses the definitions above)

# Before any communicator exists: customar loads this NCCL when none is loaded in the process yet (PyTorch's, when
# torch was imported, comes first) and CUSTOMAR_NCCL_LIBRARY is unset. Nothing is loaded here.
_ext._set_nccl_wheel_library(_nccl_wheel_library())
