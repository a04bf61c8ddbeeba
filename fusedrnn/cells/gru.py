"""The GRU cell: float64 reference step, Triton pointwise arithmetic and step bodies, spec.

PyTorch's formulation, gate order r, z, n. Given gx = x W_ih^T + b_ih and hg = h W_hh^T + b_hh:
    r = sigmoid(gx_r + hg_r),  z = sigmoid(gx_z + hg_z),  n = tanh(gx_n + r * hg_n),
    h' = (1 - z) * n + z * h
The recurrent bias b_hn sits inside the reset product, which is why hg is kept apart from gx.
Saved for backward per time step: r, z, n and hg_n (4 blocks of H); h_{t-1} is read back from y.
LAYER_NORM (fusedrnn/cells/layer_norm.py): gx comes normalised, hg = gamma_h * LN(h W_hh^T) + b_hh + beta_h over
all 3H, the formulas above unchanged on those (n = tanh(gx_n + r * hg_n)); the raw h W_hh^T is saved after the
4 blocks (7 in all).
Zoneout (ZONEOUT, fusedrnn/nn/regularizers.py): h' above is a candidate, h_t = a * h_{t-1} + (1 - a) * h';
the same blocks are saved (y holds the zoned states, which are the h_{t-1} the backward needs).
"""

import triton
import triton.language as tl

from fusedrnn.cells import Cell
from fusedrnn.cells import layer_norm as ln
from fusedrnn.cells.common import (
    incoming_hidden_grad,
    load_block,
    observe_hidden_grad,
    previous_state,
    previous_time,
    recurrent_grad,
    recurrent_preactivations,
    row_offsets,
    seq_offsets,
    sigmoid,
    step_positions,
    store_block,
    store_hidden_and_output,
    tanh,
    tile,
    zone,
    zoneout_keep,
)


def reference_update(gx, states, w_hh, b_ih=None, b_hh=None, recurrent=None, layer_norm=None):
    """One GRU step in plain torch, any dtype, given gx (B, 3H) = input_preactivations(x, W_ih, layer_norm).
    states: (h,), (B, H); recurrent: what the recurrent product reads instead of h (recurrent dropout's h * m),
    if given; z * h keeps h. layer_norm: (g_x, b_x, g_h, b_h), if given: the recurrent product normalised over
    its 3H before the bias (gx comes normalised). Returns (h',)."""
    (h,) = states
    gh = (h if recurrent is None else recurrent) @ w_hh.t()
    if layer_norm is not None:
        gh = ln.layer_norm(gh, *layer_norm[2:4])
    if b_ih is not None:
        gx, gh = gx + b_ih, gh + b_hh
    x_r, x_z, x_n = gx.chunk(3, dim=1)
    h_r, h_z, h_n = gh.chunk(3, dim=1)
    r = (x_r + h_r).sigmoid()
    z = (x_z + h_z).sigmoid()
    n = (x_n + r * h_n).tanh()
    return ((1 - z) * n + z * h,)


@triton.jit
def pointwise_forward(x_r, x_z, x_n, x_unused, hg_r, hg_z, hg_n, hg_unused, h_prev, c_prev, VARIANT: tl.constexpr):
    """(h', no cell state, the 4 saved blocks and a filler) from each gate's input and recurrent
    pre-activations (hg_n keeps b_hn: it sits inside the reset product)."""
    r = sigmoid(x_r + hg_r)
    z = sigmoid(x_z + hg_z)
    n = tanh(x_n + r * hg_n)
    h = (1.0 - z) * n + z * h_prev
    return h, tl.zeros_like(h), r, z, n, hg_n, tl.zeros_like(h)


@triton.jit
def pointwise_backward(dh, dc, r, z, n, hg_n, unused, h_prev, c_prev, h, VARIANT: tl.constexpr):
    """The gradients of the input and of the recurrent pre-activations (they differ in the n gate), of
    h_prev beside the recurrent GEMM (the z * h path) and of c_prev (none), from that of h' (dh)."""
    d_n = dh * (1.0 - z) * (1.0 - n * n)
    d_r = d_n * hg_n * r * (1.0 - r)
    d_z = dh * (h_prev - n) * z * (1.0 - z)
    zero = tl.zeros_like(dh)
    return d_r, d_z, d_n, zero, d_r, d_z, d_n * r, zero, dh * z, zero


@triton.jit
def forward_step(
    tile_b, tile_h, step, gx_ptr, hg_ptr, w_hh_ptr, w_tiles, b_hh_ptr, h_in_ptr, h_out_ptr, c_ptr, y_ptr, acts_ptr,
    lengths_ptr, rmask_ptr, zoneout_ptr, ln_ptr, T, B, H,
    HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, STORE_ACTS: tl.constexpr, GEMM_IN_KERNEL: tl.constexpr,
    HAS_BIAS: tl.constexpr, RECURRENT_MASK: tl.constexpr, ZONEOUT: tl.constexpr, COMPUTE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, DOT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr, VARIANT: tl.constexpr, LAYER_NORM: tl.constexpr,
):
    # c_ptr is unused: a GRU has no cell state (the argument keeps one signature for every cell).
    rows, cols, row_ok, mask = tile(tile_b, tile_h, B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    x_at = seq_offsets(t, rows, cols, B, H, 3)
    hg_r, hg_z, hg_n, _ = recurrent_preactivations(
        hg_ptr, h_in_ptr, w_hh_ptr, w_tiles, b_hh_ptr, rmask_ptr, rows, cols, row_ok, mask, H,
        3, GEMM_IN_KERNEL, HAS_BIAS, RECURRENT_MASK, COMPUTE,
        BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST,
    )
    a_at = seq_offsets(t, rows, cols, B, H, 4 + 3 * LAYER_NORM)
    if LAYER_NORM:  # the product came without b_hh, which is added after the normalisation
        hg_r, hg_z, hg_n, _ = ln.save_and_normalise(hg_r, hg_z, hg_n, hg_n, acts_ptr, a_at + 4 * H, ln_ptr, b_hh_ptr,
                                                    cols, H, live, 3, STORE_ACTS, COMPUTE)
    state_at = row_offsets(rows, cols, H, 1)
    h_prev = tl.load(h_in_ptr + state_at, mask=mask).to(COMPUTE)
    h, _, r, z, n, _, _ = pointwise_forward(
        load_block(gx_ptr, x_at, 0, H, live, COMPUTE), load_block(gx_ptr, x_at, 1, H, live, COMPUTE),
        load_block(gx_ptr, x_at, 2, H, live, COMPUTE), hg_n, hg_r, hg_z, hg_n, hg_n, h_prev, h_prev, VARIANT,
    )
    if ZONEOUT:  # h' above is the candidate, mixed with the previous state
        h = zone(h, h_prev, zoneout_keep(zoneout_ptr, 0, t, rows, cols, live, T, B, H, ZONEOUT, COMPUTE))
    store_hidden_and_output(
        h_in_ptr, h_out_ptr, y_ptr, state_at, seq_offsets(t, rows, cols, B, H, 1), h, live, mask, HAS_LENGTHS
    )

    if STORE_ACTS:
        store_block(acts_ptr, a_at, 0, H, r, live)
        store_block(acts_ptr, a_at, 1, H, z, live)
        store_block(acts_ptr, a_at, 2, H, n, live)
        store_block(acts_ptr, a_at, 3, H, hg_n, live)


@triton.jit
def backward_step(
    tile_b, tile_h, step, acts_ptr, y_ptr, h0_ptr, c0_ptr, dy_ptr, dh_rec_ptr, rec_grad_ptr, w_hh_ptr, w_tiles, dh_ptr,
    dc_ptr, dgx_ptr, dhg_ptr, dstep_ptr, lengths_ptr, rmask_ptr, zoneout_ptr, flow_ptr, clip_ptr, ln_ptr,
    ln_grad_ptr, T, B, H,
    HAS_INIT: tl.constexpr, HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, WRITE_STEP: tl.constexpr,
    GEMM_IN_KERNEL: tl.constexpr, RECURRENT_MASK: tl.constexpr, ZONEOUT: tl.constexpr, COMPUTE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, DOT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr, VARIANT: tl.constexpr, RECORD_FLOW: tl.constexpr, CLIP: tl.constexpr,
    LAYER_NORM: tl.constexpr,
):
    # c0_ptr and dc_ptr are unused: a GRU has no cell state.
    rows, cols, row_ok, mask = tile(tile_b, tile_h, B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    state_at = row_offsets(rows, cols, H, 1)
    dh_rec = recurrent_grad(
        dh_rec_ptr, state_at, rec_grad_ptr, w_hh_ptr, w_tiles, rmask_ptr, step < T - 1, rows, cols, row_ok, mask,
        H, 3 * H, GEMM_IN_KERNEL, RECURRENT_MASK, COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST,
    )
    dh_carry, dh = incoming_hidden_grad(
        dh_rec, dh_ptr, dy_ptr, state_at, seq_offsets(t, rows, cols, B, H, 1), live, mask, COMPUTE
    )
    dh = observe_hidden_grad(dh, flow_ptr, clip_ptr, t, rows, tile_h, live, row_ok, T, B, H, RECORD_FLOW, CLIP)

    a_at = seq_offsets(t, rows, cols, B, H, 4 + 3 * LAYER_NORM)
    r = load_block(acts_ptr, a_at, 0, H, live, COMPUTE)
    z = load_block(acts_ptr, a_at, 1, H, live, COMPUTE)
    n = load_block(acts_ptr, a_at, 2, H, live, COMPUTE)
    hg_n = load_block(acts_ptr, a_at, 3, H, live, COMPUTE)
    prev_at = seq_offsets(previous_time(t, REVERSE), rows, cols, B, H, 1)
    h_prev = previous_state(y_ptr, h0_ptr, prev_at, state_at, live, step, HAS_INIT, COMPUTE)

    dh_candidate = dh
    if ZONEOUT:  # the kept share of dL/dh_t passes to h_{t-1}, the rest into the candidate
        keep = zoneout_keep(zoneout_ptr, 0, t, rows, cols, live, T, B, H, ZONEOUT, COMPUTE)
        dh_candidate = (1.0 - keep) * dh
    d_r, d_z, d_n, _, _, _, d_hn, _, dh_prev, _ = pointwise_backward(
        dh_candidate, dh_candidate, r, z, n, hg_n, hg_n, h_prev, h_prev, h_prev, VARIANT)
    if ZONEOUT:
        dh_prev += keep * dh
    d_r = tl.where(live, d_r, 0.0)
    d_z = tl.where(live, d_z, 0.0)
    d_n = tl.where(live, d_n, 0.0)
    d_hn = tl.where(live, d_hn, 0.0)
    # What passes to the step before, besides the recurrent GEMM: a finished row passes its state's
    # gradient through unchanged; a live row passes the z * h path.
    tl.store(dh_ptr + state_at, tl.where(live, dh_prev, dh_carry), mask=mask)

    g_at = seq_offsets(t, rows, cols, B, H, 3)
    store_block(dgx_ptr, g_at, 0, H, d_r, mask)
    store_block(dgx_ptr, g_at, 1, H, d_z, mask)
    store_block(dgx_ptr, g_at, 2, H, d_n, mask)
    if LAYER_NORM:  # the recurrent product's gradient is the one through its normalisation
        d_r, d_z, d_hn, _ = ln.recurrent_backward(
            d_r, d_z, d_hn, d_hn, acts_ptr, a_at + 4 * H, ln_grad_ptr, seq_offsets(t, rows, cols, B, H, 6), ln_ptr,
            live, mask, cols, H, 3, COMPUTE)
    store_block(dhg_ptr, g_at, 0, H, d_r, mask)
    store_block(dhg_ptr, g_at, 1, H, d_z, mask)
    store_block(dhg_ptr, g_at, 2, H, d_hn, mask)
    if WRITE_STEP:
        s_at = row_offsets(rows, cols, H, 3)
        store_block(dstep_ptr, s_at, 0, H, d_r, mask)
        store_block(dstep_ptr, s_at, 1, H, d_z, mask)
        store_block(dstep_ptr, s_at, 2, H, d_hn, mask)


CELLS = {
    "GRU": Cell(
        mode="GRU", gates=3, saved_blocks=4, recurrent_grad_is_input_grad=False,
        reference_update=reference_update, forward_step=forward_step, backward_step=backward_step,
        pointwise_forward=pointwise_forward, pointwise_backward=pointwise_backward,
    ),
}
