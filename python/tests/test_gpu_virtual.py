"""Virtual ranks and the torch ops on one GPU (run by scripts/gpu-check.sh with the other Python tests).

Every world size 2..8 as threads of this process (customar.run_virtual): sums of every custom dtype and algorithm
against a float64 reference on random data with the output poisoned first, the same bits on every rank; the torch ops
under torch.compile(fullgraph=True) and under CUDA-graph capture and replay; the fused all-reduce + RMSNorm where the
extension has it. In this process, world size 1: the ops under inductor, with no graph break.

Each rank follows virtual.py's rules: work on the rank's stream (run_virtual makes it torch's current one), every
kernel used once before the rank depends on its peers, a barrier before each collective phase, graphs captured with
capture_error_mode="thread_local" and all captured before any is replayed."""
import threading

import pytest

torch = pytest.importorskip("torch")
import customar  # noqa: E402

NGPU = torch.cuda.device_count() if torch.cuda.is_available() else 0
pytestmark = pytest.mark.skipif(NGPU < 1, reason="needs a GPU")
WORLDS = range(2, 9)
CUSTOM_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
EPS = {torch.float16: 2**-10, torch.bfloat16: 2**-7, torch.float32: 2**-23}
needs_fused = pytest.mark.skipif(not customar.HAS_ALL_REDUCE_ADD_RMSNORM,
                                 reason="this build has no fused all-reduce + RMSNorm binding "
                                        "(_ext._Communicator.all_reduce_add_rmsnorm) yet")


class OneRank:
    rank, size = 0, 1

    def all_gather(self, data):
        return [data]


# ---- the harness: random inputs of every rank, a float64 reference, checks -----------------------------------------

class Case:
    """Every rank's input for one call (CPU, random in [-1, 1), as the rank holds it in `dtype`) and their float64
    sum: made once on the main thread, read by every rank."""

    def __init__(self, world, shape, seed, dtype):
        gen = torch.Generator().manual_seed(seed)
        self.dtype = dtype
        self.held = [(torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype).double()
                     for _ in range(world)]
        self.ref = sum(self.held)
        self.mag = sum(t.abs() for t in self.held)

    def input(self, rank, device):
        return self.held[rank].to(self.dtype).to(device)

    def wrong(self, got):
        """Elements of `got` off the sum by more than the dtype's rounding of the accumulation (NaN counts). Checked
        on the CPU: a rank launches no new kernel after its collectives."""
        err = (got.cpu().double() - self.ref).abs()
        return int((~(err <= EPS[self.dtype] * len(self.held) * self.mag + 1e-30)).sum())


def _poisoned_like(t):
    return torch.full_like(t, float("nan"))


def _sync():
    torch.cuda.current_stream().synchronize()  # the rank's stream: never the device, which holds the peers' kernels


def _rank_device(group):
    return torch.device("cuda", group.device)


def _run(world, fn, **kwargs):
    return customar.run_virtual(world, fn, **kwargs)


# ---- run_virtual and its group ------------------------------------------------------------------------------------

def test_group_describes_the_rank_and_its_stream():
    def fn(group):
        assert torch.cuda.current_stream().cuda_stream == group.stream  # run_virtual made it torch's
        return group.rank, group.size, group.device, group.partition, group.stream

    got = _run(3, fn)
    assert [g[:3] for g in got] == [(r, 3, 0) for r in range(3)]
    assert len({g[4] for g in got}) == 3, "ranks share a stream"
    assert all(g[3] == got[0][3] and g[3] for g in got)


@pytest.mark.parametrize("partition", ["auto", "capped_grids"])
def test_partition_is_named(partition):
    got = _run(2, lambda g: g.partition, partition=partition)
    assert got[0] and got[0] == got[1]
    if partition == "capped_grids":
        assert got[0].startswith("capped grids"), got[0]


def test_group_all_gather_exchanges_bytes_of_any_length():
    got = _run(4, lambda g: g.all_gather(bytes([g.rank]) * g.rank))
    assert got == [[b"", b"\x01", b"\x02\x02", b"\x03\x03\x03"]] * 4


def test_group_all_gather_refuses_text():
    def fn(group):
        with pytest.raises(customar.InvalidArgument, match="takes bytes"):
            group.all_gather("text")
        return True

    assert _run(2, fn) == [True, True]


def test_group_and_communicator_are_closed_after_the_function():
    def fn(group):
        comm = customar.Communicator(group, group.device)
        return group, comm

    (g0, c0), (_, c1) = _run(2, fn)
    assert c0.closed and c1.closed
    with pytest.raises(customar.StateError, match="rank function has returned"):
        g0.all_gather(b"")
    with pytest.raises(customar.StateError, match="closed"):
        c0.all_reduce(torch.zeros(4, device="cuda"))


def test_communicator_device_must_be_the_worlds():
    def fn(group):
        with pytest.raises(customar.InvalidArgument, match="not the device of this virtual world"):
            customar.Communicator(group, group.device + 1)
        return True

    assert _run(2, fn) == [True, True]


def test_first_failure_is_raised_with_its_rank():
    def fn(group):
        if group.rank == 1:
            raise ValueError("rank one broke")
        customar.Communicator(group, group.device)  # waits for rank 1, which has ended: fails at once

    with pytest.raises(ValueError, match="rank one broke") as err:
        _run(3, fn)
    assert any("raised on rank 1 of 3" in n for n in getattr(err.value, "__notes__", []))


def test_communicator_is_used_from_its_rank_thread_only():
    import threading

    def fn(group):
        comm = customar.Communicator(group, group.device)
        x, seen = torch.zeros(4, device=_rank_device(group)), []
        t = threading.Thread(target=lambda: seen.append(_raises(lambda: comm.all_reduce(x))))
        t.start()
        t.join()
        return seen[0]

    assert _run(2, fn) == ["InvalidArgument"] * 2


def _raises(call):
    try:
        call()
    except Exception as exc:  # the type's name is the answer
        return type(exc).__name__
    return None


# ---- sums at every world size -------------------------------------------------------------------------------------

# Element counts that reach the custom algorithms the config picks at each size, and (1031: not a multiple of 16
# bytes) the reference all-reduce that stands in for NCCL.
COUNTS = (1024, 1031, 65536, 1 << 20)


def _sum_rank(group, cases):
    device = _rank_device(group)
    comm = customar.Communicator(group, group.device)
    calls = []
    for case in cases:
        x = case.input(group.rank, device)
        calls.append((case, x, _poisoned_like(x), x.clone()))
    _sync()
    wrong, algos, outs = [], set(), []
    for case, x, out, inplace in calls:
        algos.add(comm.algo_for(x))
        group.barrier()
        assert comm.all_reduce(x, out=out) is out
        comm.all_reduce(inplace, out=inplace)
        _sync()
        out, inplace = out.cpu(), inplace.cpu()
        bad = case.wrong(out)
        if bad or not torch.equal(out, inplace):
            wrong.append((str(case.dtype), x.numel(), bad))
        outs.append(out)
    return comm.backend, wrong, algos, outs


@pytest.mark.parametrize("world", WORLDS)
def test_every_rank_gets_the_sum(world):
    cases = [Case(world, (n,), world * 1000 + n, dtype) for dtype in CUSTOM_DTYPES for n in COUNTS]
    got = _run(world, lambda g: _sum_rank(g, cases))
    for rank, (backend, wrong, algos, _) in enumerate(got):
        assert backend in ("v2", "v1"), (rank, backend)
        assert not wrong, (rank, wrong)
        assert "nccl" in algos and len(algos) >= 2, algos
    for rank, (_, _, _, outs) in enumerate(got):  # every rank ends with the same bits
        assert all(torch.equal(a.view(torch.uint8), b.view(torch.uint8)) for a, b in zip(outs, got[0][3])), rank


# ---- the torch ops on virtual ranks: torch.compile and CUDA graphs ---------------------------------------------------

def _allow_a_compile_per_communicator():
    torch._dynamo.reset()
    for name in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 64)


# Dynamo and AOT trace one function at a time per process: a trace sets a process-wide flag that makes a compiled
# function entered on another thread meanwhile raise ("FX to symbolically trace a dynamo-optimized function").
_TRACING = threading.Lock()


def _compile_alone(comm, one, fn, *args):
    """Compiles `fn` for `comm` (its handle is a constant of the graph) while no other rank traces, without waiting
    for the peers: during this one run the handle names `one`, a world-of-one communicator. The real call then finds
    the compiled code and traces nothing."""
    with _TRACING:
        customar._LIVE[comm.handle] = one
        try:
            fn(*args)
            _sync()
        finally:
            customar._LIVE[comm.handle] = comm


def _ops_step(x, w, out, comm):
    """Every op once: a functional sum of 2x (times 2 after: scaling by 2 is exact), w in place, x into `out`."""
    y = comm.torch_all_reduce(x * 2)
    comm.torch_all_reduce(w, out=w)
    comm.torch_all_reduce(x, out=out)
    return y * 2


def _ops_cases(world, seed, dtype, x_shape, w_shape):
    return Case(world, x_shape, seed, dtype), Case(world, w_shape, seed + 1, dtype)


def _check_ops_step(cx, cw, y, w, out):
    return cx.wrong(y.cpu().double() / 4), cw.wrong(w), cx.wrong(out)


def _compiled_rank(group, backend, cx, cw):
    device = _rank_device(group)
    step = torch.compile(_ops_step, fullgraph=True, backend=backend)
    x, w = cx.input(group.rank, device), cw.input(group.rank, device)
    # Compiled with no peer involved and no other rank tracing: for a world-of-one communicator (every kernel loaded
    # before the peers depend on it), then for the real communicator's handle, so the collective call traces nothing.
    comm = customar.Communicator(group, group.device)
    with customar.Communicator(OneRank(), group.device) as one:
        with _TRACING:
            step(x.clone(), w.clone(), torch.empty_like(x), one)
            _sync()
        _compile_alone(comm, one, step, x.clone(), w.clone(), torch.empty_like(x), comm)
    out = _poisoned_like(x)
    group.barrier()
    y = step(x, w, out, comm)
    _sync()
    return _check_ops_step(cx, cw, y, w, out)


@pytest.mark.parametrize("world", WORLDS)
def test_ops_under_torch_compile_fullgraph(world):
    # aot_eager: dynamo's trace (fullgraph raises at a graph break) and AOT's functionalisation of the in-place ops,
    # without inductor's Triton kernels, which load into whichever context was current when first run.
    _allow_a_compile_per_communicator()
    cx, cw = _ops_cases(world, 7, torch.bfloat16, (64, 128), (4096,))
    got = _run(world, lambda g: _compiled_rank(g, "aot_eager", cx, cw))
    assert got == [(0, 0, 0)] * world


def _graph_rank(group, replays):
    device = _rank_device(group)
    comm = customar.Communicator(group, group.device)
    x = torch.zeros(48, 96, dtype=torch.float16, device=device)
    w = torch.zeros(1 << 16, dtype=torch.float16, device=device)
    out = torch.empty_like(x)
    group.barrier()
    _ops_step(x, w, out, comm)  # eager: every kernel loaded, the ops' first calls made
    _sync()
    graph = torch.cuda.CUDAGraph()
    # On the rank's own stream (torch.cuda.graph's default capture stream is one for the whole process), and
    # thread-local: the other ranks' threads keep calling CUDA meanwhile.
    with torch.cuda.graph(graph, stream=torch.cuda.current_stream(), capture_error_mode="thread_local"):
        y = _ops_step(x, w, out, comm)
    group.barrier()  # every rank has captured before any replays
    wrong = []
    for cx, cw in replays:
        x.copy_(cx.held[group.rank].to(x.dtype))
        w.copy_(cw.held[group.rank].to(w.dtype))
        y.fill_(float("nan"))
        out.fill_(float("nan"))
        group.barrier()
        graph.replay()
        _sync()
        wrong.append(_check_ops_step(cx, cw, y, w, out))
    del graph
    return wrong


@pytest.mark.parametrize("world", WORLDS)
def test_ops_in_a_cuda_graph_replay_fresh_data(world):
    replays = [_ops_cases(world, 100 + 2 * i, torch.float16, (48, 96), (1 << 16,)) for i in range(3)]
    got = _run(world, lambda g: _graph_rank(g, replays))
    assert got == [[(0, 0, 0)] * 3] * world


# ---- world size 1 in this thread: inductor ---------------------------------------------------------------------------

@pytest.fixture
def one_comm():
    c = customar.Communicator(OneRank(), 0)
    yield c
    c.close()


def test_ops_have_no_graph_break(one_comm):
    torch._dynamo.reset()
    x = torch.randn(64, 128, device="cuda")
    explanation = torch._dynamo.explain(_ops_step)(x, x.clone(), torch.empty_like(x), one_comm)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_ops_under_inductor(one_comm, mode):
    torch._dynamo.reset()
    step = torch.compile(_ops_step, fullgraph=True, mode=mode)
    for i in range(3):  # reduce-overhead records a CUDA graph on a later call and replays it
        x = torch.randn(64, 128, device="cuda")
        w = torch.randn(4096, device="cuda")
        w0, out = w.clone(), torch.full_like(x, float("nan"))
        y = step(x, w, out, one_comm)
        torch.cuda.synchronize()
        assert torch.equal(y, x * 4) and torch.equal(w, w0) and torch.equal(out, x), i


def test_torch_all_reduce_after_close_is_a_state_error():
    c = customar.Communicator(OneRank(), 0)
    handle = c.handle
    c.close()
    with pytest.raises(customar.StateError, match=f"handle {handle} names no open communicator"):
        torch.ops.customar.all_reduce(torch.zeros(4, device="cuda"), handle)


def test_handles_are_never_reused():
    a = customar.Communicator(OneRank(), 0)
    a.close()
    b = customar.Communicator(OneRank(), 0)
    assert b.handle != a.handle
    b.close()


# ---- the fused all-reduce + residual add + RMSNorm ------------------------------------------------------------------

def _rmsnorm(r, gamma, eps):
    return r * torch.rsqrt((r * r).mean(dim=-1, keepdim=True) + eps) * gamma


FP8_SCALE, FP8_MAX = 1 / 16, 448.0


class FusedCase:
    def __init__(self, world, tokens=7, hidden=1024):
        self.x = Case(world, (tokens, hidden), 11, torch.bfloat16)
        self.residual = Case(1, (tokens, hidden), 12, torch.bfloat16).held[0]
        self.gamma = Case(1, (hidden,), 13, torch.bfloat16).held[0] + 1  # in [0, 2)


def _fused_wrong(case, norm, res, fp8, eps):
    ref = case.residual + case.x.ref
    mag = case.residual.abs() + case.x.mag
    bad_res = int((~((res.cpu().double() - ref).abs() <= 2**-7 * mag + 1e-30)).sum())
    # The norm is judged against the RMSNorm of the residual_out it returned (what the next layer sees): within the
    # rounding of bf16 (2**-8 for the residual, 2**-8 for the output), or of e4m3 (2**-4) after dequantising.
    norm_ref = _rmsnorm(res.cpu().double(), case.gamma, eps)
    if fp8:
        got, norm_ref = norm.cpu().double() * FP8_SCALE, norm_ref.clamp(-FP8_MAX * FP8_SCALE, FP8_MAX * FP8_SCALE)
        tol = 0.07 * norm_ref.abs() + 2**-9
    else:
        got, tol = norm.cpu().double(), 2**-6 * norm_ref.abs() + 2**-12
    return bad_res, int((~((got - norm_ref).abs() <= tol)).sum())


def _fused_rank(group, case, fp8, in_place, compiled):
    device, eps = _rank_device(group), 1e-6
    x, residual = case.x.input(group.rank, device), case.residual.to(torch.bfloat16).to(device)
    gamma = case.gamma.to(torch.bfloat16).to(device)
    scale = torch.full((1,), FP8_SCALE, device=device) if fp8 else None

    def call(comm, x, residual):
        return comm.all_reduce_add_rmsnorm(x, residual, gamma, eps, scale, in_place=in_place)

    fn = torch.compile(call, fullgraph=True, backend="aot_eager") if compiled else call
    comm = customar.Communicator(group, group.device)
    with customar.Communicator(OneRank(), group.device) as one:  # every kernel loaded (and compiled) first
        with _TRACING:
            fn(one, x.clone(), residual.clone())
            _sync()
        if compiled:
            _compile_alone(comm, one, fn, comm, x.clone(), residual.clone())
    group.barrier()
    norm, res = fn(comm, x, residual)
    _sync()
    return (norm.dtype, *_fused_wrong(case, norm, res, fp8, eps), (res.data_ptr() == residual.data_ptr()) == in_place)


@needs_fused
@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "compiled"])
@pytest.mark.parametrize("in_place", [False, True], ids=["new", "in_place"])
@pytest.mark.parametrize("fp8", [False, True], ids=["bf16", "fp8"])
@pytest.mark.parametrize("world", [2, 4, 8])
def test_fused_all_reduce_add_rmsnorm(world, fp8, in_place, compiled):
    _allow_a_compile_per_communicator()
    case = FusedCase(world)
    got = _run(world, lambda g: _fused_rank(g, case, fp8, in_place, compiled))
    want = torch.float8_e4m3fn if fp8 else torch.bfloat16
    assert got == [(want, 0, 0, True)] * world


def test_fused_call_without_the_binding_says_so(one_comm):
    if customar.HAS_ALL_REDUCE_ADD_RMSNORM:
        pytest.skip("this build has the fused binding")
    x = torch.zeros(4, 64, dtype=torch.bfloat16, device="cuda")
    with pytest.raises(NotImplementedError, match="HAS_ALL_REDUCE_ADD_RMSNORM is False"):
        one_comm.all_reduce_add_rmsnorm(x, x.clone(), torch.ones(64, dtype=torch.bfloat16, device="cuda"), 1e-6)
