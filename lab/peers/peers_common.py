"""What run_peers.py decides without a GPU (no torch here, so that it can be tested on any machine).

Timing follows customar-perf (customar_perf.cpp and its graph_timing.h): a CUDA graph of ITERS back-to-back
calls, WARMUP replays, then REPLAYS replays queued back to back after one host barrier; the median per call over
the replays, then the worst rank. Rows are JSON lines with customar-perf's keys, so tools/compare_peers.py reads both.
"""
import json

ITERS, WARMUP, REPLAYS = 20, 2, 7
SIZES = [1 << k for k in range(10, 29)]  # 1 KiB .. 256 MiB
FUSED_TOKENS = (1, 8, 32, 128, 512, 2048)
FUSED_HIDDEN = (4096, 8192)
BF16_EPS = 1.0 / (1 << 7)
# FlashInfer's TensorRT-LLM kernels: one hidden size for the plain all-reduce (a row of a 4096-wide model), the
# world sizes they are compiled for, and the Lamport exchange's byte cap (MAX_COMM_SIZE in
# flashinfer/comm/trtllm_ar.py).
TRTLLM_HIDDEN = 4096
TRTLLM_WORLDS = (2, 4, 8, 16)
TRTLLM_MAX_COMM = 2147483647 & ~((1 << 21) - 1)
VLLM_WORLDS = (2, 4, 6, 8)


def tolerance(world):
    """customar's per-element bound (check_kernels.cu, tolerance()): |got - ref| <= world * eps(bf16) * sum |x_r|."""
    return world * BF16_EPS


def median_us(elapsed_ms, iters):
    """Median per-call time in microseconds over replays that each ran `iters` calls (customar's time_rounds)."""
    per_call = sorted(ms * 1000.0 / iters for ms in elapsed_ms)
    return per_call[len(per_call) // 2]


def busbw_gbs(nbytes, us, world):
    """nccl-tests' bus bandwidth of an all-reduce: algbw * 2(n-1)/n, in GB/s."""
    return nbytes / (us * 1e-6) / 1e9 * 2.0 * (world - 1) / world


def trtllm_shape(n, world, twoshot):
    """(tokens, hidden) for n bf16 elements on FlashInfer's TensorRT-LLM kernels, or None where they cannot run.

    Rows of TRTLLM_HIDDEN elements (fewer when the message is smaller). The two-shot kernel splits tokens over the
    ranks and asserts tokens > world, and its blocks need hidden / 8 >= world threads, so it halves the row until
    both hold; 16-byte vectors need hidden % 8 == 0."""
    hidden = min(TRTLLM_HIDDEN, n)
    if twoshot:
        while hidden // 2 >= 8 * world and n // hidden <= world:
            hidden //= 2
        if n // hidden <= world or hidden < 8 * world:
            return None
    if hidden % 8 or n % hidden:
        return None
    return n // hidden, hidden


def trtllm_skip(nbytes, world, oneshot):
    """Why FlashInfer's TensorRT-LLM all-reduce does not run at this size and world size, or None."""
    if world not in TRTLLM_WORLDS:
        return "compiled for world sizes %s only" % (TRTLLM_WORLDS,)
    if oneshot and nbytes * world > TRTLLM_MAX_COMM:
        return "one-shot Lamport buffer caps world * bytes at %d" % TRTLLM_MAX_COMM
    if trtllm_shape(nbytes // 2, world, not oneshot) is None:
        return "no [tokens, hidden] shape with tokens > world and hidden >= 8 * world"
    return None


def row(world, gpu, backend, algo, nbytes, us, wrong, **extra):
    """One JSON line with customar-perf's keys first (oop_us is the peer's call, in place or not: see `call`)."""
    r = {"world": world, "gpu": gpu, "dtype": "bf16", "backend": backend, "algo": algo, "bytes": nbytes,
         "graph": True, "oop_us": None if us is None else round(us, 3), "ip_us": None,
         "busbw_gbs": None if us is None else round(busbw_gbs(nbytes, us, world), 3), "wrong": wrong}
    r.update(extra)
    return json.dumps(r)


def human(nbytes):
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift and nbytes % (1 << shift) == 0:
            return "%d %s" % (nbytes >> shift, unit)
    return "%d B" % nbytes


def parse_bytes(text):
    """'1K', '4M', '256M', '1G' or a plain number of bytes."""
    text = text.strip().upper().rstrip("B").rstrip("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)
