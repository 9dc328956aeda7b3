"""A two-layer tensor-parallel MLP (column-parallel up projection, row-parallel down projection, one all-reduce per
forward) run with customar's all-reduce and with torch.distributed's, in CUDA graphs; prints both speeds.

    python examples/tp_mlp.py [--gpus N] [--tokens T] [--hidden H]
"""
import argparse
import os
import socket
import time

import torch
import torch.distributed as dist


def worker(rank, world, port, args):
    import customar

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), NCCL_NVLS_ENABLE="0")
    torch.cuda.set_device(rank)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    nccl = dist.new_group(backend="nccl")
    comm = customar.Communicator(dist.group.WORLD, rank)
    h, f = args.hidden, 4 * args.hidden // world
    gen = torch.Generator(device="cuda").manual_seed(rank)
    w1 = torch.randn(h, f, device="cuda", dtype=torch.bfloat16, generator=gen) / h**0.5
    w2 = torch.randn(f, h, device="cuda", dtype=torch.bfloat16, generator=gen) / f**0.5
    x = torch.randn(args.tokens, h, device="cuda", dtype=torch.bfloat16, generator=torch.Generator(device="cuda").manual_seed(0))

    def forward(reduce):
        y = torch.nn.functional.gelu(x @ w1) @ w2  # this rank's partial sum
        return reduce(y)

    def with_customar(y):
        return comm.all_reduce(y, out=y)

    def with_torch(y):
        dist.all_reduce(y, group=nccl)
        return y

    results = {}
    graphs = []
    for name, reduce in (("customar", with_customar), ("torch.distributed", with_torch)):
        s = torch.cuda.Stream()
        with torch.cuda.stream(s):
            for _ in range(3):
                forward(reduce)
        torch.cuda.synchronize()
        g = torch.cuda.CUDAGraph()
        graphs.append(g)
        with torch.cuda.graph(g):
            out = forward(reduce)
        for _ in range(5):
            g.replay()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.iters):
            g.replay()
        torch.cuda.synchronize()
        results[name] = ((time.perf_counter() - t0) / args.iters * 1e6, out.clone())
    ok = torch.allclose(results["customar"][1].float(), results["torch.distributed"][1].float(), rtol=2e-2, atol=2e-2)
    if rank == 0:
        print(f"tp_mlp: {world} GPUs, {args.tokens} tokens, hidden {h}, bf16, CUDA graphs; customar backend "
              f"{comm.backend}")
        for name, (us, _) in results.items():
            print(f"  {name:18s} {us:8.1f} us/forward")
        print(f"  speed-up {results['torch.distributed'][0] / results['customar'][0]:.2f}x, outputs match: {ok}")
    # Tear down in dependency order: the graphs hold kernels of both communicators, and torch's NCCL communicator
    # must not be destroyed under a live graph that captured it (that can block in NCCL's teardown).
    torch.cuda.synchronize()
    del graphs, g, out, results
    del comm
    dist.destroy_process_group()
    if not ok:
        raise SystemExit(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gpus", type=int, default=torch.cuda.device_count())
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--iters", type=int, default=200)
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(worker, args=(args.gpus, port, args), nprocs=args.gpus, join=True)


if __name__ == "__main__":
    main()
