"""Symmetric memory from Python on real GPUs (run by scripts/gpu-check.sh with the other Python tests): comm.empty()
and comm.empty_dlpack() at world size 1 (a copy) in torch and CuPy, their errors; on one GPU, virtual ranks
(customar.run_virtual) summing symmetric tensors in and out of place; and on 2 and 4 GPUs calls that read symmetric
inputs in place, eagerly and in a CUDA graph. Every sum against a float64 reference."""
import os
import socket

import pytest

torch = pytest.importorskip("torch")
import customar  # noqa: E402
from test_gpu import comm  # noqa: E402,F401  (the world-size-1 communicator fixture)

NGPU = torch.cuda.device_count() if torch.cuda.is_available() else 0
needs_gpu = pytest.mark.skipif(NGPU < 1, reason="needs a GPU")


@needs_gpu
def test_empty_is_a_torch_tensor_of_the_shape_and_dtype_on_the_device(comm):
    t = comm.empty((4, 1024), torch.bfloat16)
    assert isinstance(t, torch.Tensor)
    assert t.shape == (4, 1024) and t.dtype == torch.bfloat16 and t.is_contiguous()
    assert t.device == torch.device("cuda", 0)
    assert comm.symmetric_bytes >= t.numel() * t.element_size()
    t.copy_(torch.arange(t.numel(), device="cuda").view(4, 1024).to(torch.bfloat16))
    assert torch.equal(comm.all_reduce(t), t)
    comm.free(t)
    assert comm.symmetric_bytes == 0


@needs_gpu
def test_empty_dlpack_is_taken_by_torch_and_cupy(comm):
    obj = comm.empty_dlpack(256, "float32")
    assert hasattr(obj, "__dlpack__") and hasattr(obj, "__dlpack_device__")
    t = torch.from_dlpack(obj)
    assert t.shape == (256,) and t.dtype == torch.float32 and t.is_cuda
    try:
        import cupy
    except ImportError:
        comm.free(t)
        return
    c = cupy.from_dlpack(comm.empty_dlpack((8, 8), "float16"))
    assert c.shape == (8, 8) and c.dtype == cupy.float16
    comm.free(c)
    comm.free(t)


@needs_gpu
def test_free_of_a_tensor_outside_symmetric_memory_is_rejected(comm):
    t = comm.empty(16, "float32")
    with pytest.raises(customar.InvalidArgument, match="starts no live symmetric allocation"):
        comm.free(torch.zeros(16, device="cuda"))
    with pytest.raises(customar.InvalidArgument, match="starts no live symmetric allocation"):
        comm.free(t[4:])
    comm.free(t)


@needs_gpu
@pytest.mark.parametrize("shape", [(-1, 4), "abc", (2.5,)])
def test_empty_rejects_bad_shapes(comm, shape):
    with pytest.raises(customar.InvalidArgument):
        comm.empty(shape, "bfloat16")


def _virtual_rank(group, n, seeds):
    comm = customar.Communicator(group, group.device)
    x = comm.empty(n, torch.bfloat16)
    y = comm.empty(n, torch.bfloat16)
    wrong = []
    for seed in seeds:
        inputs, ref, mag = _reference(n, group.size, seed)
        x.copy_(inputs[group.rank].to(torch.bfloat16))
        y.fill_(float("nan"))
        torch.cuda.current_stream().synchronize()  # the rank's stream: never the device, which holds the peers'
        group.barrier()
        comm.all_reduce(x, out=y)
        torch.cuda.current_stream().synchronize()
        if not _close(y, ref, mag, group.size):
            wrong.append(("out of place", seed))
        group.barrier()
        comm.all_reduce(x, out=x)
        torch.cuda.current_stream().synchronize()
        if not _close(x, ref, mag, group.size):
            wrong.append(("in place", seed))
    held = comm.symmetric_bytes
    comm.free(y)
    comm.free(x)
    return comm.backend, wrong, held, comm.symmetric_bytes


@needs_gpu
@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("n", [1 << 19, 9 << 20])  # 1 MiB and 18 MiB of bf16: a pull and the two-shot
def test_virtual_ranks_sum_symmetric_tensors(world, n):
    got = customar.run_virtual(world, lambda g: _virtual_rank(g, n, (1, 2)))
    for rank, (backend, wrong, held, after) in enumerate(got):
        assert not wrong, (rank, backend, wrong)
        assert held >= 2 * n * 2 and after == 0, (rank, held, after)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reference(n, world, seed):
    gen = torch.Generator().manual_seed(seed)
    inputs = [torch.rand(n, generator=gen, dtype=torch.float64) * 2 - 1 for _ in range(world)]
    held = [t.to(torch.bfloat16).double() for t in inputs]
    return inputs, sum(held), sum(t.abs() for t in held)


def _close(out, ref, mag, world):
    return bool(((out.double().cpu() - ref).abs() <= 2**-7 * world * mag + 1e-30).all())


def _worker(rank: int, world: int, port: int) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NCCL_NVLS_ENABLE="0")
    torch.cuda.set_device(rank)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    comm = customar.Communicator(dist.group.WORLD, rank)
    n = 8 << 20 >> 1  # 8 MiB of bf16: above every push threshold
    x = comm.empty(n, torch.bfloat16)
    y = comm.empty(n, torch.bfloat16)
    for seed, out in ((1, y), (2, x), (3, None)):
        inputs, ref, mag = _reference(n, world, seed)
        x.copy_(inputs[rank].to(torch.bfloat16))
        got = comm.all_reduce(x, out=out)
        torch.cuda.synchronize()
        assert _close(got, ref, mag, world), seed
    # A CUDA graph over symmetric buffers, replayed with new inputs.
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), comm.capture():
        comm.all_reduce(x, out=y)
    for replay in range(3):
        inputs, ref, mag = _reference(n, world, 10 + replay)
        x.copy_(inputs[rank].to(torch.bfloat16))
        y.fill_(float("nan"))
        graph.replay()
        torch.cuda.synchronize()
        assert _close(y, ref, mag, world), replay
    del graph
    comm.check()
    comm.free(y)
    comm.free(x)
    assert comm.symmetric_bytes == 0
    comm.close()
    dist.destroy_process_group()


@pytest.mark.parametrize("world", [w for w in (2, 4) if w <= NGPU])
def test_symmetric_all_reduce_at_world_size(world):
    torch.multiprocessing.spawn(_worker, args=(world, _free_port()), nprocs=world, join=True)
