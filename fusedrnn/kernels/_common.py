"""Triton helpers shared by the LSTM and GRU pointwise kernels."""

import triton
import triton.language as tl


@triton.jit
def sigmoid(x):
    # Written out so that it also runs in float64 (gradcheck); exp overflow gives exactly 0 or 1.
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def tanh(x):
    return 2.0 * sigmoid(2.0 * x) - 1.0


@triton.jit
def gate_input(gx_ptrs, hg_ptrs, mask, COMPUTE: tl.constexpr):
    """A gate's pre-activation: input projection plus recurrent projection, in the compute dtype."""
    return tl.load(gx_ptrs, mask=mask).to(COMPUTE) + tl.load(hg_ptrs, mask=mask).to(COMPUTE)


@triton.jit
def step_positions(step, T, rows, lengths_ptr, row_ok, HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr):
    """Which rows are inside their sequence at this step, and the time index each one touches.

    A row of length L is active on steps 0..L-1. The forward direction reads time `step`; the reverse
    direction reads time L-1-step, so it starts at the row's own last element. An inactive row is
    pointed at time `step`, which lies in its padding, so kernels can write its zeros there and every
    padded position is written exactly once over the whole sequence.
    """
    if HAS_LENGTHS:
        length = tl.load(lengths_ptr + rows, mask=row_ok, other=0)
        active = step < length
        if REVERSE:
            t = tl.where(active, length - 1 - step, step)
        else:
            t = tl.zeros_like(rows) + step
    else:
        active = row_ok
        if REVERSE:
            t = tl.zeros_like(rows) + (T - 1 - step)
        else:
            t = tl.zeros_like(rows) + step
    return active & row_ok, t.to(tl.int64)


@triton.jit
def previous_time(t, REVERSE: tl.constexpr):
    """Time index of the step before t in processing order (only meaningful after a row's first step)."""
    if REVERSE:
        return t + 1
    else:
        return tl.maximum(t - 1, 0)


@triton.jit
def tile(B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """This program's rows (batch) and columns (hidden units), with their bounds masks."""
    rows = tl.program_id(0) * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    row_ok = rows < B
    mask = row_ok[:, None] & (cols < H)[None, :]
    return rows, cols, row_ok, mask


@triton.jit
def seq_offsets(t, rows, cols, B, H, WIDTH: tl.constexpr):
    """Offsets of block 0 of a (T, B, WIDTH * H) buffer at per-row times t; add k * H for block k."""
    return ((t * B + rows.to(tl.int64)) * (WIDTH * H))[:, None] + cols[None, :]


@triton.jit
def row_offsets(rows, cols, H, WIDTH: tl.constexpr):
    """Offsets of block 0 of a (B, WIDTH * H) buffer; add k * H for block k."""
    return (rows.to(tl.int64) * (WIDTH * H))[:, None] + cols[None, :]


@triton.jit
def store_hidden_and_output(h_ptr, y_ptr, state_at, out_at, h, live, mask, HAS_LENGTHS: tl.constexpr):
    """The new hidden state into the state buffer (GEMM input of the next step) and into y at time t.

    A finished row keeps its state and writes zeros into its padding.
    """
    if HAS_LENGTHS:
        h_prev = tl.load(h_ptr + state_at, mask=mask)
        tl.store(h_ptr + state_at, tl.where(live, h.to(h_ptr.dtype.element_ty), h_prev), mask=mask)
        tl.store(y_ptr + out_at, tl.where(live, h, 0.0).to(y_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(h_ptr + state_at, h.to(h_ptr.dtype.element_ty), mask=mask)
        tl.store(y_ptr + out_at, h.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def incoming_hidden_grad(dh_rec_ptr, dh_ptr, dy_ptr, state_at, out_at, live, mask, COMPUTE: tl.constexpr):
    """Gradient reaching the hidden state after this step, as (carried, total).

    carried: through the recurrent GEMM of the later step plus the direct path; total adds y_t's own.
    """
    carried = tl.load(dh_rec_ptr + state_at, mask=mask).to(COMPUTE) + tl.load(dh_ptr + state_at, mask=mask)
    return carried, carried + tl.load(dy_ptr + out_at, mask=live, other=0.0).to(COMPUTE)


@triton.jit
def previous_state(seq_ptr, initial_ptr, prev_at, state_at, live, step, HAS_INIT: tl.constexpr, COMPUTE: tl.constexpr):
    """A state before this step: the initial state on a row's first step, else the one saved in a
    time-ordered buffer at the previous time (prev_at)."""
    value = tl.load(seq_ptr + prev_at, mask=live & (step > 0), other=0.0).to(COMPUTE)
    if HAS_INIT:
        value += tl.load(initial_ptr + state_at, mask=live & (step == 0), other=0.0).to(COMPUTE)
    return value


@triton.jit
def load_block(ptr, at, k, H, live, COMPUTE: tl.constexpr):
    """Block k (of H columns) of a saved buffer, zeros outside the live rows."""
    return tl.load(ptr + at + k * H, mask=live, other=0.0).to(COMPUTE)


@triton.jit
def store_block(ptr, at, k, H, value, mask):
    tl.store(ptr + at + k * H, value.to(ptr.dtype.element_ty), mask=mask)
