"""customar's operations as torch.library custom ops, so that torch.compile(fullgraph=True) traces them without a
graph break and CUDA graphs capture them. Importing this module registers them (it needs torch); a Communicator
built once torch is imported registers them too.

    torch.ops.customar.all_reduce(x, comm.handle) -> Tensor                  # a new tensor of x's layout
    torch.ops.customar.all_reduce_inplace(x, comm.handle) -> ()              # x becomes the sum
    torch.ops.customar.all_reduce_out(x, out, comm.handle) -> ()             # out (x's layout) becomes the sum
    torch.ops.customar.all_reduce_add_rmsnorm(x, residual, gamma, eps, comm.handle, fp8_scale=None)
        -> (norm_out, residual_out)                                          # new tensors
    torch.ops.customar.all_reduce_add_rmsnorm_inplace(x, residual, gamma, norm_out, eps, comm.handle,
        fp8_scale=None) -> ()                                                # residual updated, norm_out written

Communicator.torch_all_reduce() and Communicator.all_reduce_add_rmsnorm() call them. The fused call is
residual_out = residual + (x summed over ranks), norm_out = residual_out * rsqrt(mean(residual_out**2) + eps) * gamma
over each row of x ([tokens, hidden], float16 or bfloat16; gamma [hidden]); with fp8_scale (a 1-element float32 CUDA
tensor, read on the device so that graphs stay valid) norm_out is float8_e4m3fn, quantised with that per-tensor scale.
Both ops declare x mutated: where the call all-reduces before a separate norm kernel it sums into x, so x's contents
are unspecified afterwards (torch.compile copies x first where the program still reads it).

The communicator travels as an int (Communicator.handle), looked up at run time in the registry of live
communicators, which close() clears. Under torch.compile the handle is a constant of the graph: a function compiled
for several communicators (the ranks of a virtual world) is compiled once for each, so raise
torch._dynamo.config.cache_size_limit to at least their number. Each op runs on torch's current stream (in a CUDA
graph capture, the capture stream). No autograd formula is registered: the ops are for inference.
"""
from __future__ import annotations

from typing import Optional

import torch

from . import InvalidArgument, _live_communicator

Tensor = torch.Tensor

_LIB = torch.library.Library("customar", "FRAGMENT")  # noqa: TOR901  (FRAGMENT: a namespace of our own)
_register_fake = getattr(torch.library, "register_fake", None) or torch.library.impl_abstract
# The fused kernel reads whole [tokens, hidden] rows: inductor must hand it the strides the caller gave.
_FIXED_STRIDES = (torch.Tag.needs_fixed_stride_order,) if hasattr(torch.Tag, "needs_fixed_stride_order") else ()

SCHEMAS = {
    "all_reduce": ("all_reduce(Tensor input, int comm) -> Tensor", ()),
    "all_reduce_inplace": ("all_reduce_inplace(Tensor(a!) input, int comm) -> ()", ()),
    "all_reduce_out": ("all_reduce_out(Tensor input, Tensor(a!) out, int comm) -> ()", ()),
    "all_reduce_add_rmsnorm": (
        "all_reduce_add_rmsnorm(Tensor(a!) input, Tensor residual, Tensor gamma, float eps, int comm, "
        "Tensor? fp8_scale=None) -> (Tensor, Tensor)", _FIXED_STRIDES),
    "all_reduce_add_rmsnorm_inplace": (
        "all_reduce_add_rmsnorm_inplace(Tensor(c!) input, Tensor(a!) residual, Tensor gamma, Tensor(b!) norm_out, "
        "float eps, int comm, Tensor? fp8_scale=None) -> ()", _FIXED_STRIDES),
}


def _define(name: str, real, fake) -> None:
    schema, tags = SCHEMAS[name]
    _LIB.define(schema, tags=tags)
    # CPU too, so that a CPU tensor gets customar's own error ("not a CUDA tensor") rather than a missing kernel.
    for key in ("CUDA", "CPU"):
        _LIB.impl(name, real, key)
    _register_fake(f"customar::{name}", fake, lib=_LIB)


# ---- all_reduce -----------------------------------------------------------------------------------------------------

def _all_reduce(input: Tensor, comm: int) -> Tensor:
    out = torch.empty_like(input)  # the input's strides for a dense input, as the fake gives
    _live_communicator(comm).all_reduce(input, out=out)
    return out


def _all_reduce_fake(input: Tensor, comm: int) -> Tensor:
    return torch.empty_like(input)


def _all_reduce_inplace(input: Tensor, comm: int) -> None:
    _live_communicator(comm).all_reduce(input, out=input)


def _all_reduce_out(input: Tensor, out: Tensor, comm: int) -> None:
    _live_communicator(comm).all_reduce(input, out=out)


def _check_out(input: Tensor, out: Tensor) -> None:
    if out.dtype != input.dtype or out.shape != input.shape:
        raise InvalidArgument(f"all_reduce_out: out is {out.dtype} {tuple(out.shape)} but the input "
                              f"{input.dtype} {tuple(input.shape)}; they must match")


def _all_reduce_inplace_fake(input: Tensor, comm: int) -> None:
    return None


def _all_reduce_out_fake(input: Tensor, out: Tensor, comm: int) -> None:
    _check_out(input, out)


_define("all_reduce", _all_reduce, _all_reduce_fake)
_define("all_reduce_inplace", _all_reduce_inplace, _all_reduce_inplace_fake)
_define("all_reduce_out", _all_reduce_out, _all_reduce_out_fake)


# ---- all_reduce_add_rmsnorm ---------------------------------------------------------------------------------------

FUSED_DTYPES = (torch.float16, torch.bfloat16)


def _norm_dtype(input: Tensor, fp8_scale: Optional[Tensor]) -> torch.dtype:
    return input.dtype if fp8_scale is None else torch.float8_e4m3fn


def check_fused(input: Tensor, residual: Tensor, gamma: Tensor, fp8_scale: Optional[Tensor],
                norm_out: Optional[Tensor] = None) -> None:
    """The shapes and dtypes the fused call takes (checked at trace time by the fake implementation too); the binding
    checks devices and layouts."""
    what = "all_reduce_add_rmsnorm"
    if input.dim() != 2 or input.dtype not in FUSED_DTYPES:
        raise InvalidArgument(f"{what}: input must be [tokens, hidden] float16 or bfloat16, got {input.dtype} "
                              f"{tuple(input.shape)}")
    if residual.shape != input.shape or residual.dtype != input.dtype:
        raise InvalidArgument(f"{what}: residual must be the input's shape and dtype ({input.dtype} "
                              f"{tuple(input.shape)}), got {residual.dtype} {tuple(residual.shape)}")
    if gamma.shape != input.shape[1:]:
        raise InvalidArgument(f"{what}: gamma must be [hidden] = {tuple(input.shape[1:])}, got {tuple(gamma.shape)}")
    if fp8_scale is not None and (fp8_scale.numel() != 1 or fp8_scale.dtype != torch.float32):
        raise InvalidArgument(f"{what}: fp8_scale must be a 1-element float32 tensor, got {fp8_scale.dtype} "
                              f"{tuple(fp8_scale.shape)}")
    want = _norm_dtype(input, fp8_scale)
    if norm_out is not None and (norm_out.shape != input.shape or norm_out.dtype != want):
        raise InvalidArgument(f"{what}: norm_out must be {want} {tuple(input.shape)}"
                              f"{' (fp8_scale is given)' if fp8_scale is not None else ''}, got {norm_out.dtype} "
                              f"{tuple(norm_out.shape)}")


def _fused_outputs(input: Tensor, residual: Tensor, gamma: Tensor,
                   fp8_scale: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    check_fused(input, residual, gamma, fp8_scale)
    return torch.empty_like(input, dtype=_norm_dtype(input, fp8_scale)), torch.empty_like(residual)


def _all_reduce_add_rmsnorm(input: Tensor, residual: Tensor, gamma: Tensor, eps: float, comm: int,
                            fp8_scale: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    norm_out, residual_out = _fused_outputs(input, residual, gamma, fp8_scale)
    _live_communicator(comm)._all_reduce_add_rmsnorm(input, residual, residual_out, gamma, norm_out, eps, fp8_scale)
    return norm_out, residual_out


def _all_reduce_add_rmsnorm_fake(input: Tensor, residual: Tensor, gamma: Tensor, eps: float, comm: int,
                                 fp8_scale: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    return _fused_outputs(input, residual, gamma, fp8_scale)


def _all_reduce_add_rmsnorm_inplace(input: Tensor, residual: Tensor, gamma: Tensor, norm_out: Tensor, eps: float,
                                    comm: int, fp8_scale: Optional[Tensor] = None) -> None:
    check_fused(input, residual, gamma, fp8_scale, norm_out)
    _live_communicator(comm)._all_reduce_add_rmsnorm(input, residual, residual, gamma, norm_out, eps, fp8_scale)


def _all_reduce_add_rmsnorm_inplace_fake(input: Tensor, residual: Tensor, gamma: Tensor, norm_out: Tensor,
                                         eps: float, comm: int, fp8_scale: Optional[Tensor] = None) -> None:
    check_fused(input, residual, gamma, fp8_scale, norm_out)


_define("all_reduce_add_rmsnorm", _all_reduce_add_rmsnorm, _all_reduce_add_rmsnorm_fake)
_define("all_reduce_add_rmsnorm_inplace", _all_reduce_add_rmsnorm_inplace, _all_reduce_add_rmsnorm_inplace_fake)


# ---- what the Communicator's methods call (traced by torch.compile: torch calls only) ------------------------------

def all_reduce(tensor: Tensor, handle: int, out: Optional[Tensor]) -> Tensor:
    if out is None:
        return torch.ops.customar.all_reduce(tensor, handle)
    if out is tensor:
        torch.ops.customar.all_reduce_inplace(tensor, handle)
    else:
        torch.ops.customar.all_reduce_out(tensor, out, handle)
    return out


def all_reduce_add_rmsnorm(input: Tensor, residual: Tensor, gamma: Tensor, eps: float, handle: int,
                           fp8_scale: Optional[Tensor], norm_out: Optional[Tensor],
                           in_place: bool) -> tuple[Tensor, Tensor]:
    if not in_place:
        if norm_out is not None:
            raise InvalidArgument("all_reduce_add_rmsnorm: norm_out is taken with in_place=True only (without it "
                                  "both outputs are new tensors)")
        return torch.ops.customar.all_reduce_add_rmsnorm(input, residual, gamma, eps, handle, fp8_scale)
    if norm_out is None:
        norm_out = torch.empty_like(input, dtype=_norm_dtype(input, fp8_scale))
    torch.ops.customar.all_reduce_add_rmsnorm_inplace(input, residual, gamma, norm_out, eps, handle, fp8_scale)
    return norm_out, residual
