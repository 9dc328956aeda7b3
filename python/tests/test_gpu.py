"""Python binding on real GPUs (run by scripts/gpu-check.sh).

World size 1, in this process, on one GPU (the communicator copies): every dtype through torch, CuPy and JAX, dense
layouts in and out, new outputs of the input's layout, and the communicator's API (algo_for, capacity, set_algo,
close, with). World sizes 2 and 4 through torch.multiprocessing.spawn: every dtype against an exact or float64
reference and beside torch.distributed.all_reduce, forced algorithms, transposed views, a CUDA graph, CuPy arrays,
and a collective close."""
import os
import socket

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX shares the GPU with torch and CuPy here

import numpy as np  # noqa: E402
import pytest  # noqa: E402

torch = pytest.importorskip("torch")
import customar  # noqa: E402

NGPU = torch.cuda.device_count() if torch.cuda.is_available() else 0
needs_gpu = pytest.mark.skipif(NGPU < 1, reason="needs a GPU")

TORCH_DTYPES = ["float16", "bfloat16", "float32", "float64", "int8", "uint8", "int32", "uint32", "int64", "uint64",
                "float8_e4m3fn", "float8_e5m2"]
CUPY_DTYPES = ["float16", "bfloat16", "float32", "float64", "int8", "uint8", "int32", "uint32", "int64", "uint64"]
JAX_DTYPES = TORCH_DTYPES


class OneRank:
    rank = 0
    size = 1

    def all_gather(self, data):
        return [data]


@pytest.fixture
def comm():
    c = customar.Communicator(OneRank(), 0)
    yield c
    c.close()


# ---- world size 1: torch ------------------------------------------------------------------------------------------

def _torch_random(dtype_name, base_shape, seed=0):
    """Random bits of any dtype (NaNs included: a copy must keep every bit), contiguous in `base_shape`."""
    dtype = getattr(torch, dtype_name)
    size = dtype.itemsize * int(np.prod(base_shape))
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (size,), dtype=torch.uint8, generator=gen).cuda().view(dtype).view(base_shape)


def _torch_bits(t):
    return t.detach().cpu().contiguous().view(torch.uint8)  # the values in logical order, as bytes


TORCH_LAYOUTS = {
    "contiguous": ((6, 40), lambda t: t),
    "transposed": ((40, 6), lambda t: t.t()),
    "channels_last": ((2, 4, 5, 3), lambda t: t.permute(0, 3, 1, 2)),
    "permuted_3d": ((3, 4, 5), lambda t: t.permute(2, 0, 1)),
}


@needs_gpu
@pytest.mark.parametrize("layout", TORCH_LAYOUTS)
@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_torch_new_output_has_the_input_layout_and_values(comm, dtype, layout):
    base_shape, view = TORCH_LAYOUTS[layout]
    x = view(_torch_random(dtype, base_shape))
    out = comm.all_reduce(x)
    torch.cuda.synchronize()
    assert isinstance(out, torch.Tensor) and out.dtype == x.dtype and out.device == x.device
    assert out.shape == x.shape and out.stride() == x.stride()
    assert out.data_ptr() != x.data_ptr()
    assert torch.equal(_torch_bits(out), _torch_bits(x))


@needs_gpu
@pytest.mark.parametrize("layout", TORCH_LAYOUTS)
@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_torch_given_output_of_the_same_layout_is_filled(comm, dtype, layout):
    base_shape, view = TORCH_LAYOUTS[layout]
    x = view(_torch_random(dtype, base_shape, seed=1))
    out = view(_torch_random(dtype, base_shape, seed=2))  # poisoned: other bits in the same layout
    assert comm.all_reduce(x, out=out) is out
    torch.cuda.synchronize()
    assert torch.equal(_torch_bits(out), _torch_bits(x))


@needs_gpu
@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_torch_in_place_keeps_the_values(comm, dtype):
    x = _torch_random(dtype, (40, 6), seed=3).t()
    before = _torch_bits(x)
    assert comm.all_reduce(x, out=x) is x
    torch.cuda.synchronize()
    assert torch.equal(_torch_bits(x), before)


@needs_gpu
@pytest.mark.parametrize("exports", [True, False], ids=["dlpack", "uint8_view"])
@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2"])
def test_torch_fp8_through_dlpack_or_its_bytes(comm, monkeypatch, dtype, exports):
    if exports and not customar._torch_exports_fp8():
        pytest.skip("this torch does not export fp8 through DLPack")
    monkeypatch.setattr(customar, "_torch_exports_fp8", lambda: exports)
    x = _torch_random(dtype, (40, 6), seed=4).t()
    out = comm.all_reduce(x)
    torch.cuda.synchronize()
    assert out.dtype == x.dtype and out.stride() == x.stride()
    assert torch.equal(_torch_bits(out), _torch_bits(x))
    assert customar.check_tensor(x) == (240, {"float8_e4m3fn": "fp8e4m3", "float8_e5m2": "fp8e5m2"}[dtype], 0)
    assert comm.algo_for(x) == "nccl"


@needs_gpu
@pytest.mark.parametrize("make_out, error", [
    (lambda x: torch.empty(x.shape, dtype=x.dtype, device=x.device), "input's layout"),
    (lambda x: torch.empty(x.numel(), dtype=x.dtype, device=x.device), "input's layout"),
    (lambda x: torch.empty_like(x, dtype=torch.float32), "dtype fp32 but the input bf16"),
    (lambda x: torch.empty_like(x).cpu(), "not a CUDA tensor"),
], ids=["contiguous_for_transposed", "flat", "other_dtype", "cpu"])
def test_torch_output_must_match_the_input(comm, make_out, error):
    x = _torch_random("bfloat16", (40, 6)).t()
    with pytest.raises(customar.InvalidArgument, match=error):
        comm.all_reduce(x, out=make_out(x))


@needs_gpu
def test_torch_output_overlapping_the_input_is_rejected(comm):
    buf = _torch_random("float32", (64,))
    with pytest.raises(customar.InvalidArgument, match="overlaps the input"):
        comm.all_reduce(buf[:32], out=buf[16:48])


@needs_gpu
@pytest.mark.parametrize("make, error", [
    (lambda: _torch_random("float32", (8, 8))[:, ::2], "has gaps"),
    (lambda: _torch_random("float32", (8,)).expand(4, 8), "is broadcast"),
    (lambda: torch.ones(4, dtype=torch.bool, device="cuda"), "dtype bool"),
    (lambda: torch.ones(4, dtype=torch.complex64, device="cuda"), "dtype complex64"),
    (lambda: torch.ones(4, dtype=torch.int16, device="cuda"), "dtype int16"),
], ids=["gaps", "expanded", "bool", "complex", "int16"])
def test_torch_tensor_customar_cannot_take_is_rejected(comm, make, error):
    with pytest.raises(customar.InvalidArgument, match=error):
        comm.all_reduce(make())


@needs_gpu
def test_torch_fnuz_fp8_is_rejected(comm):
    if not hasattr(torch, "float8_e4m3fnuz"):
        pytest.skip("no float8_e4m3fnuz in this torch")
    x = torch.zeros(4, dtype=torch.uint8, device="cuda").view(torch.float8_e4m3fnuz)
    with pytest.raises(customar.InvalidArgument, match="float8_e4m3fnuz|__dlpack__"):
        comm.all_reduce(x)


@needs_gpu
def test_torch_streams(comm):
    x = _torch_random("float32", (1024,))
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    out = comm.all_reduce(x, stream=s)
    s.synchronize()
    assert torch.equal(_torch_bits(out), _torch_bits(x))
    out2 = comm.all_reduce(x, stream=s.cuda_stream)
    s.synchronize()
    assert torch.equal(_torch_bits(out2), _torch_bits(x))
    with pytest.raises(customar.InvalidArgument, match="stream must be"):
        comm.all_reduce(x, stream="default")
    with pytest.raises(customar.InvalidArgument, match="stream handle must be"):
        comm.all_reduce(x, stream=-1)


@pytest.mark.skipif(NGPU < 2, reason="needs two GPUs")
def test_torch_tensor_or_stream_of_another_device_is_rejected(comm):
    x = torch.zeros(16, device="cuda:1")
    with pytest.raises(customar.InvalidArgument, match="communicator is on device 0"):
        comm.all_reduce(x)
    with pytest.raises(customar.InvalidArgument, match="stream belongs to device 1"):
        comm.all_reduce(torch.zeros(16, device="cuda:0"), stream=torch.cuda.Stream(device=1))


# ---- world size 1: the communicator's API ---------------------------------------------------------------------------

@needs_gpu
def test_world_size_one_properties(comm):
    assert (comm.backend, comm.rank, comm.size, comm.device, comm.capacity) == ("none", 0, 1, 0, 0)
    assert "world size 1" in comm.reason
    assert "rank 0 of 1" in repr(comm)


@needs_gpu
@pytest.mark.parametrize("args", [(1024, "bf16"), (1024, "bfloat16"), (0, "int32"), (7, "float8_e5m2")],
                         ids=["customar_name", "framework_name", "empty", "fp8"])
def test_algo_for_count_at_world_size_one_is_a_copy_reported_as_nccl(comm, args):
    assert comm.algo_for(*args) == "nccl"


@needs_gpu
def test_algo_for_tensor_validates_it(comm):
    assert comm.algo_for(_torch_random("bfloat16", (40, 6)).t()) == "nccl"
    with pytest.raises(customar.InvalidArgument, match="has gaps"):
        comm.algo_for(_torch_random("bfloat16", (8, 8))[:, ::2])


@needs_gpu
def test_algo_for_takes_framework_dtypes(comm):
    assert comm.algo_for(64, torch.float16) == "nccl"
    assert comm.algo_for(64, np.dtype("int64")) == "nccl"


@needs_gpu
@pytest.mark.parametrize("args, error", [
    ((-1, "bf16"), "count must be an int >= 0"),
    ((1.5, "bf16"), "count must be an int >= 0"),
    ((True, "bf16"), "count must be an int >= 0"),
    ((16, "bool"), "'bool' is not one customar sums"),
    ((16, torch.complex64), "'complex64' is not one customar sums"),
    ((2**62, "fp64"), "byte size overflows"),
], ids=["negative", "float", "bool", "bool_dtype", "complex_dtype", "overflow"])
def test_algo_for_rejects_bad_queries(comm, args, error):
    with pytest.raises(customar.InvalidArgument, match=error):
        comm.algo_for(*args)


@needs_gpu
@pytest.mark.parametrize("algo", ["oneshot_push", "oneshot_pull", "twoshot", "nccl", None])
def test_set_algo_accepts_every_algorithm(comm, algo):
    comm.set_algo(algo)
    x = _torch_random("bfloat16", (256,))
    assert torch.equal(_torch_bits(comm.all_reduce(x)), _torch_bits(x))


@needs_gpu
@pytest.mark.parametrize("algo", ["bogus", "", "ONESHOT_PUSH", 3])
def test_set_algo_rejects_unknown_names(comm, algo):
    with pytest.raises(customar.InvalidArgument, match="oneshot_push, oneshot_pull, twoshot"):
        comm.set_algo(algo)


CLOSED_CALLS = {
    "all_reduce": lambda c: c.all_reduce(torch.zeros(4, device="cuda")),
    "all_reduce_jax_path": lambda c: c.all_reduce(type("Arr", (), {"__module__": "jax"})()),
    "algo_for": lambda c: c.algo_for(16, "bf16"),
    "set_algo": lambda c: c.set_algo("twoshot"),
    "check": lambda c: c.check(),
    "capture": lambda c: c.capture().__enter__(),
    "with": lambda c: c.__enter__(),
    "backend": lambda c: c.backend,
    "reason": lambda c: c.reason,
    "rank": lambda c: c.rank,
    "size": lambda c: c.size,
    "device": lambda c: c.device,
    "capacity": lambda c: c.capacity,
}


@needs_gpu
@pytest.mark.parametrize("call", CLOSED_CALLS)
def test_every_method_after_close_raises_state_error(call):
    c = customar.Communicator(OneRank(), 0)
    c.close()
    with pytest.raises(customar.StateError, match="closed"):
        CLOSED_CALLS[call](c)


@needs_gpu
def test_close_twice_is_a_no_op_and_repr_says_closed():
    c = customar.Communicator(OneRank(), 0)
    c.close()
    c.close()
    assert c.closed and repr(c) == "customar.Communicator(closed)"
    del c  # the destructor after close does nothing


@needs_gpu
def test_with_block_closes():
    x = _torch_random("float32", (64,))
    with customar.Communicator(OneRank(), 0) as c:
        assert torch.equal(_torch_bits(c.all_reduce(x)), _torch_bits(x))
    assert c.closed


@needs_gpu
def test_with_block_closes_on_an_exception():
    with pytest.raises(RuntimeError, match="inside"):
        with customar.Communicator(OneRank(), 0) as c:
            raise RuntimeError("inside")
    assert c.closed


@needs_gpu
def test_torch_device_is_taken():
    with customar.Communicator(OneRank(), torch.device("cuda", 0)) as c:
        assert c.device == 0
    with customar.Communicator(OneRank(), torch.device("cuda")) as c:
        assert c.device == torch.cuda.current_device()


# ---- world size 1: CuPy -------------------------------------------------------------------------------------------

def _cupy():
    return pytest.importorskip("cupy")


def _cupy_random(cupy, dtype_name, base_shape, seed=0):
    try:
        dtype = np.dtype(dtype_name)
    except TypeError:
        ml_dtypes = pytest.importorskip("ml_dtypes")
        dtype = np.dtype(getattr(ml_dtypes, dtype_name))
    raw = np.random.default_rng(seed).integers(0, 256, dtype.itemsize * int(np.prod(base_shape)), dtype=np.uint8)
    try:
        a = cupy.asarray(raw.view(dtype).reshape(base_shape))
        a.__dlpack__()
        return a
    except (TypeError, ValueError, BufferError) as err:
        pytest.skip(f"this CuPy cannot hold or export {dtype_name}: {err}")


CUPY_LAYOUTS = {
    "contiguous": ((6, 40), lambda a: a),
    "transposed": ((40, 6), lambda a: a.T),
    "channels_last": ((2, 4, 5, 3), lambda a: a.transpose(0, 3, 1, 2)),
}


@needs_gpu
@pytest.mark.parametrize("layout", CUPY_LAYOUTS)
@pytest.mark.parametrize("dtype", CUPY_DTYPES)
def test_cupy_new_output_has_the_input_layout_and_values(comm, dtype, layout):
    cupy = _cupy()
    base_shape, view = CUPY_LAYOUTS[layout]
    with cupy.cuda.Device(0):
        x = view(_cupy_random(cupy, dtype, base_shape))
        out = comm.all_reduce(x)
        cupy.cuda.get_current_stream().synchronize()
    assert isinstance(out, cupy.ndarray) and out.dtype == x.dtype
    assert out.shape == x.shape and out.strides == x.strides and out.data.ptr != x.data.ptr
    assert cupy.asnumpy(out).tobytes() == cupy.asnumpy(x).tobytes()


@needs_gpu
@pytest.mark.parametrize("layout", CUPY_LAYOUTS)
def test_cupy_given_output_of_the_same_layout_is_filled(comm, layout):
    cupy = _cupy()
    base_shape, view = CUPY_LAYOUTS[layout]
    with cupy.cuda.Device(0):
        x = view(_cupy_random(cupy, "float32", base_shape, seed=1))
        out = view(_cupy_random(cupy, "float32", base_shape, seed=2))
        assert comm.all_reduce(x, out=out) is out
        cupy.cuda.get_current_stream().synchronize()
    assert cupy.asnumpy(out).tobytes() == cupy.asnumpy(x).tobytes()


@needs_gpu
def test_cupy_non_dense_view_is_rejected(comm):
    cupy = _cupy()
    with cupy.cuda.Device(0):
        x = cupy.zeros((8, 8), dtype=cupy.float32)[:, ::2]
        with pytest.raises(customar.InvalidArgument, match="has gaps"):
            comm.all_reduce(x)


@needs_gpu
def test_cupy_stream(comm):
    cupy = _cupy()
    with cupy.cuda.Device(0):
        x = _cupy_random(cupy, "float32", (1024,))
        cupy.cuda.get_current_stream().synchronize()
        s = cupy.cuda.Stream(non_blocking=True)
        out = comm.all_reduce(x, stream=s)
        s.synchronize()
    assert cupy.asnumpy(out).tobytes() == cupy.asnumpy(x).tobytes()


# ---- world size 1: JAX --------------------------------------------------------------------------------------------

@pytest.fixture
def jax_gpu():
    jax = pytest.importorskip("jax")
    _cupy()  # a new JAX output is allocated by CuPy
    jax.config.update("jax_enable_x64", True)  # float64, int64, uint64 arrays stay 64-bit
    try:
        return jax, jax.devices("gpu")[0]
    except RuntimeError:
        pytest.skip("JAX sees no GPU")


def _jax_random(jax, device, dtype_name, shape, seed=0):
    import jax.numpy as jnp

    dtype = np.dtype(getattr(jnp, dtype_name))
    raw = np.random.default_rng(seed).integers(0, 256, dtype.itemsize * int(np.prod(shape)), dtype=np.uint8)
    host = raw.view(dtype).reshape(shape)
    return jax.device_put(host, device), host


@needs_gpu
@pytest.mark.parametrize("dtype", JAX_DTYPES)
def test_jax_new_output_is_a_jax_array_with_the_values(comm, jax_gpu, dtype):
    jax, device = jax_gpu
    x, host = _jax_random(jax, device, dtype, (6, 40))
    out = comm.all_reduce(x)
    assert isinstance(out, jax.Array) and out.dtype == x.dtype and out.shape == x.shape
    assert np.asarray(out).tobytes() == host.tobytes()
    assert np.asarray(x).tobytes() == host.tobytes()  # the input is untouched
    assert customar.check_tensor(x)[0] == 240


@needs_gpu
def test_jax_output_array_is_refused_but_cupy_output_is_taken(comm, jax_gpu):
    jax, device = jax_gpu
    cupy = _cupy()
    x, host = _jax_random(jax, device, "float32", (64,))
    with pytest.raises(customar.InvalidArgument, match="JAX arrays are immutable"):
        comm.all_reduce(x, out=x)
    with cupy.cuda.Device(0):
        out = cupy.zeros(64, dtype=cupy.float32)
        assert comm.all_reduce(x, out=out) is out
        cupy.cuda.get_current_stream().synchronize()
    assert cupy.asnumpy(out).tobytes() == host.tobytes()


@needs_gpu
def test_jax_dtype_nccl_does_not_sum_is_rejected(comm, jax_gpu):
    jax, device = jax_gpu
    x = jax.device_put(np.zeros(4, dtype=bool), device)
    with pytest.raises(customar.InvalidArgument, match="dtype bool"):
        comm.all_reduce(x)


# ---- world sizes 2 and 4 ------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _close(out, ref, mag, dtype, world):
    eps = {torch.float16: 2**-10, torch.bfloat16: 2**-7, torch.float32: 2**-23, torch.float64: 2**-52}[dtype]
    err = (out.double().cpu() - ref).abs()
    return bool((err <= eps * world * mag + 1e-30).all())


def _check_custom_dtypes(comm, dist, nccl, rank, world):
    for dtype in (torch.float16, torch.bfloat16, torch.float32):
        for n in (3, 1040, 65536, (1 << 20) + 8):
            gen = torch.Generator().manual_seed(n * 7 + world)
            inputs = [torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1 for _ in range(world)]
            held = [t.to(dtype).double() for t in inputs]  # what each rank really holds, in float64
            ref = sum(held)
            mag = sum(t.abs() for t in held)
            x = inputs[rank].to(dtype).cuda()
            out = comm.all_reduce(x)
            assert out.dtype == dtype and out.device == x.device
            assert _close(out, ref, mag, dtype, world), (dtype, n)
            inplace = x.clone()
            assert comm.all_reduce(inplace, out=inplace) is inplace
            assert torch.equal(inplace, out)
            theirs = x.clone()
            dist.all_reduce(theirs, group=nccl)
            assert _close(theirs, ref, mag, dtype, world)


# Small integers every type holds exactly, and whose sums over 4 ranks every type holds exactly too (e4m3 has 3
# mantissa bits: integers up to 16; e5m2 has 2: up to 8).
NCCL_DTYPES = {"float64": (-1000, 1000), "int8": (-30, 30), "uint8": (0, 60), "int32": (-1000, 1000),
               "uint32": (0, 1000), "int64": (-1000, 1000), "uint64": (0, 1000), "float8_e4m3fn": (-4, 4),
               "float8_e5m2": (-2, 2)}


def _as_int64(t):
    return t.cpu().to(torch.float64 if t.is_floating_point() else torch.int64).to(torch.int64)


def _check_nccl_dtypes(comm, rank, world):
    for name, (lo, hi) in NCCL_DTYPES.items():
        dtype = getattr(torch, name)
        gen = torch.Generator().manual_seed(11 + world)
        inputs = [torch.randint(lo, hi + 1, (40, 33), generator=gen, dtype=torch.int64) for _ in range(world)]
        x = inputs[rank].to(dtype).cuda().t()  # a transposed view: reduced as it lies in memory
        assert comm.algo_for(x) == "nccl", name
        out = comm.all_reduce(x)
        assert out.dtype == dtype and out.stride() == x.stride(), name
        assert torch.equal(_as_int64(out), sum(inputs).t()), name
        comm.all_reduce(x, out=x)
        assert torch.equal(_as_int64(x), sum(inputs).t()), name


def _check_forced_algorithms(comm, rank, world):
    algos = ["oneshot_pull", "twoshot", "nccl"] + (["oneshot_push"] if comm.backend == "v2" else [])
    assert comm.capacity > 0
    for algo in algos:
        comm.set_algo(algo)
        assert comm.algo_for(4096, "bf16") == algo
        gen = torch.Generator().manual_seed(23)
        inputs = [torch.rand(64, 64, generator=gen, dtype=torch.float64) for _ in range(world)]
        held = [t.to(torch.bfloat16).double() for t in inputs]
        x = inputs[rank].to(torch.bfloat16).cuda().t()
        out = comm.all_reduce(x)
        assert out.stride() == x.stride(), algo
        assert _close(out, sum(held).t(), sum(t.abs() for t in held).t(), torch.bfloat16, world), algo
    comm.set_algo(None)


def _check_graph(comm, rank, world):
    x = torch.empty(4096, dtype=torch.bfloat16, device="cuda")
    stream = torch.cuda.Stream()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream):
        comm.all_reduce(x, out=x.clone())  # warm-up outside the capture
    torch.cuda.synchronize()
    with torch.cuda.graph(graph), comm.capture():
        y = comm.all_reduce(x)
    for replay in range(3):
        gen = torch.Generator().manual_seed(99 + replay)
        inputs = [torch.rand(4096, generator=gen, dtype=torch.float64) for _ in range(world)]
        held = [t.to(torch.bfloat16).double() for t in inputs]
        x.copy_(inputs[rank].to(torch.bfloat16))
        y.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert _close(y, sum(held), sum(t.abs() for t in held), torch.bfloat16, world), replay
    del graph


def _check_cupy(comm, rank, world):
    try:
        import cupy
    except ImportError:
        return
    with cupy.cuda.Device(rank):
        gen = torch.Generator().manual_seed(5)
        inputs = [torch.rand(2048, generator=gen, dtype=torch.float64) for _ in range(world)]
        cx = cupy.asarray(inputs[rank].to(torch.float32).numpy().reshape(32, 64)).T
        cout = comm.all_reduce(cx)
        cupy.cuda.get_current_stream().synchronize()
        assert isinstance(cout, cupy.ndarray) and cout.strides == cx.strides
        got = torch.from_numpy(cupy.asnumpy(cout).T.reshape(-1)).double()
        held = [t.float().double() for t in inputs]
        assert _close(got, sum(held), sum(t.abs() for t in held), torch.float32, world)


def _worker(rank: int, world: int, port: int) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NCCL_NVLS_ENABLE="0")
    torch.cuda.set_device(rank)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    nccl = dist.new_group(backend="nccl")
    comm = customar.Communicator(dist.group.WORLD, rank)
    assert comm.backend in ("v2", "v1"), comm.reason
    _check_custom_dtypes(comm, dist, nccl, rank, world)
    _check_nccl_dtypes(comm, rank, world)
    _check_forced_algorithms(comm, rank, world)
    _check_graph(comm, rank, world)
    comm.check()
    _check_cupy(comm, rank, world)
    torch.cuda.synchronize()
    comm.close()  # collective: every rank closes here
    comm.close()
    try:
        comm.all_reduce(torch.zeros(4, device="cuda"))
        raise AssertionError("all_reduce after close did not raise")
    except customar.StateError:
        pass
    dist.destroy_process_group()


@pytest.mark.parametrize("world", [w for w in (2, 4) if w <= NGPU])
def test_all_reduce_matches_references_at_world_size(world):
    torch.multiprocessing.spawn(_worker, args=(world, _free_port()), nprocs=world, join=True)
