"""The per-step strategies: one launch sequence per time step, driven from Python.

stepwise (default): per step one cuBLAS GEMM for h @ W_hh^T plus one fused pointwise kernel.
fusedstep (opt-in, `backend="triton-fusedstep"`): the same kernel computes its tile of h @ W_hh^T
itself (GEMM_IN_KERNEL), so a step is one launch and hg never goes through memory.

Written once for every cell: a cell contributes its two step kernels (`CellKernels`), this file drives
them. Forward, per step s: the cell's kernel takes hg = h @ W_hh^T + b_hh, reads gx at each row's own
time, updates the state, writes y and saves its activations. Backward runs the steps in reverse: the
cell's kernel turns the incoming gradient into gate gradients dgx (and dhg, the part that went through
the recurrent GEMM); dhg_s @ W_hh carries it to the step before (a GEMM after the kernel, or inside the
next kernel). Everything that is not sequential happens once after the loop as large GEMMs: dW_hh here,
dW_ih, db_ih and dx by autograd through the input projection that the caller did with F.linear.

In the stepwise strategy states are updated in place: each element is read and written by the same
program, and the GEMM of the next step runs after the kernel on the same stream. With the GEMM in the
kernel every program reads the whole previous state, so h (and the backward's step gradient) alternate
between two buffers.
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


def _dot_precision(dtype: torch.dtype, allow_tf32: bool) -> str:
    """The in-kernel GEMM's products: TF32 tensor cores for float32 when allowed, else exact-rounded."""
    return "tf32" if dtype == torch.float32 and allow_tf32 else "ieee"


def _blocks(B: int, H: int, dtype: torch.dtype, gemm_in_kernel: bool, allow_tf32: bool) -> tuple[tuple[int, int], dict]:
    """The launch grid and the kernels' tile and precision parameters for this shape and strategy."""
    if gemm_in_kernel:
        # tl.dot needs every tile side >= 16. Small tiles give more programs (64 at B=64, H=512) for a
        # GEMM that is latency-bound; each re-reads its slice of W_hh from L2. To be tuned on a GPU.
        block_h = 32 if H > 16 else 16
        block_b = 16
        block_k = 64 if dtype.itemsize == 2 else 32
    else:
        block_h = min(triton.next_power_of_2(H), 256)
        block_b = max(1, min(triton.next_power_of_2(B), 2048 // block_h))
        block_k = 16  # unused
    grid = (triton.cdiv(B, block_b), triton.cdiv(H, block_h))
    return grid, dict(BLOCK_B=block_b, BLOCK_H=block_h, BLOCK_K=block_k,
                      DOT_PRECISION=_dot_precision(dtype, allow_tf32), num_warps=4)


# FUSEDRNN_DIRECT_LAUNCH=1 turns on StepLauncher's direct launches. Opt-in until a GPU run has checked
# them (tests/test_gpu.py runs the layers both ways); off, every launch goes through Triton's JIT.
DIRECT_LAUNCH = os.environ.get("FUSEDRNN_DIRECT_LAUNCH", "0") == "1"


class StepLauncher:
    """Launches one step kernel many times with the same grid and compile-time parameters.

    Triton's `kernel[grid](...)` binds and specialises every argument on every call: tens of µs on the
    host, more than a step's GPU time at common sizes (benchmarks/NOTES.md). The first launch goes through
    it and keeps the compiled kernel; later launches call that kernel directly. That is sound because
    nothing Triton specialises on changes between launches: the caller passes the same tensors and sizes
    every time except at the positions in `varying` (and `step`, which the kernels never specialise), and
    for those the 16-byte alignment each compiled kernel assumed is checked at every launch, a new one
    going through Triton once. Under the interpreter there is no compiled kernel and every launch goes
    through Triton, as every launch does while DIRECT_LAUNCH is off.
    """

    def __init__(self, kernel, grid: tuple[int, ...], constexprs: dict, varying: tuple[int, ...]):
        self.kernel, self.grid, self.constexprs, self.varying = kernel, grid, constexprs, varying
        self.direct = {}  # alignment of the varying tensors -> the compiled kernel's launcher
        self.tail = ()  # the compile-time parameters, which the compiled kernel takes positionally after the rest

    def __call__(self, *args) -> None:
        alignment = tuple(args[i].data_ptr() % 16 == 0 for i in self.varying)
        launcher = self.direct.get(alignment)
        if launcher is not None:
            launcher(*args, *self.tail)
            return
        compiled = self.kernel[self.grid](*args, **self.constexprs)
        if DIRECT_LAUNCH and hasattr(compiled, "function"):  # a CompiledKernel: not under the interpreter
            self.tail = tuple(self.constexprs[name] for name in self.kernel.arg_names[len(args):])
            self.direct[alignment] = compiled[self.grid]


class StepwiseRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, kernels: CellKernels, reverse: bool, store_acts: bool, gemm_in_kernel: bool, allow_tf32: bool,
                lengths, gx, w_hh, b_hh, *initial):
        T, B, _ = gx.shape
        H = w_hh.shape[1]
        dtype = gx.dtype
        compute, tl_compute = _compute_dtype(dtype)
        has_init = any(s is not None for s in initial)
        h0 = initial[0] if initial[0] is not None else gx.new_zeros(B, H)
        h_bufs = (h0.clone(), _new_empty(h0, B, H)) if gemm_in_kernel else (h0.clone(),) * 2
        if kernels.has_cell_state:
            c0 = initial[1] if initial[1] is not None else gx.new_zeros(B, H)
            c = c0.to(compute, copy=True)
        else:
            c0, c = h0, h0  # unused by a cell without a cell state
        y = _new_empty(gx, T, B, H)
        acts = _new_empty(gx, T, B, kernels.saved_blocks * H) if store_acts else y
        hg = y if gemm_in_kernel else _new_empty(gx, B, kernels.gates * H)  # hg unused with the GEMM in the kernel
        w_hh_t = w_hh.t()
        grid, meta = _blocks(B, H, dtype, gemm_in_kernel, allow_tf32)
        launch = StepLauncher(kernels.forward_step, grid, dict(
            HAS_LENGTHS=lengths is not None, REVERSE=reverse, STORE_ACTS=store_acts, GEMM_IN_KERNEL=gemm_in_kernel,
            HAS_BIAS=b_hh is not None, COMPUTE=tl_compute, **meta,
        ), varying=(4, 5))  # h_in, h_out
        bias = b_hh if b_hh is not None else w_hh  # stand-ins for absent tensors are never read
        lengths_arg = lengths if lengths is not None else y
        for step in range(T):
            h_in, h_out = h_bufs[step % 2], h_bufs[(step + 1) % 2]
            if not gemm_in_kernel:
                if b_hh is not None:
                    torch.addmm(b_hh, h_in, w_hh_t, out=hg)
                else:
                    torch.mm(h_in, w_hh_t, out=hg)
            if B:
                launch(gx, hg, w_hh, bias, h_in, h_out, c, y, acts, lengths_arg, step, T, B, H)
        ctx.kernels, ctx.reverse, ctx.has_init, ctx.has_bias = kernels, reverse, has_init, b_hh is not None
        ctx.gemm_in_kernel, ctx.allow_tf32 = gemm_in_kernel, allow_tf32
        ctx.save_for_backward(acts, y, w_hh, lengths, h0, c0)
        h = h_bufs[T % 2]
        if kernels.has_cell_state:
            return y, h, c.to(dtype)
        return y, h

    @staticmethod
    def backward(ctx, dy, *dfinal):
        acts, y, w_hh, lengths, h0, c0 = ctx.saved_tensors
        kernels, reverse, gemm_in_kernel = ctx.kernels, ctx.reverse, ctx.gemm_in_kernel
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
        # the kernel also writes this step's dhg into a contiguous buffer for the GEMM (two of them when
        # the next kernel reads one while writing the other).
        write_step = reverse and lengths is not None
        if write_step:
            dstep = _new_empty(y, B, GH)
            dsteps = (dstep, _new_empty(y, B, GH) if gemm_in_kernel else dstep)
        else:
            dsteps = (dgx, dgx)  # not written
        grid, meta = _blocks(B, H, y.dtype, gemm_in_kernel, ctx.allow_tf32)
        launch = StepLauncher(kernels.backward_step, grid, dict(
            HAS_INIT=ctx.has_init, HAS_LENGTHS=lengths is not None, REVERSE=reverse, WRITE_STEP=write_step,
            GEMM_IN_KERNEL=gemm_in_kernel, COMPUTE=tl_compute, **meta,
        ), varying=(6, 12))  # the later step's gradients, this step's dstep buffer
        lengths_arg = lengths if lengths is not None else y

        def step_grad(k: int, step: int) -> torch.Tensor:
            """The (B, GH) gradient of the recurrent pre-activations at the k-th step processed."""
            return dsteps[k % 2] if write_step else dhg[T - 1 - step if reverse else step]

        for k, step in enumerate(reversed(range(T))):
            # With the GEMM in the kernel, the kernel reads the gate gradients of the step processed before.
            later_grad = step_grad(k - 1, step + 1) if gemm_in_kernel and k else dh_rec
            if B:
                launch(acts, y, h0, c0, dy, dh_rec, later_grad, w_hh, dh, dc, dgx, dhg, dsteps[k % 2], lengths_arg,
                       step, T, B, H)
            if not gemm_in_kernel:
                torch.mm(step_grad(k, step), w_hh, out=dh_rec)
        first = step_grad(T - 1, 0)  # the gate gradients of each row's first step
        if gemm_in_kernel:
            torch.mm(first, w_hh, out=dh_rec)

        # dW_hh = sum_t dhg_t^T h_{t-1}. h_{t-1} is y at the previous time (zero in padding, where dhg
        # is zero too); each row's first step uses h0.
        d_w_hh = None
        if ctx.needs_input_grad[7]:
            if T > 1:
                later, earlier = (dhg[:-1], y[1:]) if reverse else (dhg[1:], y[:-1])
                d_w_hh = later.reshape(-1, GH).t() @ earlier.reshape(-1, H)
            else:
                d_w_hh = w_hh.new_zeros(w_hh.shape)
            if ctx.has_init:
                d_w_hh = d_w_hh + first.t() @ h0
        d_b_hh = dhg.sum((0, 1)) if ctx.has_bias and ctx.needs_input_grad[8] else None
        d_h0 = (dh + dh_rec.to(compute)).to(y.dtype)
        d_initial = (d_h0, dc.to(y.dtype)) if kernels.has_cell_state else (d_h0,)
        d_initial = tuple(g if needed else None for g, needed in zip(d_initial, ctx.needs_input_grad[9:]))
        return None, None, None, None, None, None, dgx, d_w_hh, d_b_hh, *d_initial


def recurrence(
    kernels: CellKernels,
    gx: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor | None,
    initial: tuple[torch.Tensor | None, ...],
    lengths: torch.Tensor | None,
    reverse: bool,
    gemm_in_kernel: bool = False,
    allow_tf32: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Differentiable recurrence of one direction, stepwise or (gemm_in_kernel) fusedstep; returns
    (y, *final_states). allow_tf32: float32 products of the in-kernel GEMM may use TF32 tensor cores (the
    modules pass torch's flag for their torch counterpart; the stepwise GEMM follows torch's matmul flag).

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
    return StepwiseRecurrence.apply(kernels, reverse, store_acts, gemm_in_kernel, allow_tf32, lengths, *tensors)
