"""LSTM recurrence: the fused pointwise step kernels (forward and backward) and the public function.

PyTorch's gate order i, f, g, o. One forward step, given the input projection gx = x W_ih^T + b_ih and
the recurrent projection hg = h W_hh^T + b_hh (both done as GEMMs by the stepwise driver):
    i, f, o = sigmoid(.), g = tanh(.),  c' = f * c + i * g,  h' = o * tanh(c')
Saved for backward per time step: i, f, g, o and c' (5 blocks of H).
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
def lstm_forward_step(
    gx_ptr, hg_ptr, h_ptr, c_ptr, y_ptr, acts_ptr, lengths_ptr,
    step, T, B, H,
    HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, STORE_ACTS: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    rows, cols, row_ok, mask = tile(B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    x_at = seq_offsets(t, rows, cols, B, H, 4)
    r_at = row_offsets(rows, cols, H, 4)
    i = sigmoid(gate_input(gx_ptr + x_at, hg_ptr + r_at, live, COMPUTE))
    f = sigmoid(gate_input(gx_ptr + x_at + H, hg_ptr + r_at + H, live, COMPUTE))
    g = tanh(gate_input(gx_ptr + x_at + 2 * H, hg_ptr + r_at + 2 * H, live, COMPUTE))
    o = sigmoid(gate_input(gx_ptr + x_at + 3 * H, hg_ptr + r_at + 3 * H, live, COMPUTE))

    state_at = row_offsets(rows, cols, H, 1)
    c_prev = tl.load(c_ptr + state_at, mask=mask)
    c = f * c_prev + i * g
    h = o * tanh(c)

    out_at = seq_offsets(t, rows, cols, B, H, 1)
    if HAS_LENGTHS:
        # A finished row keeps its state and outputs zeros in its padding.
        h_prev = tl.load(h_ptr + state_at, mask=mask).to(COMPUTE)
        tl.store(h_ptr + state_at, tl.where(live, h, h_prev).to(h_ptr.dtype.element_ty), mask=mask)
        tl.store(c_ptr + state_at, tl.where(live, c, c_prev), mask=mask)
        tl.store(y_ptr + out_at, tl.where(live, h, 0.0).to(y_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(h_ptr + state_at, h.to(h_ptr.dtype.element_ty), mask=mask)
        tl.store(c_ptr + state_at, c, mask=mask)
        tl.store(y_ptr + out_at, h.to(y_ptr.dtype.element_ty), mask=mask)

    if STORE_ACTS:
        a_at = seq_offsets(t, rows, cols, B, H, 5)
        kind = acts_ptr.dtype.element_ty
        tl.store(acts_ptr + a_at, i.to(kind), mask=live)
        tl.store(acts_ptr + a_at + H, f.to(kind), mask=live)
        tl.store(acts_ptr + a_at + 2 * H, g.to(kind), mask=live)
        tl.store(acts_ptr + a_at + 3 * H, o.to(kind), mask=live)
        tl.store(acts_ptr + a_at + 4 * H, c.to(kind), mask=live)


@triton.jit(do_not_specialize=["step", "T"])
def lstm_backward_step(
    acts_ptr, y_ptr, h0_ptr, c0_ptr, dy_ptr, dh_rec_ptr, dh_ptr, dc_ptr, dgx_ptr, dhg_ptr, dstep_ptr, lengths_ptr,
    step, T, B, H,
    HAS_INIT: tl.constexpr, HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, WRITE_STEP: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
):
    rows, cols, row_ok, mask = tile(B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    state_at = row_offsets(rows, cols, H, 1)

    # Gradient reaching the state after this step: through the recurrent GEMM, directly, and from y_t.
    dh_carry = tl.load(dh_rec_ptr + state_at, mask=mask).to(COMPUTE) + tl.load(dh_ptr + state_at, mask=mask)
    dc_carry = tl.load(dc_ptr + state_at, mask=mask)
    dh = dh_carry + tl.load(dy_ptr + seq_offsets(t, rows, cols, B, H, 1), mask=live, other=0.0).to(COMPUTE)

    a_at = seq_offsets(t, rows, cols, B, H, 5)
    i = tl.load(acts_ptr + a_at, mask=live, other=0.0).to(COMPUTE)
    f = tl.load(acts_ptr + a_at + H, mask=live, other=0.0).to(COMPUTE)
    g = tl.load(acts_ptr + a_at + 2 * H, mask=live, other=0.0).to(COMPUTE)
    o = tl.load(acts_ptr + a_at + 3 * H, mask=live, other=0.0).to(COMPUTE)
    tanh_c = tanh(tl.load(acts_ptr + a_at + 4 * H, mask=live, other=0.0).to(COMPUTE))
    # c_{t-1}: the initial state on a row's first step, else the c saved at the previous time.
    prev_at = seq_offsets(previous_time(t, REVERSE), rows, cols, B, H, 5) + 4 * H
    c_prev = tl.load(acts_ptr + prev_at, mask=live & (step > 0), other=0.0).to(COMPUTE)
    if HAS_INIT:
        c_prev += tl.load(c0_ptr + state_at, mask=live & (step == 0), other=0.0).to(COMPUTE)

    dc = dc_carry + dh * o * (1.0 - tanh_c * tanh_c)
    d_i = dc * g * i * (1.0 - i)
    d_f = dc * c_prev * f * (1.0 - f)
    d_g = dc * i * (1.0 - g * g)
    d_o = dh * tanh_c * o * (1.0 - o)
    if HAS_LENGTHS:
        d_i = tl.where(live, d_i, 0.0)
        d_f = tl.where(live, d_f, 0.0)
        d_g = tl.where(live, d_g, 0.0)
        d_o = tl.where(live, d_o, 0.0)
        # A finished row passes its state's gradient through unchanged.
        tl.store(dh_ptr + state_at, tl.where(live, 0.0, dh_carry), mask=mask)
        tl.store(dc_ptr + state_at, tl.where(live, dc * f, dc_carry), mask=mask)
    else:
        tl.store(dh_ptr + state_at, tl.zeros_like(dh), mask=mask)
        tl.store(dc_ptr + state_at, dc * f, mask=mask)

    kind = dgx_ptr.dtype.element_ty
    g_at = seq_offsets(t, rows, cols, B, H, 4)
    tl.store(dgx_ptr + g_at, d_i.to(kind), mask=mask)
    tl.store(dgx_ptr + g_at + H, d_f.to(kind), mask=mask)
    tl.store(dgx_ptr + g_at + 2 * H, d_g.to(kind), mask=mask)
    tl.store(dgx_ptr + g_at + 3 * H, d_o.to(kind), mask=mask)
    if WRITE_STEP:
        s_at = row_offsets(rows, cols, H, 4)
        tl.store(dstep_ptr + s_at, d_i.to(kind), mask=mask)
        tl.store(dstep_ptr + s_at + H, d_f.to(kind), mask=mask)
        tl.store(dstep_ptr + s_at + 2 * H, d_g.to(kind), mask=mask)
        tl.store(dstep_ptr + s_at + 3 * H, d_o.to(kind), mask=mask)


LSTM_KERNELS = CellKernels(
    name="LSTM", gates=4, saved_blocks=5, has_cell_state=True, recurrent_grad_is_input_grad=True,
    forward_step=lstm_forward_step, backward_step=lstm_backward_step,
)


def lstm_recurrence(
    gx: torch.Tensor,
    w_hh: torch.Tensor,
    b_hh: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
    c0: torch.Tensor | None = None,
    lengths: torch.Tensor | None = None,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run one LSTM direction over a projected sequence with the fused stepwise kernels.

    gx: (T, B, 4H) input projection x @ W_ih^T + b_ih; w_hh: (4H, H); b_hh: (4H,); h0, c0: (B, H);
    lengths: (B,) int32 on gx's device, or None when every row has T steps.
    Returns y (T, B, H) (zeros past each row's length), h_n (B, H), c_n (B, H).

        >>> y, h, c = lstm_recurrence(F.linear(x, w_ih, b_ih), w_hh, b_hh)
    """
    return recurrence(LSTM_KERNELS, gx, w_hh, b_hh, (h0, c0), lengths, reverse)
