"""Python binding on real GPUs (run by scripts/gpu-check.sh): torch.multiprocessing.spawn at 2 and 4 GPUs, results
against a float64 reference and beside torch.distributed.all_reduce, inside torch.cuda.graph, and CuPy arrays."""
import os
import socket

import pytest

torch = pytest.importorskip("torch")
NGPU = torch.cuda.device_count() if torch.cuda.is_available() else 0
pytestmark = pytest.mark.skipif(NGPU < 2, reason="needs two or more GPUs")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _close(out, ref, mag, dtype, world):
    eps = {torch.float16: 2**-10, torch.bfloat16: 2**-7, torch.float32: 2**-23}[dtype]
    err = (out.double().cpu() - ref).abs()
    return bool((err <= eps * world * mag + 1e-30).all())


def _worker(rank: int, world: int, port: int) -> None:
    import torch.distributed as dist

    import customar

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NCCL_NVLS_ENABLE="0")
    torch.cuda.set_device(rank)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    nccl = dist.new_group(backend="nccl")
    comm = customar.Communicator(dist.group.WORLD, rank)
    assert comm.backend in ("v2", "v1"), comm.reason
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
    # CUDA graph: captured once, replayed with fresh data.
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
    comm.check()
    try:
        import cupy
    except ImportError:
        cupy = None
    if cupy is not None:
        with cupy.cuda.Device(rank):
            gen = torch.Generator().manual_seed(5)
            inputs = [torch.rand(2048, generator=gen, dtype=torch.float64) for _ in range(world)]
            cx = cupy.asarray(inputs[rank].to(torch.float32).numpy())
            cout = comm.all_reduce(cx)
            cupy.cuda.get_current_stream().synchronize()
            assert isinstance(cout, cupy.ndarray)
            got = torch.from_numpy(cupy.asnumpy(cout)).double()
            held = [t.float().double() for t in inputs]
            assert _close(got, sum(held), sum(t.abs() for t in held), torch.float32, world)
    del comm
    dist.destroy_process_group()


@pytest.mark.parametrize("world", [w for w in (2, 4) if w <= NGPU])
def test_all_reduce_matches_float64_and_torch(world):
    torch.multiprocessing.spawn(_worker, args=(world, _free_port()), nprocs=world, join=True)
