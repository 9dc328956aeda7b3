"""Virtual ranks from Python: N ranks as N threads of this process on one GPU, for tests and for trying
tensor-parallel code at every world size (1..8) on a machine with one GPU.

    def rank_main(group):                         # group: customar.VirtualGroup, on the rank's own thread
        comm = customar.Communicator(group, group.device)
        x = torch.full((1024,), float(group.rank + 1), device="cuda")
        y = comm.all_reduce(x)                    # torch's current stream is the rank's stream here
        torch.cuda.current_stream().synchronize() # the rank's stream, never the whole device (see below)
        return y[0].item()

    customar.run_virtual(4, rank_main)            # [10.0, 10.0, 10.0, 10.0]

The ranks share the GPU: each runs in a green context of its own SMs where the driver offers them, else on every SM
with customar's kernel grids capped so that all ranks' kernels are resident at once (partition="auto"). The
Communicator decides as on a real machine of that size with NVLink between every pair, and what would go to NCCL goes
to an in-process reference all-reduce. For correctness, not speed.

Rules a rank function follows, because its peers are threads of the same process on the same GPU:

- Work goes on the rank's stream. run_virtual makes it torch's and CuPy's current stream for the function (where
  those are imported); other code takes group.stream (an int cudaStream_t). Synchronise that stream, not the device:
  torch.cuda.synchronize() also waits for the other ranks' kernels, which may be waiting for this rank.
- Collectives (communicator construction and close, all_reduce, group.all_gather and barrier) come in the same order
  on every rank, as on a real machine. Communicators still open when the function returns are closed then.
- A CUDA graph is captured with capture_error_mode="thread_local" (the other ranks' threads keep calling CUDA while
  this one captures), and every rank ends its capture before any rank replays (group.barrier()).
- The first use of a kernel may load it into the context, and a load can wait for every running kernel, including a
  peer's all-reduce that waits for this rank: run the code once (e.g. with a world-size-1 communicator, or before the
  first all-reduce) before a rank depends on its peers, then group.barrier().
- A rank's thread must not queue far ahead of its GPU: past about a thousand queued operations a launch blocks, and a
  peer that has not launched the call this rank's kernels wait for may then never get to it. A Communicator keeps its
  own calls at most 8 ahead of the GPU; a loop that queues hundreds of its own kernels between collective calls
  synchronises the rank's stream now and then.
"""
from __future__ import annotations

import contextlib
import operator
import sys
import threading
from typing import Any, Callable, Optional

from . import _ext
from ._ext import Error, InvalidArgument, StateError

PARTITIONS = ("auto", "green_contexts", "capped_grids")
MAX_RANKS = 8

# One world at a time: customar caps grids and splits SMs for the ranks of one world, and the kernels of two worlds
# on one GPU could wait for each other.
_WORLD = threading.Lock()


def run_virtual(n: int, fn: Callable[[Any], Any], device: Any = 0, partition: str = "auto") -> list:
    """Runs fn(group) on n threads of this process, one per rank of a virtual world on CUDA device `device`, and
    returns fn's return values in rank order once every rank has ended.

    group (customar.VirtualGroup): rank, size, device, stream (the rank's cudaStream_t as an int), partition (how the
        ranks share the SMs), all_gather(bytes) -> list[bytes] and barrier(); customar.Communicator(group,
        group.device) builds a communicator over it. Usable from the rank's thread while fn runs.
    n: 1..8. device: an int ordinal or torch.device('cuda', i). partition: 'auto' (green contexts where the driver
        offers them, else capped grids), 'green_contexts' (a CudaError if the driver cannot split the SMs so) or
        'capped_grids'.

    If some ranks raise, run_virtual raises the exception of the rank that raised first, once every rank has ended,
    with a note naming the rank (a rank whose peer failed usually fails too, with PeerTimeoutError naming that peer).
    A rank waiting in an exchange (communicator set-up and close, all_gather, barrier) for a peer whose function has
    ended gives up at once; other waits end after CUSTOMAR_INIT_TIMEOUT_MS (exchanges) or CUSTOMAR_TIMEOUT_MS
    (kernels). A rank function that never returns keeps run_virtual waiting. Raises InvalidArgument for bad
    arguments, StateError when another virtual world is running in this process, CudaError when the device cannot be
    used."""
    _check_rank_count(n)
    if not callable(fn):
        raise InvalidArgument(f"fn must be callable (it is called with each rank's group), got {type(fn).__name__}")
    from . import _device_index  # the package's own device rule

    index = _device_index(device)
    if not isinstance(partition, str) or partition not in PARTITIONS:
        raise InvalidArgument(f"partition must be one of {', '.join(PARTITIONS)}, got {partition!r}")
    _init_frameworks(index)
    return _run_world(n, fn, lambda body: _ext._launch_virtual(n, body, index, partition))


def _check_rank_count(n: Any) -> None:
    if isinstance(n, bool) or not hasattr(type(n), "__index__"):
        raise InvalidArgument(f"n must be an int rank count in 1..{MAX_RANKS}, got {type(n).__name__} {n!r}")
    if not 1 <= operator.index(n) <= MAX_RANKS:
        raise InvalidArgument(f"n must be a rank count in 1..{MAX_RANKS}, got {operator.index(n)}")


def _init_frameworks(device: int) -> None:
    """Initialises torch's CUDA state on this thread before the ranks start, so that no rank thread does it while its
    peers run kernels."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and device < torch.cuda.device_count():
        torch.cuda.init()


def _run_world(n: int, fn: Callable[[Any], Any], launch: Callable[[Callable[[Any], None]], None]) -> list:
    """The harness around a launcher: `launch(body)` calls body(group) on every rank's thread and returns when all
    have ended. Keeps each rank's result, and its exception in the order they were raised."""
    results: list = [None] * n
    ended = [False] * n
    failures: list[tuple[int, BaseException]] = []  # appended under the GIL, so in the order raised

    def body(group: Any) -> None:
        try:
            with _rank_streams(group):
                results[group.rank] = fn(group)
            ended[group.rank] = True
        except BaseException as exc:  # reported in the caller's thread, whatever it was
            failures.append((group.rank, exc))

    if not _WORLD.acquire(blocking=False):
        raise StateError("run_virtual: another virtual world is running in this process (one at a time; a rank "
                         "function must not start one)")
    try:
        launch(body)
    finally:
        _WORLD.release()
    if failures:
        rank, exc = failures[0]
        later = sorted(r for r, _ in failures[1:])
        _add_note(exc, f"customar.run_virtual: raised on rank {rank} of {n}" +
                  (f" (then ranks {later} failed too)" if later else ""))
        raise exc
    missing = [r for r in range(n) if not ended[r]]
    if missing:
        raise Error(f"run_virtual: ranks {missing} ended without running the function to its end (the failure was "
                    "printed to stderr)")
    return results


def _add_note(exc: BaseException, note: str) -> None:
    if hasattr(exc, "add_note"):  # Python 3.11+
        exc.add_note(note)
    else:
        exc.__notes__ = [*getattr(exc, "__notes__", []), note]


@contextlib.contextmanager
def _rank_streams(group: Any):
    """The rank's stream as torch's and CuPy's current stream (those already imported), for the rank function."""
    with contextlib.ExitStack() as stack:
        stream: Optional[int] = getattr(group, "stream", None)
        torch = sys.modules.get("torch")
        if stream and torch is not None and torch.cuda.is_available():
            stack.enter_context(torch.cuda.stream(torch.cuda.ExternalStream(stream, device=group.device)))
        cupy = sys.modules.get("cupy")
        if stream and cupy is not None:
            stack.enter_context(cupy.cuda.Device(group.device))
            stack.enter_context(cupy.cuda.ExternalStream(stream))
        yield
