#!/usr/bin/env python3
"""The peers' all-reduce kernels, from their released packages, timed the way customar-perf times customar.

    run_peers.py check                one GPU: each peer imports, its kernels build, what runs at world size 1 runs
    run_peers.py build DIR            builds FlashInfer's comm modules from source, copies the .so files into DIR
    run_peers.py bench -g N [-J FILE] [-b 1K] [-e 256M] [--peers NAME,...] [--sgl-push-max 16M]
    run_peers.py fused -g N [-J FILE] FlashInfer's all-reduce + residual add + RMSNorm over tokens x hidden

Peers (the `backend` of each JSON line): torch-nccl (torch.distributed.all_reduce, in place), symm-1 / symm-2
(PyTorch SymmetricMemory one_shot_all_reduce_out / two_shot_all_reduce_, multicast off), sgl-push / sgl-pull1 /
sgl-pull2 (SGLang's JIT custom all-reduce V2: one-shot push in place; one-shot pull and two-shot pull on graph
inputs registered after capture, as SGLang runs them in graphs), fi-trtllm1 / fi-trtllm2 (FlashInfer's TensorRT-LLM
one-shot Lamport / two-shot all-reduce through allreduce_fusion, PDL on, fp32 accumulation), fi-vllm (FlashInfer's
copy of vLLM's custom all-reduce on registered graph inputs, 36 blocks). bf16, sum, one process per GPU.

Every size is checked before it is timed: rank r holds uniform [-1, 1) values from seed (size, r); each rank
rebuilds every rank's input and sums them in float64; an element is wrong where |got - ref| > world * 2^-7 *
sum_r |x_r| (customar-perf's rule); the relative L2 error is reported too. The check runs the peer's call in a
one-call CUDA graph, as it is timed. Rows: tools/compare_peers.py. Run it through lab/peers/gpu-peers.sh, which
unpacks what lab/peers/fetch.sh left in .peers/ and sets PYTHONPATH.
"""
import argparse
import contextlib
import ctypes
import datetime
import json
import os
import shutil
import socket
import sys
import time
import traceback

# NVLink multicast stays off in every process (it can put a shared host's GPUs out of service for a day or more).
os.environ.update(NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.append(os.path.join(HERE, "stubs"))  # last: a real package of the same name wins

import peers_common as pc  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

BF16 = torch.bfloat16
GRAPH_INPUTS = 131072  # SGLang's graph_input_count in CustomAllReduceV2
VLLM_BLOCKS = 36  # vLLM's block limit (kMaxBlocks), the most FlashInfer's copy accepts
VLLM_RANK_DATA = 8 << 20  # vLLM's rank_data buffer
SGL_PULL_BYTES = 16 << 20  # SGLang's default pull buffer (used by eager calls only; graphs read registered inputs)
RMS_EPS = 1e-6


def first_line(e):
    """An exception as one short line: its type and the first line of its message."""
    lines = str(e).strip().splitlines()
    return "%s: %s" % (type(e).__name__, lines[0][:400] if lines else "")


class PeerFailed(Exception):
    """A step failed on some rank; every rank raises it, so that none waits in a collective the others skipped."""


def forbid_multicast():
    """Makes any cuMulticastCreate through cuda-python raise: the packages' multicast paths must stay unused here."""
    def refuse(*args, **kwargs):
        raise RuntimeError("cuMulticastCreate refused: NVLink multicast stays off on this machine")
    with contextlib.suppress(ImportError):
        from cuda.bindings import driver
        driver.cuMulticastCreate = refuse


class Ctx:
    """One rank's view: its device, the NCCL world group, a gloo group for host-side exchanges."""

    def __init__(self, rank, world, timeout):
        self.rank, self.world = rank, world
        self.dev = torch.device("cuda", rank)
        self.cpu = dist.new_group(backend="gloo", timeout=timeout)
        self.gname = dist.group.WORLD.group_name
        self.gpu = torch.cuda.get_device_name(rank)
        self.shared = {}

    def gather(self, obj):
        out = [None] * self.world
        dist.all_gather_object(out, obj, group=self.cpu)
        return out

    def barrier(self):
        dist.barrier(group=self.cpu)

    def agree(self, what, fn):
        """Runs fn here; raises PeerFailed on every rank if it failed on any. Returns fn's value."""
        err = None
        try:
            val = fn()
        except Exception as e:  # reported below, on every rank
            val, err = None, "%s: %s" % (what, first_line(e))
            traceback.print_exc()
        errs = [e for e in self.gather(err) if e]
        if errs:
            raise PeerFailed(errs[0])
        return val

    def rank0_first(self, what, fn):
        """fn on rank 0, then on the others (JIT builds: one compiles, the rest load its cache)."""
        self.agree(what + " on rank 0", fn if self.rank == 0 else (lambda: None))
        self.agree(what, (lambda: None) if self.rank == 0 else fn)


def init_ranks(rank, world, port, timeout_s):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group("nccl", rank=rank, world_size=world, device_id=torch.device("cuda", rank), timeout=timeout)
    forbid_multicast()
    return Ctx(rank, world, timeout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- data and checks ----

def rank_values(n, seed, r, dev):
    g = torch.Generator(device=dev)
    g.manual_seed(seed * 1000003 + r)
    return (torch.rand(n, generator=g, device=dev, dtype=torch.float32) * 2 - 1).to(BF16)


def reference(ctx, n, seed):
    """(sum, sum of magnitudes) of every rank's input, in float64."""
    ref = torch.zeros(n, dtype=torch.float64, device=ctx.dev)
    mag = torch.zeros_like(ref)
    for r in range(ctx.world):
        x = rank_values(n, seed, r, ctx.dev).double()
        ref += x
        mag += x.abs()
        del x
    return ref, mag


def count_wrong(got, ref, bound):
    """(elements outside bound, relative L2 error); NaN counts as wrong."""
    err = (got.double() - ref).abs()
    wrong = int((~(err <= bound)).sum())
    rel = float(err.nan_to_num(float("inf")).norm() / ref.norm().clamp_min(1e-30))
    return wrong, rel


def check_allreduce(ctx, got, n, seed):
    ref, mag = reference(ctx, n, seed)
    wrong, rel = count_wrong(got.reshape(-1), ref, pc.tolerance(ctx.world) * mag + 1e-30)
    del ref, mag
    rows = ctx.gather((wrong, rel))
    return sum(w for w, _ in rows), max(r for _, r in rows)


# ---- timing (customar-perf's method: its graph_timing.h) ----

def capture(ctx, peer, iters):
    """A CUDA graph of `iters` back-to-back calls, with whatever the peer registers after capture."""
    g = torch.cuda.CUDAGraph()

    def cap():
        peer.capture_begin()
        try:
            with torch.cuda.graph(g):
                for _ in range(iters):
                    peer.call()
        finally:
            peer.capture_end_local()
    ctx.agree("capture", cap)
    ctx.agree("register", lambda: peer.register(ctx))
    return g


def time_graph(ctx, g, iters):
    """WARMUP replays; then one host barrier and REPLAYS replays queued back to back: median per call, worst rank."""
    ctx.agree("warm-up", lambda: ([g.replay() for _ in range(pc.WARMUP)], torch.cuda.synchronize()))
    ctx.barrier()
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(pc.REPLAYS + 1)]
    ev[0].record()
    for i in range(pc.REPLAYS):
        g.replay()
        ev[i + 1].record()
    ev[-1].synchronize()
    us = pc.median_us([ev[i].elapsed_time(ev[i + 1]) for i in range(pc.REPLAYS)], iters)
    return max(ctx.gather(us))


def measure(ctx, peer, nbytes, seed, iters=pc.ITERS):
    """(µs per call, wrong elements over all ranks, worst relative error) of one peer at one size."""
    n = nbytes // 2
    ctx.agree("bind", lambda: peer.bind(ctx, n))
    try:
        mine = rank_values(n, seed, ctx.rank, ctx.dev).view_as(peer.inp)
        if peer.eager:  # a first call outside capture, for what the peer sets up lazily
            peer.inp.copy_(mine)
            ctx.agree("eager call", lambda: (peer.call(), torch.cuda.synchronize()))
        peer.inp.copy_(mine)
        del mine
        one = capture(ctx, peer, 1)
        ctx.agree("checked call", lambda: (one.replay(), torch.cuda.synchronize()))
        wrong, rel = peer.check(ctx, n, seed)
        one = None  # its memory goes back before the timed graph takes its own
        us = time_graph(ctx, capture(ctx, peer, iters), iters)
    finally:
        peer.unbind()
    return us, wrong, rel


# ---- the peers ----

class Peer:
    """One peer's call. bind() points inp/out at n-element tensors; call() enqueues one call on the current stream."""
    name, algo, kind, package, eager = "", "", "in-place", "", True
    worlds = None  # world sizes it runs at (None: any)

    def setup(self, ctx, max_bytes):
        pass

    def skip(self, nbytes, world):
        return None

    def bind(self, ctx, n):
        raise NotImplementedError

    def call(self):
        raise NotImplementedError

    def capture_begin(self):
        pass

    def capture_end_local(self):
        pass

    def register(self, ctx):
        """Collective, after every capture: registration of the graph's inputs, where the peer needs it."""

    def check(self, ctx, n, seed):
        """(wrong elements over all ranks, worst relative error) of out after one call on rank_values inputs."""
        return check_allreduce(ctx, self.out, n, seed)

    def unbind(self):
        pass

    def close(self):
        pass

    def extra(self, n):
        return {}


class TorchNccl(Peer):
    name, algo, package = "torch-nccl", "all_reduce", "torch"

    def setup(self, ctx, max_bytes):
        self.buf = torch.empty(max_bytes // 2, dtype=BF16, device=ctx.dev)
        dist.all_reduce(self.buf[:8])  # the communicator is built outside any capture
        torch.cuda.synchronize()

    def bind(self, ctx, n):
        self.inp = self.out = self.buf[:n]

    def call(self):
        dist.all_reduce(self.inp)

    def close(self):
        self.buf = None


class TorchSymm(Peer):
    package = "torch"

    def __init__(self, two_shot):
        self.two_shot = two_shot
        self.name = "symm-2" if two_shot else "symm-1"
        self.algo = "two_shot_all_reduce_" if two_shot else "one_shot_all_reduce_out"
        self.kind = "in-place" if two_shot else "out-of-place"

    def setup(self, ctx, max_bytes):
        import torch.distributed._symmetric_memory as symm_mem
        self.symm_mem, self.gname = symm_mem, ctx.gname

    def bind(self, ctx, n):
        # A buffer per size, as anchors.py does: SymmetricMemory's ops take the tensor that was rendezvoused.
        self.inp = self.symm_mem.empty(n, dtype=BF16, device=ctx.dev)
        self.symm_mem.rendezvous(self.inp, self.gname)
        self.out = self.inp if self.two_shot else torch.empty_like(self.inp)

    def call(self):
        if self.two_shot:
            torch.ops.symm_mem.two_shot_all_reduce_(self.inp, "sum", self.gname)
        else:
            torch.ops.symm_mem.one_shot_all_reduce_out(self.inp, "sum", self.gname, self.out)

    def unbind(self):
        self.inp = self.out = None


class SglComm:
    """One SGLang CustomAllReduce object for the three SGLang peers, as CustomAllReduceV2 holds one."""

    def __init__(self, ctx, push_bytes, max_bytes):
        from sglang.jit_kernel import all_reduce as sar
        self.sar = sar
        ctx.rank0_first("JIT build", lambda: self.compile(ctx.world))
        cls = sar.get_custom_all_reduce_cls()
        self.obj = cls(rank=ctx.rank, world_size=ctx.world, pull_buffer_bytes=SGL_PULL_BYTES,
                       push_buffer_bytes=push_bytes, graph_input_count=GRAPH_INPUTS)
        handles = ctx.gather([int(b) for b in self.obj.share_storage()])
        self.obj.post_init(handles)
        self.buf = torch.empty(max_bytes // 2, dtype=BF16, device=ctx.dev)
        self.push_bytes = push_bytes

    def compile(self, world):
        self.sar.get_custom_all_reduce_cls()
        self.sar._jit_custom_all_reduce_push_module(BF16, world)
        self.sar._jit_custom_all_reduce_pull_module(BF16, world)

    def register(self, ctx):
        """SGLang's CustomAllReduceV2.capture(): share the captured inputs' IPC handles, register every rank's."""
        mine = [(int(off), [int(b) for b in handle]) for off, handle in self.obj.share_graph_inputs()]
        self.obj.register_inputs(ctx.gather(mine))

    def close(self, ctx):
        self.obj.free_ipc_handles()
        ctx.barrier()
        self.obj.free_storage()


class Sgl(Peer):
    package = "sglang"

    def __init__(self, algo, push_max):
        self.which, self.push_max = algo, push_max
        self.name = {"push": "sgl-push", "pull1": "sgl-pull1", "pull2": "sgl-pull2"}[algo]
        self.algo = {"push": "one_shot_push", "pull1": "one_shot_pull", "pull2": "two_shot_pull"}[algo]
        self.kind = "out-of-place" if algo == "pull1" else "in-place"
        self.eager = algo == "push"  # an eager pull copies into the 16 MiB pull buffer; graphs read registered inputs

    def setup(self, ctx, max_bytes):
        if "sgl" not in ctx.shared:
            ctx.shared["sgl"] = SglComm(ctx, min(self.push_max, max_bytes), max_bytes)
        self.comm = ctx.shared["sgl"]
        enum = self.comm.sar.AllReduceAlgo
        self.enum = {"push": enum.ONE_SHOT_PUSH, "pull1": enum.ONE_SHOT_PULL, "pull2": enum.TWO_SHOT_PULL}[self.which]

    def skip(self, nbytes, world):
        if self.which == "push" and nbytes > self.push_max:
            return "push buffer holds %s (--sgl-push-max)" % pc.human(self.push_max)
        return None

    def bind(self, ctx, n):
        self.inp = self.out = self.comm.buf[:n]

    def call(self):
        res = self.comm.obj.all_reduce(self.inp, self.enum)
        if self.which == "pull1":
            self.out = torch.from_dlpack(res)

    def capture_begin(self):
        self.comm.obj.set_cuda_graph_capture(True)

    def capture_end_local(self):
        self.comm.obj.set_cuda_graph_capture(False)

    def register(self, ctx):
        self.comm.register(ctx)

    def unbind(self):
        self.out = None


class FiWorkspace:
    """FlashInfer's TensorRT-LLM workspace (create_allreduce_fusion_workspace, backend trtllm) for max_elems."""

    def __init__(self, ctx, max_tokens, hidden):
        import flashinfer.comm as fc
        import flashinfer.comm.allreduce as fca
        self.fc = fc
        self.kind = "symmetric device memory"
        try:
            self.ws = ctx.agree("workspace", lambda: fc.create_allreduce_fusion_workspace(
                backend="trtllm", world_size=ctx.world, rank=ctx.rank, max_token_num=max_tokens, hidden_dim=hidden,
                dtype=BF16))
        except PeerFailed as e:
            # FlashInfer's other workspace (what it uses under confidential computing): torch SymmetricMemory.
            print("# fi workspace: %s; retrying on torch SymmetricMemory" % e, flush=True)
            fca.is_confidential_compute = lambda: True
            self.kind = "torch SymmetricMemory"
            self.ws = ctx.agree("workspace", lambda: fc.create_allreduce_fusion_workspace(
                backend="trtllm", world_size=ctx.world, rank=ctx.rank, max_token_num=max_tokens, hidden_dim=hidden,
                dtype=BF16))

    def close(self):
        self.ws.destroy()


class FiTrtllm(Peer):
    package, kind = "flashinfer", "out-of-place"

    def __init__(self, oneshot):
        self.oneshot = oneshot
        self.name = "fi-trtllm1" if oneshot else "fi-trtllm2"
        self.algo = "allreduce_fusion kAllReduce " + ("oneshot" if oneshot else "twoshot")
        self.worlds = pc.TRTLLM_WORLDS

    def setup(self, ctx, max_bytes):
        if "fi" not in ctx.shared:
            n = max_bytes // 2
            ctx.shared["fi"] = FiWorkspace(ctx, -(-n // pc.TRTLLM_HIDDEN), pc.TRTLLM_HIDDEN)
        self.ws = ctx.shared["fi"]
        self.buf = torch.empty(max_bytes // 2, dtype=BF16, device=ctx.dev)
        self.obuf = torch.empty_like(self.buf)

    def skip(self, nbytes, world):
        return pc.trtllm_skip(nbytes, world, self.oneshot)

    def bind(self, ctx, n):
        self.shape = pc.trtllm_shape(n, ctx.world, not self.oneshot)
        self.inp = self.buf[:n].view(*self.shape)
        self.out = self.obuf[:n].view(*self.shape)

    def call(self):
        fc = self.ws.fc
        fc.allreduce_fusion(input=self.inp, workspace=self.ws.ws, pattern=fc.AllReduceFusionPattern.kAllReduce,
                            launch_with_pdl=True, output=self.out, use_oneshot=self.oneshot, fp32_acc=True)

    def extra(self, n):
        return {"tokens": self.shape[0], "hidden": self.shape[1], "workspace": self.ws.kind}

    def close(self):
        self.buf = self.obuf = None


class FiVllm(Peer):
    name, algo, package, kind, eager = "fi-vllm", "vllm custom_all_reduce", "flashinfer", "out-of-place", False
    worlds = pc.VLLM_WORLDS

    def setup(self, ctx, max_bytes):
        import flashinfer.comm as fc
        from flashinfer.comm.cuda_ipc import cudart
        self.fc = fc
        # vLLM's layout: the Signal, then room for the two-stage kernel's partial sums.
        size = fc.vllm_meta_size() + max_bytes
        self.meta = fc.create_shared_buffer(size, group=ctx.cpu)
        cudart.cudaMemset(ctypes.c_void_p(self.meta[ctx.rank]), 0, size)
        torch.cuda.synchronize()
        ctx.barrier()
        self.rank_data = torch.empty(VLLM_RANK_DATA, dtype=torch.uint8, device=ctx.dev)
        self.fa = fc.vllm_init_custom_ar(self.meta, self.rank_data, ctx.rank, True)
        self.buf = torch.empty(max_bytes // 2, dtype=BF16, device=ctx.dev)
        self.obuf = torch.empty_like(self.buf)

    def bind(self, ctx, n):
        self.inp, self.out = self.buf[:n], self.obuf[:n]

    def call(self):
        self.fc.vllm_all_reduce(self.fa, self.inp, self.out, 0, 0, VLLM_BLOCKS)

    def register(self, ctx):
        handles, offsets = self.fc.vllm_get_graph_buffer_ipc_meta(self.fa)
        every = ctx.gather((list(handles), list(offsets)))
        self.fc.vllm_register_graph_buffers(self.fa, [h for h, _ in every], [o for _, o in every])

    def close(self):
        self.fc.vllm_dispose(self.fa)
        self.buf = self.obuf = None


def make_peers(names, push_max):
    every = [TorchNccl(), TorchSymm(False), TorchSymm(True), Sgl("push", push_max), Sgl("pull1", push_max),
             Sgl("pull2", push_max), FiTrtllm(True), FiTrtllm(False), FiVllm()]
    if not names:
        return every
    wanted = names.split(",")
    unknown = set(wanted) - {p.name for p in every}
    if unknown:
        raise SystemExit("unknown peer(s) %s; peers: %s" % (sorted(unknown), ", ".join(p.name for p in every)))
    return [p for p in every if p.name in wanted]


def versions():
    v = {"torch": torch.__version__, "nccl": ".".join(map(str, torch.cuda.nccl.version()))}
    for mod in ("sglang", "flashinfer", "tvm_ffi"):
        with contextlib.suppress(Exception):
            v[mod] = __import__(mod).__version__
    return v


# ---- bench ----

class Out:
    """Rank 0's printed table and JSON lines."""

    def __init__(self, ctx, path):
        self.ctx = ctx
        self.f = open(path, "w") if ctx.rank == 0 and path else None
        self.run = os.environ.get("PEERS_RUN") or "%s-%s" % (socket.gethostname(), time.strftime("%Y%m%dT%H%M%S"))

    def say(self, text):
        if self.ctx.rank == 0:
            print(text, flush=True)

    def row(self, peer, nbytes, us, wrong, **extra):
        if self.ctx.rank != 0:
            return
        extra = dict(call=peer.kind, package=peer.package, run=self.run, **extra)
        line = pc.row(self.ctx.world, self.ctx.gpu, peer.name, peer.algo, nbytes, us, wrong, **extra)
        if self.f:
            self.f.write(line + "\n")
            self.f.flush()
        if us is None:
            print("%12d %-11s %-40s skipped: %s" % (nbytes, peer.name, peer.algo, extra.get("skip", "")), flush=True)
        else:
            print("%12d %-11s %-40s %9.2f %8.2f %7d %9.1e" % (nbytes, peer.name, peer.algo, us,
                                                             pc.busbw_gbs(nbytes, us, self.ctx.world), wrong,
                                                             extra.get("rel_err", 0)), flush=True)


def sweep(ctx, out, peer, sizes, max_bytes):
    """Sets the peer up, then checks and times every size it takes."""
    if peer.worlds is not None and ctx.world not in peer.worlds:
        out.say("# %s: not run at world size %d (runs at %s)" % (peer.name, ctx.world, peer.worlds))
        return
    try:
        ctx.agree("setup", lambda: peer.setup(ctx, max_bytes))
    except PeerFailed as e:
        out.say("# %s: %s" % (peer.name, e))
        return
    for nbytes in sizes:
        reason = peer.skip(nbytes, ctx.world)
        if reason:
            out.row(peer, nbytes, None, None, skip=reason)
            continue
        try:
            us, wrong, rel = measure(ctx, peer, nbytes, seed=nbytes)
        except PeerFailed as e:
            out.row(peer, nbytes, None, None, skip="failed: %s" % e)
            continue
        out.row(peer, nbytes, us, wrong, rel_err=float("%.3g" % rel), **peer.extra(nbytes // 2))
    with contextlib.suppress(PeerFailed):
        ctx.agree("close", peer.close)


def bench_worker(rank, world, args, port):
    ctx = init_ranks(rank, world, port, args.timeout)
    out = Out(ctx, args.json)
    sizes = [s for s in pc.SIZES if args.min_bytes <= s <= args.max_bytes]
    out.say("# run_peers bench: %d x %s, bf16 sum, CUDA graph, %d iters x %d replays (+%d warm-up), worst rank; %s"
            % (world, ctx.gpu, pc.ITERS, pc.REPLAYS, pc.WARMUP, json.dumps(versions())))
    out.say("#%11s %-11s %-40s %9s %8s %7s %9s" % ("bytes", "peer", "call", "us", "busbw", "#wrong", "rel err"))
    for peer in make_peers(args.peers, args.sgl_push_max):
        sweep(ctx, out, peer, sizes, args.max_bytes)
    close_shared(ctx)
    dist.destroy_process_group()


def close_shared(ctx):
    if "sgl" in ctx.shared:
        with contextlib.suppress(PeerFailed):
            ctx.agree("sglang close", lambda: ctx.shared.pop("sgl").close(ctx))
    if "fi" in ctx.shared:
        with contextlib.suppress(PeerFailed):
            ctx.agree("flashinfer close", lambda: ctx.shared.pop("fi").close())


# ---- fused: all-reduce + residual add + RMSNorm ----

class FiFused(Peer):
    """FlashInfer's allreduce_fusion with residual add and RMSNorm on [tokens, hidden]; out is the norm."""
    package, kind = "flashinfer", "out-of-place"

    def __init__(self, ws, oneshot, tokens, hidden):
        self.ws, self.oneshot, self.tokens, self.hidden = ws, oneshot, tokens, hidden
        self.name = "fi-trtllm1" if oneshot else "fi-trtllm2"
        self.algo = "allreduce_fusion kARResidualRMSNorm " + ("oneshot" if oneshot else "twoshot")

    def skip(self, nbytes, world):
        if not self.oneshot and self.tokens <= world:
            return "two-shot needs tokens > world"
        if self.oneshot and nbytes * world > pc.TRTLLM_MAX_COMM:
            return "one-shot Lamport buffer caps world * bytes at %d" % pc.TRTLLM_MAX_COMM
        return None

    def bind(self, ctx, n):
        shape = (self.tokens, self.hidden)
        self.inp = torch.empty(shape, dtype=BF16, device=ctx.dev)
        # The residual and the weight are the same on every rank (each rank holds the whole hidden state).
        self.res = rank_values(n, self.seed, 1000, ctx.dev).view(shape)
        self.gamma = rank_values(self.hidden, self.seed, 1001, ctx.dev)
        self.res_out = torch.empty_like(self.inp)
        self.out = torch.empty_like(self.inp)

    def call(self):
        fc = self.ws.fc
        fc.allreduce_fusion(input=self.inp, workspace=self.ws.ws,
                            pattern=fc.AllReduceFusionPattern.kARResidualRMSNorm, launch_with_pdl=True,
                            residual_in=self.res, residual_out=self.res_out, norm_out=self.out, rms_gamma=self.gamma,
                            rms_eps=RMS_EPS, use_oneshot=self.oneshot, fp32_acc=True)

    def check(self, ctx, n, seed):
        """residual_out against the float64 sum + residual, with customar's bound; norm_out against the RMSNorm of
        that residual_out, within two bf16 roundings (the kernel may normalise its fp32 sum, not the rounded one)
        and some slack: 2^-7 of the element."""
        ref, mag = reference(ctx, n, seed)
        res = self.res.reshape(-1).double()
        bound = pc.tolerance(ctx.world) * (mag + res.abs()) + 1e-30
        w1, rel1 = count_wrong(self.res_out.reshape(-1), ref + res, bound)
        del ref, mag, res, bound
        pre = self.res_out.double()
        rms = (pre.pow(2).mean(dim=1, keepdim=True) + RMS_EPS).sqrt()
        norm = (pre / rms * self.gamma.double()).reshape(-1)
        w2, rel2 = count_wrong(self.out.reshape(-1), norm, pc.BF16_EPS * norm.abs() + 1e-6)
        rows = ctx.gather((w1 + w2, max(rel1, rel2)))
        return sum(w for w, _ in rows), max(r for _, r in rows)

    def unbind(self):
        self.inp = self.res = self.gamma = self.res_out = self.out = None

    def extra(self, n):
        return {"op": "fused_add_rmsnorm", "tokens": self.tokens, "hidden": self.hidden, "workspace": self.ws.kind}


def fused_worker(rank, world, args, port):
    ctx = init_ranks(rank, world, port, args.timeout)
    out = Out(ctx, args.json)
    out.say("# run_peers fused: %d x %s, all-reduce + residual + RMSNorm, bf16, CUDA graph, %d iters x %d replays; %s"
            % (world, ctx.gpu, pc.ITERS, pc.REPLAYS, json.dumps(versions())))
    if world not in pc.TRTLLM_WORLDS:
        out.say("# fused: FlashInfer's TensorRT-LLM kernels run at world sizes %s" % (pc.TRTLLM_WORLDS,))
        return
    try:
        ws = ctx.agree("setup", lambda: FiWorkspace(ctx, max(pc.FUSED_TOKENS), max(pc.FUSED_HIDDEN)))
    except PeerFailed as e:
        out.say("# fused: %s" % e)
        return
    for hidden in pc.FUSED_HIDDEN:
        for tokens in pc.FUSED_TOKENS:
            for oneshot in (True, False):
                fused_one(ctx, out, FiFused(ws, oneshot, tokens, hidden))
    with contextlib.suppress(PeerFailed):
        ctx.agree("close", ws.close)
    dist.destroy_process_group()


def fused_one(ctx, out, peer):
    nbytes = peer.tokens * peer.hidden * 2
    reason = peer.skip(nbytes, ctx.world)
    if reason:
        return out.row(peer, nbytes, None, None, skip=reason, **peer.extra(0))
    peer.seed = peer.tokens * 100003 + peer.hidden
    try:
        us, wrong, rel = measure(ctx, peer, nbytes, peer.seed)
    except PeerFailed as e:
        return out.row(peer, nbytes, None, None, skip="failed: %s" % e, **peer.extra(0))
    out.row(peer, nbytes, us, wrong, rel_err=float("%.3g" % rel), **peer.extra(0))


# ---- check (one GPU) ----

def step(name, fn):
    """Prints 'name: OK (detail)' or 'name: FAILED (why)'; returns whether it passed."""
    t0 = time.time()
    try:
        detail = fn()
    except Exception as e:
        traceback.print_exc()
        print("%-16s FAILED (%s)" % (name + ":", first_line(e)), flush=True)
        return False
    print("%-16s OK (%s; %.1f s)" % (name + ":", detail, time.time() - t0), flush=True)
    return True


def check_imports():
    import importlib
    for mod in ("sglang.jit_kernel.all_reduce", "flashinfer.comm"):
        importlib.import_module(mod)
    stubbed = sorted(m for m in ("pybase64", "pydantic", "IPython", "IPython.display") if m in sys.modules and
                     os.path.join(HERE, "stubs") in (getattr(sys.modules[m], "__file__", "") or ""))
    return "sglang.jit_kernel.all_reduce, flashinfer.comm; stand-ins used: %s; %s" % (
        ", ".join(stubbed) or "none", json.dumps(versions()))


def check_sgl_jit():
    from sglang.jit_kernel import all_reduce as sar
    took = []
    for world in (2, 1):
        for what, fn in (("push", sar._jit_custom_all_reduce_push_module),
                         ("pull", sar._jit_custom_all_reduce_pull_module)):
            t0 = time.time()
            fn(BF16, world)
            took.append("%s w%d %.1f s" % (what, world, time.time() - t0))
    t0 = time.time()
    sar.get_custom_all_reduce_cls()
    took.append("base %.1f s" % (time.time() - t0))
    return "bf16 modules built: " + ", ".join(took)


def check_fi_module(gen_name, module, getter):
    """FlashInfer's comm module: loaded from the carried .so when there is one, else compiled here."""
    def run():
        import importlib
        import flashinfer.jit.comm as jc
        spec = getattr(jc, gen_name)()
        how = "carried %s" % spec.aot_path if spec.is_aot else "compiled into %s" % spec.jit_library_path
        getattr(importlib.import_module(module), getter)()
        return "loaded (%s)" % how
    return run


def check_world1(ctx, peer, sizes):
    def run():
        ctx.agree("setup", lambda: peer.setup(ctx, max(sizes)))
        parts = []
        for nbytes in sizes:
            us, wrong, rel = measure(ctx, peer, nbytes, seed=nbytes)
            if wrong:
                raise RuntimeError("%s: %d wrong elements (rel err %.2e)" % (pc.human(nbytes), wrong, rel))
            parts.append("%s %.2f us" % (pc.human(nbytes), us))
        ctx.agree("close", peer.close)
        return "world 1, checked and timed: " + ", ".join(parts)
    return run


def check_fi_workspace(ctx):
    ws = FiWorkspace(ctx, 16, pc.TRTLLM_HIDDEN)
    ws.close()
    return "TensorRT-LLM workspace made at world 1 on %s; its kernels run at world sizes %s, fi-vllm's at %s" % (
        ws.kind, pc.TRTLLM_WORLDS, pc.VLLM_WORLDS)


def check_main(args):
    print("# run_peers check: one GPU (%s), torch %s; multicast off: NCCL_NVLS_ENABLE=%s "
          "TORCH_SYMM_MEM_DISABLE_MULTICAST=%s NVSHMEM_DISABLE_NVLS=%s" % (
              torch.cuda.get_device_name(0), torch.__version__, os.environ["NCCL_NVLS_ENABLE"],
              os.environ["TORCH_SYMM_MEM_DISABLE_MULTICAST"], os.environ["NVSHMEM_DISABLE_NVLS"]), flush=True)
    ok = step("imports", check_imports)
    ok &= step("sgl-jit", check_sgl_jit)
    ok &= step("fi-trtllm_comm", check_fi_module("gen_trtllm_comm_module", "flashinfer.comm.trtllm_ar",
                                                 "get_trtllm_comm_module"))
    ok &= step("fi-vllm_comm", check_fi_module("gen_vllm_comm_module", "flashinfer.comm.vllm_ar",
                                               "get_vllm_comm_module"))
    ctx = init_ranks(0, 1, free_port(), args.timeout)
    sizes = [1 << 10, 1 << 20, 16 << 20]
    for peer in make_peers(None, 16 << 20):
        if peer.worlds is not None and 1 not in peer.worlds:
            continue
        ok &= step(peer.name, check_world1(ctx, peer, sizes))
    ok &= step("fi-workspace", lambda: check_fi_workspace(ctx))
    close_shared(ctx)
    dist.destroy_process_group()
    print("check: %s" % ("every step OK" if ok else "some steps FAILED"), flush=True)
    return 0 if ok else 1


# ---- build ----

def build_main(args):
    """Builds FlashInfer's trtllm_comm and vllm_comm from source and copies each .so into DIR."""
    if not torch.cuda.is_available():
        os.environ.setdefault("FLASHINFER_CUDA_ARCH_LIST", args.arch)  # read when flashinfer is imported
    import flashinfer.jit.comm as jc
    os.makedirs(args.dir, exist_ok=True)
    for gen in (jc.gen_vllm_comm_module, jc.gen_trtllm_comm_module):
        spec = gen()
        t0 = time.time()
        spec.build()
        dst = os.path.join(args.dir, spec.name + ".so")
        shutil.copyfile(spec.jit_library_path, dst)
        print("%s: built in %.0f s, %d bytes -> %s" % (spec.name, time.time() - t0, os.path.getsize(dst), dst),
              flush=True)
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    c = sub.add_parser("check", help="one GPU: imports, builds, what runs at world size 1")
    b = sub.add_parser("build", help="build FlashInfer's comm modules and copy the .so files to DIR")
    b.add_argument("dir")
    b.add_argument("--arch", default="9.0a", help="target when no GPU is visible (default 9.0a: H100/H200)")
    for name in ("bench", "fused"):
        q = sub.add_parser(name)
        q.add_argument("-g", "--gpus", type=int, required=True)
        q.add_argument("-J", "--json", help="JSON lines for tools/compare_peers.py")
        q.add_argument("--timeout", type=int, default=300, help="seconds a collective may wait (default 300)")
        if name == "bench":
            q.add_argument("-b", "--min-bytes", type=pc.parse_bytes, default=1 << 10)
            q.add_argument("-e", "--max-bytes", type=pc.parse_bytes, default=256 << 20)
            q.add_argument("--peers", help="comma-separated subset of the peers")
            q.add_argument("--sgl-push-max", type=pc.parse_bytes, default=16 << 20,
                           help="SGLang push buffer per rank slot (default 16M); pushes above it are skipped")
    c.add_argument("--timeout", type=int, default=300)
    args = p.parse_args()
    if args.mode == "check":
        return check_main(args)
    if args.mode == "build":
        return build_main(args)
    if args.gpus > torch.cuda.device_count():
        raise SystemExit("-g %d: only %d GPUs visible" % (args.gpus, torch.cuda.device_count()))
    worker = bench_worker if args.mode == "bench" else fused_worker
    mp.spawn(worker, args=(args.gpus, args, free_port()), nprocs=args.gpus, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
