"""The Elman cell (torch's nn.RNN / nn.RNNCell): float64 reference step, Triton pointwise arithmetic and
step bodies, specs.

One gate block. Given gx = x W_ih^T + b_ih and hg = h W_hh^T + b_hh:
    h' = act(gx + hg),  act = tanh (mode RNN_TANH, VARIANT 0) or relu (RNN_RELU, VARIANT 1)
Nothing is saved for the backward: both derivatives are functions of h' itself (1 - h'^2; h' > 0, as
torch's relu backward, which passes no gradient at 0), and h' is y at time t.
Zoneout (ZONEOUT, fusedrnn/nn/regularizers.py): h' above is a candidate, h_t = a * h_{t-1} + (1 - a) * h',
and y holds h_t, so the forward then saves h' (1 block, `Cell.zoneout_saved_blocks`).
LAYER_NORM (fusedrnn/cells/layer_norm.py): gx comes normalised, hg = gamma_h * LN(h W_hh^T) + b_hh + beta_h over
H; the raw h W_hh^T is saved (after zoneout's block when there is one).
"""

import torch
import triton
import triton.language as tl

from fusedrnn.cells import Cell
from fusedrnn.cells import layer_norm as ln
from fusedrnn.cells.common import (
    incoming_hidden_grad,
    load_block,
    observe_hidden_grad,
    recurrent_grad,
    recurrent_preactivations,
    row_offsets,
    seq_offsets,
    step_positions,
    store_block,
    store_hidden_and_output,
    tanh,
    tile,
    zone,
    zoneout_keep,
)


def _reference_update(gx, states, w_hh, b_ih, b_hh, recurrent, layer_norm, activation):
    (h,) = states
    gh = (h if recurrent is None else recurrent) @ w_hh.t()
    if layer_norm is not None:
        gh = ln.layer_norm(gh, *layer_norm[2:4])
    pre = gx + gh
    if b_ih is not None:
        pre = pre + b_ih + b_hh
    return (activation(pre),)


def reference_update_tanh(gx, states, w_hh, b_ih=None, b_hh=None, recurrent=None, layer_norm=None):
    """One tanh Elman step in plain torch, any dtype, given gx (B, H) = input_preactivations(x, W_ih, layer_norm).
    states: (h,), (B, H); recurrent: what the recurrent product reads instead of h (recurrent dropout's h * m), if
    given; layer_norm: (g_x, b_x, g_h, b_h), if given: the recurrent product normalised over H before the biases
    (gx comes normalised). Returns (h',)."""
    return _reference_update(gx, states, w_hh, b_ih, b_hh, recurrent, layer_norm, torch.tanh)


def reference_update_relu(gx, states, w_hh, b_ih=None, b_hh=None, recurrent=None, layer_norm=None):
    """One relu Elman step in plain torch, any dtype; arguments as reference_update_tanh's. Returns (h',)."""
    return _reference_update(gx, states, w_hh, b_ih, b_hh, recurrent, layer_norm, torch.relu)


@triton.jit
def pointwise_forward(x, x1, x2, x3, r, r1, r2, r3, h_prev, c_prev, VARIANT: tl.constexpr):
    """(h', no cell state, five fillers: nothing is saved) from the input and recurrent pre-activations of
    the one gate (the others are unused)."""
    pre = x + r
    if VARIANT == 1:  # relu
        h = tl.maximum(pre, 0.0)
    else:
        h = tanh(pre)
    zero = tl.zeros_like(h)
    return h, zero, zero, zero, zero, zero, zero


@triton.jit
def pointwise_backward(dh, dc, s0, s1, s2, s3, s4, h_prev, c_prev, h, VARIANT: tl.constexpr):
    """The pre-activation's gradient (as input's and as recurrent's), none for h_prev beside the recurrent
    GEMM or for a cell state, from that of h' (dh) and h' itself."""
    if VARIANT == 1:  # relu
        d_pre = tl.where(h > 0.0, dh, 0.0)
    else:
        d_pre = dh * (1.0 - h * h)
    zero = tl.zeros_like(dh)
    return d_pre, zero, zero, zero, d_pre, zero, zero, zero, zero, zero


@triton.jit
def forward_step(
    tile_b, tile_h, step, gx_ptr, hg_ptr, w_hh_ptr, w_tiles, b_hh_ptr, h_in_ptr, h_out_ptr, c_ptr, y_ptr, acts_ptr,
    lengths_ptr, rmask_ptr, zoneout_ptr, ln_ptr, T, B, H,
    HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, STORE_ACTS: tl.constexpr, GEMM_IN_KERNEL: tl.constexpr,
    HAS_BIAS: tl.constexpr, RECURRENT_MASK: tl.constexpr, ZONEOUT: tl.constexpr, COMPUTE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, DOT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr, VARIANT: tl.constexpr, LAYER_NORM: tl.constexpr,
):
    # c_ptr is unused (no cell state); acts_ptr too unless zoneout saves the candidate.
    rows, cols, row_ok, mask = tile(tile_b, tile_h, B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    out_at = seq_offsets(t, rows, cols, B, H, 1)
    hg, _, _, _ = recurrent_preactivations(
        hg_ptr, h_in_ptr, w_hh_ptr, w_tiles, b_hh_ptr, rmask_ptr, rows, cols, row_ok, mask, H,
        1, GEMM_IN_KERNEL, HAS_BIAS, RECURRENT_MASK, COMPUTE,
        BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST,
    )
    if LAYER_NORM:  # the product came without b_hh, which is added after the normalisation; saved after h~
        raw_at = seq_offsets(t, rows, cols, B, H, 2) + H if ZONEOUT else out_at
        hg, _, _, _ = ln.save_and_normalise(hg, hg, hg, hg, acts_ptr, raw_at, ln_ptr, b_hh_ptr, cols, H, live, 1,
                                            STORE_ACTS, COMPUTE)
    gx = load_block(gx_ptr, out_at, 0, H, live, COMPUTE)
    h, _, _, _, _, _, _ = pointwise_forward(gx, gx, gx, gx, hg, hg, hg, hg, hg, hg, VARIANT)
    if ZONEOUT:  # h' above is the candidate, saved for the backward (y holds the zoned state)
        if STORE_ACTS:
            store_block(acts_ptr, seq_offsets(t, rows, cols, B, H, 1 + LAYER_NORM), 0, H, h, live)
        h_prev = tl.load(h_in_ptr + row_offsets(rows, cols, H, 1), mask=mask).to(COMPUTE)
        h = zone(h, h_prev, zoneout_keep(zoneout_ptr, 0, t, rows, cols, live, T, B, H, ZONEOUT, COMPUTE))
    store_hidden_and_output(h_in_ptr, h_out_ptr, y_ptr, row_offsets(rows, cols, H, 1), out_at, h, live, mask,
                            HAS_LENGTHS)


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
    # h0_ptr, c0_ptr and dc_ptr are unused: the derivative needs only y_t (with zoneout the candidate in acts),
    # and the pre-activation's gradient is both dgx and dhg (dhg_ptr is written only with LAYER_NORM, whose
    # recurrent product's gradient is the one through the normalisation).
    rows, cols, row_ok, mask = tile(tile_b, tile_h, B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    state_at = row_offsets(rows, cols, H, 1)
    out_at = seq_offsets(t, rows, cols, B, H, 1)
    dh_rec = recurrent_grad(
        dh_rec_ptr, state_at, rec_grad_ptr, w_hh_ptr, w_tiles, rmask_ptr, step < T - 1, rows, cols, row_ok, mask, H, H,
        GEMM_IN_KERNEL, RECURRENT_MASK, COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST,
    )
    dh_carry, dh = incoming_hidden_grad(dh_rec, dh_ptr, dy_ptr, state_at, out_at, live, mask, COMPUTE)
    dh = observe_hidden_grad(dh, flow_ptr, clip_ptr, t, rows, tile_h, live, row_ok, T, B, H, RECORD_FLOW, CLIP)
    if ZONEOUT:  # the candidate h' was saved; its share of dL/dh_t goes into it, the kept share to h_{t-1}
        h = load_block(acts_ptr, seq_offsets(t, rows, cols, B, H, 1 + LAYER_NORM), 0, H, live, COMPUTE)
        keep = zoneout_keep(zoneout_ptr, 0, t, rows, cols, live, T, B, H, ZONEOUT, COMPUTE)
        d_pre, _, _, _, _, _, _, _, _, _ = pointwise_backward((1.0 - keep) * dh, dh, h, h, h, h, h, h, h, h, VARIANT)
        dh_prev = keep * dh
    else:
        h = load_block(y_ptr, out_at, 0, H, live, COMPUTE)
        d_pre, _, _, _, _, _, _, _, _, _ = pointwise_backward(dh, dh, h, h, h, h, h, h, h, h, VARIANT)
        dh_prev = tl.zeros_like(dh)
    d_pre = tl.where(live, d_pre, 0.0)
    # A finished row passes its state's gradient through unchanged; a live row's goes through the GEMM only
    # (and, with zoneout, its kept share).
    tl.store(dh_ptr + state_at, tl.where(live, dh_prev, dh_carry), mask=mask)
    store_block(dgx_ptr, seq_offsets(t, rows, cols, B, H, 1), 0, H, d_pre, mask)
    if LAYER_NORM:  # the recurrent product's gradient is the one through its normalisation
        if ZONEOUT:
            raw_at = seq_offsets(t, rows, cols, B, H, 2) + H
        else:
            raw_at = out_at
        d_pre, _, _, _ = ln.recurrent_backward(
            d_pre, d_pre, d_pre, d_pre, acts_ptr, raw_at, ln_grad_ptr, seq_offsets(t, rows, cols, B, H, 2), ln_ptr,
            live, mask, cols, H, 1, COMPUTE)
        store_block(dhg_ptr, out_at, 0, H, d_pre, mask)
    if WRITE_STEP:
        store_block(dstep_ptr, state_at, 0, H, d_pre, mask)


def _spec(mode: str, reference_update, variant: int) -> Cell:
    return Cell(
        mode=mode, gates=1, saved_blocks=0, zoneout_saved_blocks=1, recurrent_grad_is_input_grad=True,
        reference_update=reference_update, forward_step=forward_step, backward_step=backward_step,
        pointwise_forward=pointwise_forward, pointwise_backward=pointwise_backward, variant=variant,
    )


CELLS = {
    "RNN_TANH": _spec("RNN_TANH", reference_update_tanh, 0),
    "RNN_RELU": _spec("RNN_RELU", reference_update_relu, 1),
}
