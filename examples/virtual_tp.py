"""A tensor-parallel MLP at world sizes 2..8 on one GPU: each rank is a thread (customar.run_virtual) holding a
column slice of the up projection and a row slice of the down projection, and one customar all-reduce per forward
sums their partial outputs. Every rank's output is checked against the same MLP computed whole, in float64.

    python examples/virtual_tp.py [--worlds 2,3,4,5,6,7,8] [--tokens 16] [--hidden 1024] [--dtype bfloat16]
                                  [--compile none|aot_eager|inductor] [--graph] [--partition auto]

--compile runs the forward under torch.compile(fullgraph=True) through customar's torch op; --graph captures it in a
CUDA graph and replays it. The rank function follows customar.virtual's rules: the forward runs once over a
world-size-1 communicator before the ranks depend on each other (every kernel loaded, every compile done but the one
per communicator), then a barrier; graphs are captured thread-locally on the rank's stream, all before any replay.
"""
import argparse
import sys

import torch

import customar


def make_weights(hidden, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    ffn = 4 * hidden
    w1 = (torch.randn(hidden, ffn, generator=gen, dtype=torch.float64) / hidden**0.5).to(dtype)
    w2 = (torch.randn(ffn, hidden, generator=gen, dtype=torch.float64) / ffn**0.5).to(dtype)
    return w1, w2


def reference(x, w1, w2):
    """The whole MLP in float64 on the CPU, from the same (rounded) weights and input the ranks hold."""
    return torch.nn.functional.gelu(x.double() @ w1.double()) @ w2.double()


class OneRank:
    rank, size = 0, 1

    def all_gather(self, data):
        return [data]


def rank_main(group, args, x_cpu, w1_cpu, w2_cpu):
    device = torch.device("cuda", group.device)
    ffn = w1_cpu.shape[1]
    cols = slice(group.rank * ffn // group.size, (group.rank + 1) * ffn // group.size)
    w1 = w1_cpu[:, cols].contiguous().to(device)  # column-parallel up projection
    w2 = w2_cpu[cols, :].contiguous().to(device)  # row-parallel down projection
    x = x_cpu.to(device)

    def forward(x, comm):
        partial = torch.nn.functional.gelu(x @ w1) @ w2  # this rank's share of the output
        return comm.torch_all_reduce(partial, out=partial)

    if args.compile != "none":
        forward = torch.compile(forward, fullgraph=True, backend=args.compile)
    with customar.Communicator(OneRank(), group.device) as one:
        forward(x, one)
        torch.cuda.current_stream().synchronize()
    comm = customar.Communicator(group, group.device)
    group.barrier()
    y = forward(x, comm)
    graph = None
    if args.graph:
        torch.cuda.current_stream().synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=torch.cuda.current_stream(), capture_error_mode="thread_local"):
            y = forward(x, comm)
        group.barrier()
        y.fill_(float("nan"))
        graph.replay()
    torch.cuda.current_stream().synchronize()  # the rank's stream, not the device
    del graph
    return comm.backend, comm.algo_for(y), y.cpu()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worlds", default="2,3,4,5,6,7,8", help="comma-separated world sizes, each 1..8")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--dtype", default="bfloat16", choices=["float16", "bfloat16", "float32"])
    p.add_argument("--compile", default="none", choices=["none", "aot_eager", "inductor"])
    p.add_argument("--graph", action="store_true", help="capture the forward in a CUDA graph and replay it")
    p.add_argument("--partition", default="auto", choices=list(customar.virtual.PARTITIONS))
    p.add_argument("--device", type=int, default=0)
    args = p.parse_args()
    dtype = getattr(torch, args.dtype)
    tol = {torch.float16: 1e-2, torch.bfloat16: 3e-2, torch.float32: 1e-4}[dtype]
    w1, w2 = make_weights(args.hidden, dtype, seed=1)
    x = torch.randn(args.tokens, args.hidden, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(dtype)
    ref = reference(x, w1, w2)
    if args.compile != "none":
        torch._dynamo.config.cache_size_limit = 64  # one compile per communicator: the handle is a graph constant
    failed = 0
    for world in (int(w) for w in args.worlds.split(",")):
        got = customar.run_virtual(world, lambda g: rank_main(g, args, x, w1, w2), device=args.device,
                                   partition=args.partition)
        errs = [float((y.double() - ref).norm() / ref.norm()) for _, _, y in got]
        same = all(torch.equal(y, got[0][2]) for _, _, y in got)
        ok = max(errs) < tol and same
        failed += not ok
        backend, algo, _ = got[0]
        print(f"virtual_tp: world {world}, {args.tokens}x{args.hidden} {args.dtype}, backend {backend}, {algo}, "
              f"compile {args.compile}, graph {args.graph}: max relative error {max(errs):.2e} (limit {tol:g}), "
              f"ranks agree: {same} -> {'ok' if ok else 'WRONG'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
