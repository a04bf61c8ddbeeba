"""The LSTM cell: float64 reference step, Triton pointwise arithmetic and step bodies, spec.

PyTorch's gate order i, f, g, o. Given the input projection gx = x W_ih^T + b_ih (one GEMM before the
time loop) and the recurrent projection hg = h W_hh^T + b_hh:
    i, f, o = sigmoid(.), g = tanh(.),  c' = f * c + i * g,  h' = o * tanh(c')
Saved for backward per time step: i, f, g, o and c' (5 blocks of H).
LAYER_NORM (fusedrnn/cells/layer_norm.py): the recurrent pre-activations are gamma_h * LN(h W_hh^T) + b_hh +
beta_h (gx comes normalised), h' = o * tanh(gamma_c * LN(c') + beta_c); the raw h W_hh^T is saved after the 5
blocks (9 in all), LN(c')'s statistics are recomputed from the saved c'.

Zoneout (ZONEOUT, fusedrnn/nn/regularizers.py): h' and c' above are candidates, each mixed with the previous
state, h_t = a * h_{t-1} + (1 - a) * h', c_t = e * c_{t-1} + (1 - e) * c' (h' is o * tanh of the candidate
c'). The same 5 blocks are saved, the fifth the zoned c_t (the next step's c_{t-1}); the backward
recomputes the candidate c' = f * c_{t-1} + i * g.
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
    previous_state,
    previous_time,
    record_grad_norm,
    recurrent_grad,
    recurrent_preactivations,
    row_offsets,
    seq_offsets,
    sigmoid,
    step_positions,
    store_block,
    store_blocks,
    store_hidden_and_output,
    tanh,
    tile,
    zone,
    zoneout_keep,
)


def reference_update(gx, states, w_hh, b_ih=None, b_hh=None, recurrent=None, layer_norm=None):
    """One LSTM step in plain torch, any dtype, given gx (B, 4H) = input_preactivations(x, W_ih, layer_norm):
    gates = gx + LN(h W_hh^T) + biases, h' = o * tanh(LN(c')) with layer_norm (g_x, b_x, g_h, b_h, g_c, b_c),
    else without the LNs. states: (h, c), each (B, H); recurrent: what the recurrent product reads instead of h
    (recurrent dropout's h * m), if given. Returns (h', c')."""
    h, c = states
    gh = (h if recurrent is None else recurrent) @ w_hh.t()
    if layer_norm is not None:
        gh = ln.layer_norm(gh, *layer_norm[2:4])
    gates = gx + gh
    if b_ih is not None:
        gates = gates + b_ih + b_hh
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c if layer_norm is None else ln.layer_norm(c, *layer_norm[4:6]))
    return h, c


@triton.jit
def pointwise_forward(x_i, x_f, x_g, x_o, r_i, r_f, r_g, r_o, h_prev, c_prev, VARIANT: tl.constexpr):
    """(h', c', the 5 saved blocks) from each gate's input and recurrent pre-activations; h_prev is unused."""
    i = sigmoid(x_i + r_i)
    f = sigmoid(x_f + r_f)
    g = tanh(x_g + r_g)
    o = sigmoid(x_o + r_o)
    c = f * c_prev + i * g
    return o * tanh(c), c, i, f, g, o, c


@triton.jit
def pointwise_backward(dh, dc, i, f, g, o, c, h_prev, c_prev, h, VARIANT: tl.constexpr):
    """The gradients of the input and recurrent pre-activations (the same here), of h_prev beside the
    recurrent GEMM (none) and of c_prev, from those of h' (dh) and c' (dc) and what the forward saved."""
    tanh_c = tanh(c)
    dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
    d_i = dc * g * i * (1.0 - i)
    d_f = dc * c_prev * f * (1.0 - f)
    d_g = dc * i * (1.0 - g * g)
    d_o = dh * tanh_c * o * (1.0 - o)
    return d_i, d_f, d_g, d_o, d_i, d_f, d_g, d_o, tl.zeros_like(dh), dc * f


@triton.jit
def forward_step(
    tile_b, tile_h, step, gx_ptr, hg_ptr, w_hh_ptr, w_tiles, b_hh_ptr, h_in_ptr, h_out_ptr, c_ptr, y_ptr, acts_ptr,
    lengths_ptr, rmask_ptr, zoneout_ptr, ln_ptr, T, B, H,
    HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, STORE_ACTS: tl.constexpr, GEMM_IN_KERNEL: tl.constexpr,
    HAS_BIAS: tl.constexpr, RECURRENT_MASK: tl.constexpr, ZONEOUT: tl.constexpr, COMPUTE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, DOT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr, VARIANT: tl.constexpr, LAYER_NORM: tl.constexpr,
):
    rows, cols, row_ok, mask = tile(tile_b, tile_h, B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    x_at = seq_offsets(t, rows, cols, B, H, 4)
    r_i, r_f, r_g, r_o = recurrent_preactivations(
        hg_ptr, h_in_ptr, w_hh_ptr, w_tiles, b_hh_ptr, rmask_ptr, rows, cols, row_ok, mask, H,
        4, GEMM_IN_KERNEL, HAS_BIAS, RECURRENT_MASK, COMPUTE,
        BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST,
    )
    a_at = seq_offsets(t, rows, cols, B, H, 5 + 4 * LAYER_NORM)
    if LAYER_NORM:  # the product came without b_hh, which is added after the normalisation
        r_i, r_f, r_g, r_o = ln.save_and_normalise(r_i, r_f, r_g, r_o, acts_ptr, a_at + 5 * H, ln_ptr, b_hh_ptr, cols,
                                                   H, live, 4, STORE_ACTS, COMPUTE)
    state_at = row_offsets(rows, cols, H, 1)
    c_prev = tl.load(c_ptr + state_at, mask=mask)
    h, c, i, f, g, o, _ = pointwise_forward(
        load_block(gx_ptr, x_at, 0, H, live, COMPUTE), load_block(gx_ptr, x_at, 1, H, live, COMPUTE),
        load_block(gx_ptr, x_at, 2, H, live, COMPUTE), load_block(gx_ptr, x_at, 3, H, live, COMPUTE),
        r_i, r_f, r_g, r_o, c_prev, c_prev, VARIANT,
    )
    if LAYER_NORM:
        c_norm, _, _ = ln.normalise_cell_state(c, ln_ptr, cols, H, 4, COMPUTE)
        h = o * tanh(c_norm)
    if ZONEOUT:  # h and c keep part of their previous values; h' above is o * tanh of the candidate c'
        h_prev = tl.load(h_in_ptr + state_at, mask=mask).to(COMPUTE)
        h = zone(h, h_prev, zoneout_keep(zoneout_ptr, 0, t, rows, cols, live, T, B, H, ZONEOUT, COMPUTE))
        c = zone(c, c_prev, zoneout_keep(zoneout_ptr, 1, t, rows, cols, live, T, B, H, ZONEOUT, COMPUTE))
    tl.store(c_ptr + state_at, tl.where(live, c, c_prev), mask=mask)  # c stays in the compute dtype
    store_hidden_and_output(
        h_in_ptr, h_out_ptr, y_ptr, state_at, seq_offsets(t, rows, cols, B, H, 1), h, live, mask, HAS_LENGTHS
    )

    if STORE_ACTS:
        store_block(acts_ptr, a_at, 0, H, i, live)
        store_block(acts_ptr, a_at, 1, H, f, live)
        store_block(acts_ptr, a_at, 2, H, g, live)
        store_block(acts_ptr, a_at, 3, H, o, live)
        store_block(acts_ptr, a_at, 4, H, c, live)


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
    # y_ptr and h0_ptr are unused; an LSTM's gate gradients are dgx itself, and dhg_ptr is read only with
    # LAYER_NORM (the recurrent product's gradient is then the one through the normalisation).
    rows, cols, row_ok, mask = tile(tile_b, tile_h, B, H, BLOCK_B, BLOCK_H)
    active, t = step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS, REVERSE)
    live = mask & active[:, None]
    state_at = row_offsets(rows, cols, H, 1)
    dh_rec = recurrent_grad(
        dh_rec_ptr, state_at, rec_grad_ptr, w_hh_ptr, w_tiles, rmask_ptr, step < T - 1, rows, cols, row_ok, mask,
        H, 4 * H, GEMM_IN_KERNEL, RECURRENT_MASK, COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST,
    )
    dh_carry, dh = incoming_hidden_grad(
        dh_rec, dh_ptr, dy_ptr, state_at, seq_offsets(t, rows, cols, B, H, 1), live, mask, COMPUTE
    )
    dh = observe_hidden_grad(dh, flow_ptr, clip_ptr, t, rows, tile_h, live, row_ok, T, B, H, RECORD_FLOW, CLIP)
    dc_carry = tl.load(dc_ptr + state_at, mask=mask)

    a_at = seq_offsets(t, rows, cols, B, H, 5 + 4 * LAYER_NORM)
    i = load_block(acts_ptr, a_at, 0, H, live, COMPUTE)
    f = load_block(acts_ptr, a_at, 1, H, live, COMPUTE)
    g = load_block(acts_ptr, a_at, 2, H, live, COMPUTE)
    o = load_block(acts_ptr, a_at, 3, H, live, COMPUTE)
    c = load_block(acts_ptr, a_at, 4, H, live, COMPUTE)
    prev_at = seq_offsets(previous_time(t, REVERSE), rows, cols, B, H, 5 + 4 * LAYER_NORM) + 4 * H
    c_prev = previous_state(acts_ptr, c0_ptr, prev_at, state_at, live, step, HAS_INIT, COMPUTE)

    if LAYER_NORM:
        # h' = o * tanh(LN(c')): dL/dh' reaches c' through the normalisation. With zoneout c' is the candidate
        # (recomputed) and only the shares that did not keep the previous states go into the step.
        if ZONEOUT:
            keep_h = zoneout_keep(zoneout_ptr, 0, t, rows, cols, live, T, B, H, ZONEOUT, COMPUTE)
            keep_c = zoneout_keep(zoneout_ptr, 1, t, rows, cols, live, T, B, H, ZONEOUT, COMPUTE)
            c_new = f * c_prev + i * g
            dh_new = (1.0 - keep_h) * dh
            dc_new = (1.0 - keep_c) * dc_carry
        else:
            c_new = c
            dh_new = dh
            dc_new = dc_carry
        c_norm, c_hat, rstd_c = ln.normalise_cell_state(c_new, ln_ptr, cols, H, 4, COMPUTE)
        tanh_c = tanh(c_norm)
        dc_norm = tl.where(live, dh_new * o * (1.0 - tanh_c * tanh_c), 0.0)
        dc_new += ln.cell_state_backward(dc_norm, c_hat, rstd_c, ln_ptr, cols, H, 4, COMPUTE)
        d_i, d_f, d_g, _, _, _, _, _, dh_prev, dc_prev = pointwise_backward(
            tl.zeros_like(dh), dc_new, i, f, g, o, c_new, c_prev, c_prev, c_new, VARIANT)
        d_o = dh_new * tanh_c * o * (1.0 - o)
        if ZONEOUT:
            dh_prev = keep_h * dh
            dc_prev += keep_c * dc_carry
        if RECORD_FLOW:  # dL/dc_t: the zoned state's is what came from later, else the step's total
            if ZONEOUT:
                record_grad_norm(flow_ptr, 1, t, rows, tile_h, dc_carry, live, row_ok, T, B, H)
            else:
                record_grad_norm(flow_ptr, 1, t, rows, tile_h, dc_new, live, row_ok, T, B, H)
        lg_at = seq_offsets(t, rows, cols, B, H, 10)
        store_block(ln_grad_ptr, lg_at, 8, H, dc_norm * c_hat, mask)
        store_block(ln_grad_ptr, lg_at, 9, H, dc_norm, mask)
    elif ZONEOUT:
        # The saved c is the zoned state; the step's candidate (which h' read) is recomputed from its gates.
        # The kept shares of dL/dh_t and dL/dc_t pass to the previous states, the rest into the candidates.
        keep_h = zoneout_keep(zoneout_ptr, 0, t, rows, cols, live, T, B, H, ZONEOUT, COMPUTE)
        keep_c = zoneout_keep(zoneout_ptr, 1, t, rows, cols, live, T, B, H, ZONEOUT, COMPUTE)
        candidate = f * c_prev + i * g
        d_i, d_f, d_g, d_o, _, _, _, _, _, dc_prev = pointwise_backward(
            (1.0 - keep_h) * dh, (1.0 - keep_c) * dc_carry, i, f, g, o, candidate, c_prev, c_prev, candidate, VARIANT)
        dh_prev = keep_h * dh
        dc_prev += keep_c * dc_carry
        if RECORD_FLOW:  # the zoned c_t reaches h_t through nothing: its gradient is what came from later
            record_grad_norm(flow_ptr, 1, t, rows, tile_h, dc_carry, live, row_ok, T, B, H)
    else:
        d_i, d_f, d_g, d_o, _, _, _, _, dh_prev, dc_prev = pointwise_backward(
            dh, dc_carry, i, f, g, o, c, c_prev, c_prev, c, VARIANT)
        if RECORD_FLOW:  # dL/dc_t, the total gradient reaching this step's cell state
            record_grad_norm(flow_ptr, 1, t, rows, tile_h, dc_carry + dh * o * (1.0 - tanh(c) * tanh(c)), live,
                             row_ok, T, B, H)
    d_i = tl.where(live, d_i, 0.0)
    d_f = tl.where(live, d_f, 0.0)
    d_g = tl.where(live, d_g, 0.0)
    d_o = tl.where(live, d_o, 0.0)
    # What passes to the step before, besides the recurrent GEMM: a finished row passes its state's
    # gradient through unchanged; a live row passes the cell-state path only.
    tl.store(dh_ptr + state_at, tl.where(live, dh_prev, dh_carry), mask=mask)
    tl.store(dc_ptr + state_at, tl.where(live, dc_prev, dc_carry), mask=mask)

    g_at = seq_offsets(t, rows, cols, B, H, 4)
    store_block(dgx_ptr, g_at, 0, H, d_i, mask)
    store_block(dgx_ptr, g_at, 1, H, d_f, mask)
    store_block(dgx_ptr, g_at, 2, H, d_g, mask)
    store_block(dgx_ptr, g_at, 3, H, d_o, mask)
    if LAYER_NORM:  # the recurrent product's gradient is the one through its normalisation
        d_i, d_f, d_g, d_o = ln.recurrent_backward(
            d_i, d_f, d_g, d_o, acts_ptr, a_at + 5 * H, ln_grad_ptr, seq_offsets(t, rows, cols, B, H, 10), ln_ptr,
            live, mask, cols, H, 4, COMPUTE)
        store_blocks(dhg_ptr, g_at, H, d_i, d_f, d_g, d_o, d_o, mask, 4)
    if WRITE_STEP:
        s_at = row_offsets(rows, cols, H, 4)
        store_block(dstep_ptr, s_at, 0, H, d_i, mask)
        store_block(dstep_ptr, s_at, 1, H, d_f, mask)
        store_block(dstep_ptr, s_at, 2, H, d_g, mask)
        store_block(dstep_ptr, s_at, 3, H, d_o, mask)


CELLS = {
    "LSTM": Cell(
        mode="LSTM", gates=4, saved_blocks=5, recurrent_grad_is_input_grad=True,
        reference_update=reference_update, forward_step=forward_step, backward_step=backward_step,
        pointwise_forward=pointwise_forward, pointwise_backward=pointwise_backward,
    ),
}
