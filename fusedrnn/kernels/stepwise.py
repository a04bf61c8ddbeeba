"""The stepwise strategy: per time step one cuBLAS GEMM for h @ W_hh^T plus one fused pointwise kernel.

Written once for every cell: a cell contributes its two pointwise kernels (`CellKernels`), this file
drives them. Forward, per step s:  hg = h @ W_hh^T + b_hh  (GEMM), then the cell's kernel reads gx at
each row's own time, updates the state in place, writes y and saves its activations. Backward runs the
steps in reverse: the cell's kernel turns the incoming gradient into gate gradients dgx (and dhg, the
part that went through the recurrent GEMM), then one GEMM dhg_s @ W_hh carries it to the step before.
Everything that is not sequential happens once after the loop as large GEMMs: dW_hh here, dW_ih, db_ih
and dx by autograd through the input projection that the caller did with F.linear.

States are updated in place: each element is read and written by the same program, and the GEMM of the
next step runs after the kernel on the same stream.
"""

import os
from dataclasses import dataclass
from typing import Any

import torch
import triton
import triton.language as tl


@dataclass(frozen=True)
class CellKernels:
    """What a recurrent cell gives the stepwise driver. Both kernels share one signature for all cells."""

    name: str
    gates: int  # gate blocks of H in gx and hg (LSTM 4, GRU 3)
    saved_blocks: int  # blocks of H saved per time step for backward
    has_cell_state: bool  # LSTM carries c beside h
    recurrent_grad_is_input_grad: bool  # dhg == dgx (LSTM); a GRU's n gate differs
    forward_step: Any
    backward_step: Any


def _new_empty(like: torch.Tensor, *shape: int) -> torch.Tensor:
    """Uninitialised buffer; filled with NaN under FUSEDRNN_POISON=1 (tests), so that an element a kernel
    forgets to write shows up as NaN instead of passing by luck."""
    if os.environ.get("FUSEDRNN_POISON") == "1":
        return like.new_full(shape, float("nan"))
    return like.new_empty(shape)


def _compute_dtype(dtype: torch.dtype) -> tuple[torch.dtype, Any]:
    """fp32 arithmetic for every storage type, except float64 stays float64 (for gradcheck)."""
    return (torch.float64, tl.float64) if dtype == torch.float64 else (torch.float32, tl.float32)


def _blocks(B: int, H: int) -> tuple[tuple[int, int], dict]:
    block_h = min(triton.next_power_of_2(H), 256)
    block_b = max(1, min(triton.next_power_of_2(B), 2048 // block_h))
    grid = (triton.cdiv(B, block_b), triton.cdiv(H, block_h))
    return grid, dict(BLOCK_B=block_b, BLOCK_H=block_h, num_warps=4)


class StepwiseRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernels: CellKernels, reverse: bool, store_acts: bool, lengths, gx, w_hh, b_hh, *initial):
        T, B, _ = gx.shape
        H = w_hh.shape[1]
        dtype = gx.dtype
        compute, tl_compute = _compute_dtype(dtype)
        has_init = any(s is not None for s in initial)
        h0 = initial[0] if initial[0] is not None else gx.new_zeros(B, H)
        h = h0.clone()
        if kernels.has_cell_state:
            c0 = initial[1] if initial[1] is not None else gx.new_zeros(B, H)
            c = c0.to(compute, copy=True)
        else:
            c0, c = h0, h  # unused by a cell without a cell state
        y = _new_empty(gx, T, B, H)
        acts = _new_empty(gx, T, B, kernels.saved_blocks * H) if store_acts else y
        hg = _new_empty(gx, B, kernels.gates * H)
        w_hh_t = w_hh.t()
        grid, meta = _blocks(B, H)
        for step in range(T):
            if b_hh is not None:
                torch.addmm(b_hh, h, w_hh_t, out=hg)
            else:
                torch.mm(h, w_hh_t, out=hg)
            if B:
                kernels.forward_step[grid](
                    gx, hg, h, c, y, acts, lengths if lengths is not None else y, step, T, B, H,
                    HAS_LENGTHS=lengths is not None, REVERSE=reverse, STORE_ACTS=store_acts,
                    COMPUTE=tl_compute, **meta,
                )
        ctx.kernels, ctx.reverse, ctx.has_init, ctx.has_bias = kernels, reverse, has_init, b_hh is not None
        ctx.save_for_backward(acts, y, w_hh, lengths, h0, c0)
        if kernels.has_cell_state:
            return y, h, c.to(dtype)
        return y, h

    @staticmethod
    def backward(ctx, dy, *dfinal):
        acts, y, w_hh, lengths, h0, c0 = ctx.saved_tensors
        kernels, reverse = ctx.kernels, ctx.reverse
        T, B, H = y.shape
        GH = kernels.gates * H
        compute, tl_compute = _compute_dtype(y.dtype)
        dy = dy.contiguous()
        dh = dfinal[0].to(compute, copy=True)
        dc = dfinal[1].to(compute, copy=True) if kernels.has_cell_state else dh
        dh_rec = y.new_zeros(B, H)
        dgx = _new_empty(y, T, B, GH)
        dhg = dgx if kernels.recurrent_grad_is_input_grad else _new_empty(y, T, B, GH)
        # Rows sit at different times only in the reverse direction of a variable-length batch; then
        # the kernel also writes this step's dhg into a contiguous buffer for the GEMM.
        write_step = reverse and lengths is not None
        dstep = _new_empty(y, B, GH) if write_step else dgx
        grid, meta = _blocks(B, H)
        for step in reversed(range(T)):
            if B:
                kernels.backward_step[grid](
                    acts, y, h0, c0, dy, dh_rec, dh, dc, dgx, dhg, dstep,
                    lengths if lengths is not None else y, step, T, B, H,
                    HAS_INIT=ctx.has_init, HAS_LENGTHS=lengths is not None, REVERSE=reverse,
                    WRITE_STEP=write_step, COMPUTE=tl_compute, **meta,
                )
            step_grad = dstep if write_step else dhg[T - 1 - step if reverse else step]
            torch.mm(step_grad, w_hh, out=dh_rec)

        # dW_hh = sum_t dhg_t^T h_{t-1}. h_{t-1} is y at the previous time (zero in padding, where dhg
        # is zero too); each row's first step uses h0, and step_grad now holds that first step.
        d_w_hh = None
        if ctx.needs_input_grad[5]:
            if T > 1:
                later, earlier = (dhg[:-1], y[1:]) if reverse else (dhg[1:], y[:-1])
                d_w_hh = later.reshape(-1, GH).t() @ earlier.reshape(-1, H)
            else:
                d_w_hh = w_hh.new_zeros(w_hh.shape)
            if ctx.has_init:
                d_w_hh = d_w_hh + step_grad.t() @ h0
        d_b_hh = dhg.sum((0, 1)) if ctx.has_bias and ctx.needs_input_grad[6] else None
        d_h0 = (dh + dh_rec.to(compute)).to(y.dtype)
        d_initial = (d_h0, dc.to(y.dtype)) if kernels.has_cell_state else (d_h0,)
        d_initial = tuple(g if needed else None for g, needed in zip(d_initial, ctx.needs_input_grad[7:]))
        return None, None, None, None, dgx, d_w_hh, d_b_hh, *d_initial


def recurrence(
    kernels: CellKernels,
    gx: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor | None,
    initial: tuple[torch.Tensor | None, ...],
    lengths: torch.Tensor | None,
    reverse: bool,
) -> tuple[torch.Tensor, ...]:
    """Differentiable stepwise recurrence of one direction; returns (y, *final_states).

    Weights and states are cast to gx's dtype (so autocast works); kernels get contiguous tensors.
    """
    dtype = gx.dtype
    gx = gx.contiguous()
    w_hh = w_hh.to(dtype).contiguous()
    b_hh = b_hh.to(dtype).contiguous() if b_hh is not None else None
    initial = tuple(s.to(dtype).contiguous() if s is not None else None for s in initial)
    if lengths is not None:
        lengths = lengths.to(device=gx.device, dtype=torch.int32).contiguous()
    # Save activations for backward only when one will run: under no_grad (inference) the Function still
    # sees inputs that require grad, so grad mode is read here, outside it.
    tensors = (gx, w_hh, b_hh, *initial)
    store_acts = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    return StepwiseRecurrence.apply(kernels, reverse, store_acts, lengths, *tensors)
