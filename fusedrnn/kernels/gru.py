"""GRU recurrence: the fused pointwise step kernels (forward and backward) and the public function.

PyTorch's formulation, gate order r, z, n. Given gx = x W_ih^T + b_ih and hg = h W_hh^T + b_hh:
    r = sigmoid(gx_r + hg_r),  z = sigmoid(gx_z + hg_z),  n = tanh(gx_n + r * hg_n),
    h' = (1 - z) * n + z * h
The recurrent bias b_hn sits inside the reset product, which is why hg is kept apart from gx.
Saved for backward per time step: r, z, n and hg_n (4 blocks of H); h_{t-1} is read back from y.
"""

import torch
import triton
import triton.language as tl

from fusedrnn.kernels._common import (
    gate_input,
    previous_time,
    row_offsets,
    seq_offsets,
    sigmoid,
    step_positions,
    tanh,
    tile,
)
from fusedrnn.kernels.stepwise import CellKernels, recurrence


@triton.jit(do_not_specialize=["step", "T"])
def gru_forward_step(
    gx_ptr, hg_ptr, h_ptr, c_ptr, y_ptr, acts_ptr, lengths_ptr,
    step, T, B, H,
    HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, STORE_ACTS: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    # c_ptr is unused: a GRU has no cell state (the argument keeps one signature for both cells).
    rows, cols, row_ok, mask = tile(B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    x_at = seq_offsets(t, rows, cols, B, H, 3)
    r_at = row_offsets(rows, cols, H, 3)
    r = sigmoid(gate_input(gx_ptr + x_at, hg_ptr + r_at, live, COMPUTE))
    z = sigmoid(gate_input(gx_ptr + x_at + H, hg_ptr + r_at + H, live, COMPUTE))
    hg_n = tl.load(hg_ptr + r_at + 2 * H, mask=live).to(COMPUTE)
    n = tanh(tl.load(gx_ptr + x_at + 2 * H, mask=live).to(COMPUTE) + r * hg_n)

    state_at = row_offsets(rows, cols, H, 1)
    h_prev = tl.load(h_ptr + state_at, mask=mask).to(COMPUTE)
    h = (1.0 - z) * n + z * h_prev

    out_at = seq_offsets(t, rows, cols, B, H, 1)
    if HAS_LENGTHS:
        # A finished row keeps its state and outputs zeros in its padding.
        tl.store(h_ptr + state_at, tl.where(live, h, h_prev).to(h_ptr.dtype.element_ty), mask=mask)
        tl.store(y_ptr + out_at, tl.where(live, h, 0.0).to(y_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(h_ptr + state_at, h.to(h_ptr.dtype.element_ty), mask=mask)
        tl.store(y_ptr + out_at, h.to(y_ptr.dtype.element_ty), mask=mask)

    if STORE_ACTS:
        a_at = seq_offsets(t, rows, cols, B, H, 4)
        kind = acts_ptr.dtype.element_ty
        tl.store(acts_ptr + a_at, r.to(kind), mask=live)
        tl.store(acts_ptr + a_at + H, z.to(kind), mask=live)
        tl.store(acts_ptr + a_at + 2 * H, n.to(kind), mask=live)
        tl.store(acts_ptr + a_at + 3 * H, hg_n.to(kind), mask=live)


@triton.jit(do_not_specialize=["step", "T"])
def gru_backward_step(
    acts_ptr, y_ptr, h0_ptr, c0_ptr, dy_ptr, dh_rec_ptr, dh_ptr, dc_ptr, dgx_ptr, dhg_ptr, dstep_ptr, lengths_ptr,
    step, T, B, H,
    HAS_INIT: tl.constexpr, HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, WRITE_STEP: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    # c0_ptr and dc_ptr are unused: a GRU has no cell state.
    rows, cols, row_ok, mask = tile(B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    state_at = row_offsets(rows, cols, H, 1)

    # Gradient reaching the state after this step: through the recurrent GEMM, directly, and from y_t.
    dh_carry = tl.load(dh_rec_ptr + state_at, mask=mask).to(COMPUTE) + tl.load(dh_ptr + state_at, mask=mask)
    dh = dh_carry + tl.load(dy_ptr + seq_offsets(t, rows, cols, B, H, 1), mask=live, other=0.0).to(COMPUTE)

    a_at = seq_offsets(t, rows, cols, B, H, 4)
    r = tl.load(acts_ptr + a_at, mask=live, other=0.0).to(COMPUTE)
    z = tl.load(acts_ptr + a_at + H, mask=live, other=0.0).to(COMPUTE)
    n = tl.load(acts_ptr + a_at + 2 * H, mask=live, other=0.0).to(COMPUTE)
    hg_n = tl.load(acts_ptr + a_at + 3 * H, mask=live, other=0.0).to(COMPUTE)
    # h_{t-1}: the initial state on a row's first step, else the output at the previous time.
    prev_at = seq_offsets(previous_time(t, REVERSE), rows, cols, B, H, 1)
    h_prev = tl.load(y_ptr + prev_at, mask=live & (step > 0), other=0.0).to(COMPUTE)
    if HAS_INIT:
        h_prev += tl.load(h0_ptr + state_at, mask=live & (step == 0), other=0.0).to(COMPUTE)

    d_n = dh * (1.0 - z) * (1.0 - n * n)
    d_r = d_n * hg_n * r * (1.0 - r)
    d_z = dh * (h_prev - n) * z * (1.0 - z)
    d_hn = d_n * r
    if HAS_LENGTHS:
        d_r = tl.where(live, d_r, 0.0)
        d_z = tl.where(live, d_z, 0.0)
        d_n = tl.where(live, d_n, 0.0)
        d_hn = tl.where(live, d_hn, 0.0)
        # A finished row passes its state's gradient through unchanged.
        tl.store(dh_ptr + state_at, tl.where(live, dh * z, dh_carry), mask=mask)
    else:
        tl.store(dh_ptr + state_at, dh * z, mask=mask)

    kind = dgx_ptr.dtype.element_ty
    g_at = seq_offsets(t, rows, cols, B, H, 3)
    tl.store(dgx_ptr + g_at, d_r.to(kind), mask=mask)
    tl.store(dgx_ptr + g_at + H, d_z.to(kind), mask=mask)
    tl.store(dgx_ptr + g_at + 2 * H, d_n.to(kind), mask=mask)
    tl.store(dhg_ptr + g_at, d_r.to(kind), mask=mask)
    tl.store(dhg_ptr + g_at + H, d_z.to(kind), mask=mask)
    tl.store(dhg_ptr + g_at + 2 * H, d_hn.to(kind), mask=mask)
    if WRITE_STEP:
        s_at = row_offsets(rows, cols, H, 3)
        tl.store(dstep_ptr + s_at, d_r.to(kind), mask=mask)
        tl.store(dstep_ptr + s_at + H, d_z.to(kind), mask=mask)
        tl.store(dstep_ptr + s_at + 2 * H, d_hn.to(kind), mask=mask)


GRU_KERNELS = CellKernels(
    name="GRU", gates=3, saved_blocks=4, has_cell_state=False, recurrent_grad_is_input_grad=False,
    forward_step=gru_forward_step, backward_step=gru_backward_step,
)


def gru_recurrence(
    gx: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one GRU direction over a projected sequence with the fused stepwise kernels.

    gx: (T, B, 3H) input projection x @ W_ih^T + b_ih; w_hh: (3H, H); b_hh: (3H,); h0: (B, H);
    lengths: (B,) int32 on gx's device, or None when every row has T steps.
    Returns y (T, B, H) (zeros past each row's length) and h_n (B, H).

        >>> y, h = gru_recurrence(F.linear(x, w_ih, b_ih), w_hh, b_hh)
    """
    return recurrence(GRU_KERNELS, gx, w_hh, b_hh, (h0,), lengths, reverse)
