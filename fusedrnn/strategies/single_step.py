"""One step of a cell in one launch: what the fused LSTMCell, GRUCell and RNNCell run, whatever their backend.

A single step has no time loop to organise, so it runs none of the strategies: the forward is one kernel
whose programs each take a tile (BLOCK_B rows by BLOCK_H hidden units) and compute, for every gate of the
tile, x @ W_ih^T + b_ih and h @ W_hh^T + b_hh in the kernel (`gate_matmul`, K in chunks), then the cell's
own pointwise arithmetic (`pointwise_forward` in its cell file, which its time-loop bodies run too),
writing h', c' and the activations the backward reads. The two products stay apart until the cell combines
them: a GRU's n gate multiplies the recurrent one (b_hn included) by r.

The backward is one kernel for the gate gradients (`pointwise_backward`: dG_x of the input pre-activations,
dG_h of the recurrent ones where they differ (GRU), the gradient h reaches beside the recurrent product and
c's), then cuBLAS GEMMs through torch: dx = dG_x W_ih, dh = dh_direct + dG_h W_hh, dW_ih = dG_x^T x,
dW_hh = dG_h^T h, the biases as column sums. No atomics: the gradients are deterministic.

Per-cell arithmetic signatures (every cell the same, unused arguments and results filled):
    pointwise_forward(x0, x1, x2, x3, r0, r1, r2, r3, h_prev, c_prev, VARIANT)
        -> (h', c', s0, s1, s2, s3, s4)      s*: the blocks saved for the backward (Cell.saved_blocks)
    pointwise_backward(dh, dc, s0, s1, s2, s3, s4, h_prev, c_prev, h', VARIANT)
        -> (dx0..dx3, dr0..dr3, dh_prev beside the recurrent GEMM, dc_prev)
"""

import contextlib
import functools

import torch
import triton
import triton.language as tl

from fusedrnn._backend import interpreter_enabled
from fusedrnn.cells import cell as cell_for
from fusedrnn.cells.common import gate_matmul, load_blocks, row_offsets, store_blocks, tile
from fusedrnn.strategies import driver, tiles
from fusedrnn.strategies.driver import new_empty


@triton.jit
def _load_state(ptr, at, mask, PRESENT: tl.constexpr, COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr,
                BLOCK_H: tl.constexpr):
    """A state's tile, zeros when the state is absent (hx None)."""
    if PRESENT:
        return tl.load(ptr + at, mask=mask, other=0.0).to(COMPUTE)
    else:
        return tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)


@triton.jit
def forward_kernel(
    x_ptr, h_ptr, c_ptr, w_ih_ptr, w_hh_ptr, b_ih_ptr, b_hh_ptr, h_out_ptr, c_out_ptr, acts_ptr, B, I, H,
    POINTWISE: tl.constexpr, VARIANT: tl.constexpr, GATES: tl.constexpr, SAVED_BLOCKS: tl.constexpr,
    HAS_CELL_STATE: tl.constexpr, HAS_STATE: tl.constexpr, HAS_BIAS: tl.constexpr, STORE_ACTS: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """h' (and c') for tile (program 0: batch, program 1: hidden); acts (B, SAVED_BLOCKS * H) if STORE_ACTS."""
    rows, cols, row_ok, mask = tile(tl.program_id(0), tl.program_id(1), B, H, BLOCK_B, BLOCK_H)
    x0, x1, x2, x3 = gate_matmul(x_ptr, I, w_ih_ptr, b_ih_ptr, rows, cols, row_ok, H, GATES, HAS_BIAS, COMPUTE,
                                 BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST, x_ptr, False)
    # Without a state the recurrent product is zero: K = 0 leaves the bias alone.
    r0, r1, r2, r3 = gate_matmul(h_ptr, H if HAS_STATE else 0, w_hh_ptr, b_hh_ptr, rows, cols, row_ok, H, GATES,
                                 HAS_BIAS, COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST, h_ptr, False)
    at = row_offsets(rows, cols, H, 1)
    h_prev = _load_state(h_ptr, at, mask, HAS_STATE, COMPUTE, BLOCK_B, BLOCK_H)
    c_prev = _load_state(c_ptr, at, mask, HAS_STATE and HAS_CELL_STATE, COMPUTE, BLOCK_B, BLOCK_H)
    h, c, s0, s1, s2, s3, s4 = POINTWISE(x0, x1, x2, x3, r0, r1, r2, r3, h_prev, c_prev, VARIANT)
    tl.store(h_out_ptr + at, h.to(h_out_ptr.dtype.element_ty), mask=mask)
    if HAS_CELL_STATE:
        tl.store(c_out_ptr + at, c.to(c_out_ptr.dtype.element_ty), mask=mask)
    if STORE_ACTS:
        store_blocks(acts_ptr, row_offsets(rows, cols, H, SAVED_BLOCKS), H, s0, s1, s2, s3, s4, mask, SAVED_BLOCKS)


@triton.jit
def backward_kernel(
    dh_ptr, dc_ptr, acts_ptr, h_ptr, c_ptr, h_out_ptr, dgx_ptr, dgh_ptr, dh_prev_ptr, dc_prev_ptr, B, H,
    POINTWISE_BACKWARD: tl.constexpr, VARIANT: tl.constexpr, GATES: tl.constexpr, SAVED_BLOCKS: tl.constexpr,
    HAS_CELL_STATE: tl.constexpr, HAS_STATE: tl.constexpr, HAS_DH: tl.constexpr, HAS_DC: tl.constexpr,
    SEPARATE_RECURRENT_GRAD: tl.constexpr, COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    """The gate gradients dgx (B, GATES * H) (and dgh, the recurrent ones, where they differ), and with a
    state the gradients h (beside the recurrent GEMM) and c get, from the gradients of h' and c'."""
    rows, cols, row_ok, mask = tile(tl.program_id(0), tl.program_id(1), B, H, BLOCK_B, BLOCK_H)
    at = row_offsets(rows, cols, H, 1)
    dh = _load_state(dh_ptr, at, mask, HAS_DH, COMPUTE, BLOCK_B, BLOCK_H)
    dc = _load_state(dc_ptr, at, mask, HAS_CELL_STATE and HAS_DC, COMPUTE, BLOCK_B, BLOCK_H)
    h_prev = _load_state(h_ptr, at, mask, HAS_STATE, COMPUTE, BLOCK_B, BLOCK_H)
    c_prev = _load_state(c_ptr, at, mask, HAS_STATE and HAS_CELL_STATE, COMPUTE, BLOCK_B, BLOCK_H)
    h = tl.load(h_out_ptr + at, mask=mask, other=0.0).to(COMPUTE)
    s0, s1, s2, s3, s4 = load_blocks(acts_ptr, row_offsets(rows, cols, H, SAVED_BLOCKS), H, mask, SAVED_BLOCKS,
                                     COMPUTE, BLOCK_B, BLOCK_H)
    dx0, dx1, dx2, dx3, dr0, dr1, dr2, dr3, dh_prev, dc_prev = POINTWISE_BACKWARD(
        dh, dc, s0, s1, s2, s3, s4, h_prev, c_prev, h, VARIANT)
    g_at = row_offsets(rows, cols, H, GATES)
    store_blocks(dgx_ptr, g_at, H, dx0, dx1, dx2, dx3, dx3, mask, GATES)
    if SEPARATE_RECURRENT_GRAD:
        store_blocks(dgh_ptr, g_at, H, dr0, dr1, dr2, dr3, dr3, mask, GATES)
    if HAS_STATE:
        tl.store(dh_prev_ptr + at, dh_prev.to(dh_prev_ptr.dtype.element_ty), mask=mask)
        if HAS_CELL_STATE:
            tl.store(dc_prev_ptr + at, dc_prev.to(dc_prev_ptr.dtype.element_ty), mask=mask)


def _grid(B: int, H: int, t: tiles.Tiles) -> tuple[int, int]:
    return tiles.cdiv(B, t.block_b), tiles.cdiv(H, t.block_h)


# A cell step is bound by host time (benchmarks/NOTES.md): what a launch needs besides its tensors depends only
# on these arguments, so it is worked out once per combination (tiles, grid, compile-time arguments).
@functools.lru_cache(maxsize=1024)
def _forward_launch(mode: str, B: int, H: int, dtype: torch.dtype, has_state: bool, has_bias: bool,
                    store_acts: bool, allow_tf32: bool, interpreted: bool) -> tuple[tuple[int, int], dict]:
    cell = cell_for(mode)
    t = tiles.choose(tiles.SINGLE_STEP, B, H, dtype)
    return _grid(B, H, t), dict(
        POINTWISE=cell.pointwise_forward, VARIANT=cell.variant, GATES=cell.gates, SAVED_BLOCKS=cell.saved_blocks,
        HAS_CELL_STATE=cell.has_cell_state, HAS_STATE=has_state, HAS_BIAS=has_bias, STORE_ACTS=store_acts,
        COMPUTE=driver.compute_dtype(dtype)[1], **driver.gemm_flags(dtype, allow_tf32), **t.meta(),
    )


def forward(mode: str, x: torch.Tensor, h: torch.Tensor | None, c: torch.Tensor | None, w_ih: torch.Tensor,
            w_hh: torch.Tensor, b_ih: torch.Tensor | None, b_hh: torch.Tensor | None, store_acts: bool,
            allow_tf32: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The forward of `fusedrnn::cell_step` (fusedrnn/ops.py): (h', c', acts), all in x's dtype; c' is empty
    for a cell without a cell state, acts unless store_acts (and for a cell that saves nothing). x (B, I);
    h, c (B, H) or None (zeros: then both are None); w_ih (G*H, I); w_hh (G*H, H); biases (G*H,) or both None."""
    cell = cell_for(mode)
    x, h, c, w_ih, w_hh, b_ih, b_hh = driver.contiguous(x, h, c, w_ih, w_hh, b_ih, b_hh)
    (B, I), H = x.shape, w_hh.shape[1]
    h_new = new_empty(x, B, H)
    c_new = new_empty(x, B, H) if cell.has_cell_state else x.new_empty(0)
    acts = new_empty(x, B, cell.saved_blocks * H) if store_acts and cell.saved_blocks else x.new_empty(0)
    if B and H:
        grid, constexprs = _forward_launch(mode, B, H, x.dtype, h is not None, b_ih is not None, store_acts,
                                           allow_tf32, interpreter_enabled())
        absent = x  # stands in for a tensor that is not given; never read
        forward_kernel[grid](
            x, absent if h is None else h, absent if c is None else c, w_ih, w_hh,
            absent if b_ih is None else b_ih, absent if b_hh is None else b_hh, h_new,
            c_new if cell.has_cell_state else absent, acts if acts.numel() else absent, B, I, H, **constexprs,
        )
    return h_new, c_new, acts


@functools.lru_cache(maxsize=1024)
def _backward_launch(mode: str, B: int, H: int, dtype: torch.dtype, has_state: bool, has_dh: bool,
                     has_dc: bool) -> tuple[tuple[int, int], dict]:
    cell = cell_for(mode)
    t = tiles.choose(tiles.SINGLE_STEP, B, H, dtype)
    return _grid(B, H, t), dict(
        POINTWISE_BACKWARD=cell.pointwise_backward, VARIANT=cell.variant, GATES=cell.gates,
        SAVED_BLOCKS=cell.saved_blocks, HAS_CELL_STATE=cell.has_cell_state, HAS_STATE=has_state, HAS_DH=has_dh,
        HAS_DC=has_dc, SEPARATE_RECURRENT_GRAD=not cell.recurrent_grad_is_input_grad,
        COMPUTE=driver.compute_dtype(dtype)[1], BLOCK_B=t.block_b, BLOCK_H=t.block_h, num_warps=t.num_warps,
    )


def backward(mode: str, dh: torch.Tensor | None, dc: torch.Tensor | None, acts: torch.Tensor, h_new: torch.Tensor,
             x: torch.Tensor, h: torch.Tensor | None, c: torch.Tensor | None, w_ih: torch.Tensor,
             w_hh: torch.Tensor, needs: list[bool]) -> tuple[torch.Tensor, ...]:
    """The forward of `fusedrnn::cell_step_backward`: (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh) from the
    gradients of h' and c' (None: zero) and what the forward saved; `needs` says which of the seven are
    wanted (by position), the others come back empty, as do dh0 and dc0 without a state."""
    cell = cell_for(mode)
    dh, dc, acts, h_new, x, h, c, w_ih, w_hh = driver.contiguous(dh, dc, acts, h_new, x, h, c, w_ih, w_hh)
    (B, _), H = x.shape, w_hh.shape[1]
    GH = cell.gates * H
    dgx = new_empty(x, B, GH)
    dgh = dgx if cell.recurrent_grad_is_input_grad else new_empty(x, B, GH)
    dh_prev = new_empty(x, B, H) if h is not None else x.new_empty(0)
    dc_prev = new_empty(x, B, H) if c is not None else x.new_empty(0)
    if B and H:
        grid, constexprs = _backward_launch(mode, B, H, x.dtype, h is not None, dh is not None, dc is not None)
        absent = x
        backward_kernel[grid](
            absent if dh is None else dh, absent if dc is None else dc, acts if acts.numel() else absent,
            absent if h is None else h, absent if c is None else c, h_new, dgx, dgh,
            dh_prev if dh_prev.numel() else absent, dc_prev if dc_prev.numel() else absent, B, H, **constexprs,
        )

    def nothing() -> torch.Tensor:  # a fresh one each: outputs of a custom op may not alias each other
        return x.new_empty(0)

    want_x, want_h, want_c, want_w_ih, want_w_hh, want_b_ih, want_b_hh = needs
    # The GEMMs in x's dtype even when the backward runs inside an autocast region.
    autocast_off = (torch.autocast(x.device.type, enabled=False) if torch.is_autocast_enabled(x.device.type)
                    else contextlib.nullcontext())
    with autocast_off:
        d_x = dgx @ w_ih if want_x else nothing()
        d_h = torch.addmm(dh_prev, dgh, w_hh) if want_h and h is not None else nothing()
        d_w_ih = dgx.t() @ x if want_w_ih else nothing()
        if want_w_hh:
            d_w_hh = dgh.t() @ h if h is not None else w_hh.new_zeros(w_hh.shape)
        else:
            d_w_hh = nothing()
        d_b_ih = dgx.sum(0) if want_b_ih else nothing()
        d_b_hh = dgh.sum(0) if want_b_hh else nothing()
    d_c = dc_prev if want_c and c is not None else nothing()
    return d_x, d_h, d_c, d_w_ih, d_w_hh, d_b_ih, d_b_hh
