"""GRU recurrence: the fused pointwise step kernels (forward and backward) and the public function.

PyTorch's formulation, gate order r, z, n. Given gx = x W_ih^T + b_ih and hg = h W_hh^T + b_hh (a cuBLAS
GEMM per step in the stepwise strategy, or computed inside the kernel with GEMM_IN_KERNEL):
    r = sigmoid(gx_r + hg_r),  z = sigmoid(gx_z + hg_z),  n = tanh(gx_n + r * hg_n),
    h' = (1 - z) * n + z * h
The recurrent bias b_hn sits inside the reset product, which is why hg is kept apart from gx.
Saved for backward per time step: r, z, n and hg_n (4 blocks of H); h_{t-1} is read back from y.
"""

import torch
import triton
import triton.language as tl

from fusedrnn.kernels._common import (
    gate_preactivation,
    incoming_hidden_grad,
    load_block,
    previous_state,
    previous_time,
    recurrent_grad,
    recurrent_input,
    row_offsets,
    seq_offsets,
    sigmoid,
    step_positions,
    store_block,
    store_hidden_and_output,
    tanh,
    tile,
)
from fusedrnn.kernels.stepwise import CellKernels, recurrence


@triton.jit(do_not_specialize=["step", "T"])
def gru_forward_step(
    gx_ptr, hg_ptr, w_hh_ptr, b_hh_ptr, h_in_ptr, h_out_ptr, c_ptr, y_ptr, acts_ptr, lengths_ptr,
    step, T, B, H,
    HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, STORE_ACTS: tl.constexpr, GEMM_IN_KERNEL: tl.constexpr,
    HAS_BIAS: tl.constexpr, COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
):
    # c_ptr is unused: a GRU has no cell state (the argument keeps one signature for both cells).
    rows, cols, row_ok, mask = tile(B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    x_at = seq_offsets(t, rows, cols, B, H, 3)
    r_at = row_offsets(rows, cols, H, 3)
    r = sigmoid(gate_preactivation(
        gx_ptr, x_at, hg_ptr, r_at, h_in_ptr, w_hh_ptr, b_hh_ptr, 0, rows, cols, row_ok, mask, live, H,
        GEMM_IN_KERNEL, HAS_BIAS, COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION))
    z = sigmoid(gate_preactivation(
        gx_ptr, x_at, hg_ptr, r_at, h_in_ptr, w_hh_ptr, b_hh_ptr, 1, rows, cols, row_ok, mask, live, H,
        GEMM_IN_KERNEL, HAS_BIAS, COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION))
    hg_n = recurrent_input(
        hg_ptr, r_at, h_in_ptr, w_hh_ptr, b_hh_ptr, 2, rows, cols, row_ok, mask, H,
        GEMM_IN_KERNEL, HAS_BIAS, COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION,
    )
    n = tanh(load_block(gx_ptr, x_at, 2, H, live, COMPUTE) + r * hg_n)

    state_at = row_offsets(rows, cols, H, 1)
    h = (1.0 - z) * n + z * tl.load(h_in_ptr + state_at, mask=mask).to(COMPUTE)
    store_hidden_and_output(
        h_in_ptr, h_out_ptr, y_ptr, state_at, seq_offsets(t, rows, cols, B, H, 1), h, live, mask, HAS_LENGTHS
    )

    if STORE_ACTS:
        a_at = seq_offsets(t, rows, cols, B, H, 4)
        store_block(acts_ptr, a_at, 0, H, r, live)
        store_block(acts_ptr, a_at, 1, H, z, live)
        store_block(acts_ptr, a_at, 2, H, n, live)
        store_block(acts_ptr, a_at, 3, H, hg_n, live)


@triton.jit(do_not_specialize=["step", "T"])
def gru_backward_step(
    acts_ptr, y_ptr, h0_ptr, c0_ptr, dy_ptr, dh_rec_ptr, rec_grad_ptr, w_hh_ptr, dh_ptr, dc_ptr, dgx_ptr, dhg_ptr,
    dstep_ptr, lengths_ptr,
    step, T, B, H,
    HAS_INIT: tl.constexpr, HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, WRITE_STEP: tl.constexpr,
    GEMM_IN_KERNEL: tl.constexpr, COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
    BLOCK_K: tl.constexpr, DOT_PRECISION: tl.constexpr,
):
    # c0_ptr and dc_ptr are unused: a GRU has no cell state.
    rows, cols, row_ok, mask = tile(B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    state_at = row_offsets(rows, cols, H, 1)
    dh_rec = recurrent_grad(
        dh_rec_ptr, state_at, rec_grad_ptr, w_hh_ptr, step < T - 1, rows, cols, row_ok, mask, H, 3 * H,
        GEMM_IN_KERNEL, COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION,
    )
    dh_carry, dh = incoming_hidden_grad(
        dh_rec, dh_ptr, dy_ptr, state_at, seq_offsets(t, rows, cols, B, H, 1), live, mask, COMPUTE
    )

    a_at = seq_offsets(t, rows, cols, B, H, 4)
    r = load_block(acts_ptr, a_at, 0, H, live, COMPUTE)
    z = load_block(acts_ptr, a_at, 1, H, live, COMPUTE)
    n = load_block(acts_ptr, a_at, 2, H, live, COMPUTE)
    hg_n = load_block(acts_ptr, a_at, 3, H, live, COMPUTE)
    prev_at = seq_offsets(previous_time(t, REVERSE), rows, cols, B, H, 1)
    h_prev = previous_state(y_ptr, h0_ptr, prev_at, state_at, live, step, HAS_INIT, COMPUTE)

    d_n = tl.where(live, dh * (1.0 - z) * (1.0 - n * n), 0.0)
    d_r = tl.where(live, d_n * hg_n * r * (1.0 - r), 0.0)
    d_z = tl.where(live, dh * (h_prev - n) * z * (1.0 - z), 0.0)
    d_hn = d_n * r
    # What passes to the step before, besides the recurrent GEMM: a finished row passes its state's
    # gradient through unchanged; a live row passes the z * h path.
    tl.store(dh_ptr + state_at, tl.where(live, dh * z, dh_carry), mask=mask)

    g_at = seq_offsets(t, rows, cols, B, H, 3)
    store_block(dgx_ptr, g_at, 0, H, d_r, mask)
    store_block(dgx_ptr, g_at, 1, H, d_z, mask)
    store_block(dgx_ptr, g_at, 2, H, d_n, mask)
    store_block(dhg_ptr, g_at, 0, H, d_r, mask)
    store_block(dhg_ptr, g_at, 1, H, d_z, mask)
    store_block(dhg_ptr, g_at, 2, H, d_hn, mask)
    if WRITE_STEP:
        s_at = row_offsets(rows, cols, H, 3)
        store_block(dstep_ptr, s_at, 0, H, d_r, mask)
        store_block(dstep_ptr, s_at, 1, H, d_z, mask)
        store_block(dstep_ptr, s_at, 2, H, d_hn, mask)


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
    gemm_in_kernel: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one GRU direction over a projected sequence with the fused step kernels.

    gx: (T, B, 3H) input projection x @ W_ih^T + b_ih; w_hh: (3H, H); b_hh: (3H,); h0: (B, H);
    lengths: (B,) int32 on gx's device, or None when every row has T steps. gemm_in_kernel: the
    fusedstep strategy (h @ W_hh^T inside the step kernel) instead of a cuBLAS GEMM per step.
    Returns y (T, B, H) (zeros past each row's length) and h_n (B, H).

        >>> y, h = gru_recurrence(F.linear(x, w_ih, b_ih), w_hh, b_hh)
    """
    return recurrence(GRU_KERNELS, gx, w_hh, b_hh, (h0,), lengths, reverse, gemm_in_kernel)
