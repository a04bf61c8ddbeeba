"""Triton helpers shared by the cells' step bodies.

A step body works on one tile: BLOCK_B batch rows by BLOCK_H hidden units of one time step. Buffers are
time-major: a (T, B, WIDTH * H) buffer holds WIDTH blocks of H per row and time; a (B, WIDTH * H) buffer
holds one step. Arithmetic runs in COMPUTE (float32, or float64 for gradcheck) whatever the storage type.
"""

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
def tile(tile_b, tile_h, B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    """The rows (batch) and columns (hidden units) of tile (tile_b, tile_h), with their bounds masks."""
    rows = tile_b * BLOCK_B + tl.arange(0, BLOCK_B)
    cols = tile_h * BLOCK_H + tl.arange(0, BLOCK_H)
    row_ok = rows < B
    mask = row_ok[:, None] & (cols < H)[None, :]
    return rows, cols, row_ok, mask


@triton.jit
def dot(a, b, acc, UPCAST: tl.constexpr, COMPUTE: tl.constexpr, DOT_PRECISION: tl.constexpr):
    """acc + a @ b. DOT_PRECISION matters for float32 only: "ieee" (exact-rounded products), "tf32"
    (tensor cores, 10-bit mantissas; what cuDNN's RNNs use by default) or "tf32x3" (three TF32 products per
    multiply, about float32's accuracy; FUSEDRNN_TF32X3). UPCAST: 16-bit operands are
    widened to float32 first, which Triton's interpreter needs (its bfloat16 dot is wrong); the products
    of 16-bit values are exact in float32, so the result is the GPU's up to summation order."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=DOT_PRECISION, out_dtype=COMPUTE)


@triton.jit
def tile_matmul(
    a_ptr, a_row_stride, b_ptr, b_k_stride, b_col_stride, rows, cols, a_rows_ok, col_ok, K,
    COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """This tile of A @ B: A's `rows` (unit stride along K), B's `cols` (strides given), the reduction
    over K in chunks of BLOCK_K. A is what other programs wrote (a state or gradient of the step before),
    so it is read from L2 (.cg): L1 is not coherent between programs."""
    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    a_rows = rows.to(tl.int64)[:, None] * a_row_stride
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        a = tl.load(a_ptr + a_rows + ks[None, :], mask=a_rows_ok[:, None] & k_ok[None, :], other=0.0,
                    cache_modifier=".cg")
        b = tl.load(
            b_ptr + ks[:, None] * b_k_stride + cols[None, :] * b_col_stride,
            mask=k_ok[:, None] & col_ok[None, :], other=0.0,
        )
        acc = dot(a, b, acc, UPCAST, COMPUTE, DOT_PRECISION)
    return acc


@triton.jit
def gate_matmul(
    a_ptr, K, w_ptr, b_ptr, rows, cols, row_ok, H,
    GATES: tl.constexpr, HAS_BIAS: tl.constexpr, COMPUTE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, a_mask_ptr, A_MASK: tl.constexpr,
):
    """Every gate's a @ W^T + b on this tile, as four tiles (zeros past GATES): A (B, K) and W (GATES * H, K)
    row-major, b (GATES * H,); each chunk of A read once for all gates. K = 0 gives the bias alone. A may be
    what other programs wrote (a state of the step before), so it is read from L2 (.cg): L1 is not coherent
    between programs. A_MASK: the product reads A * M, M (B, K) at a_mask_ptr in the compute dtype (recurrent
    dropout's mask)."""
    r0 = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    r1 = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    r2 = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    r3 = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    col_ok = cols < H
    a_rows = rows.to(tl.int64)[:, None] * K
    gate_stride = H * K  # gate g's rows of W start at g * H * K
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        k_ok = ks < K
        a = tl.load(a_ptr + a_rows + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0,
                    cache_modifier=".cg")
        if A_MASK:
            m = tl.load(a_mask_ptr + a_rows + ks[None, :], mask=row_ok[:, None] & k_ok[None, :], other=0.0)
            a = (a.to(COMPUTE) * m).to(a_ptr.dtype.element_ty)
        w_at = w_ptr + ks[:, None] + cols[None, :] * K
        w_ok = k_ok[:, None] & col_ok[None, :]
        r0 = dot(a, tl.load(w_at, mask=w_ok, other=0.0), r0, UPCAST, COMPUTE, DOT_PRECISION)
        if GATES >= 2:
            r1 = dot(a, tl.load(w_at + gate_stride, mask=w_ok, other=0.0), r1, UPCAST, COMPUTE, DOT_PRECISION)
        if GATES >= 3:
            r2 = dot(a, tl.load(w_at + 2 * gate_stride, mask=w_ok, other=0.0), r2, UPCAST, COMPUTE, DOT_PRECISION)
        if GATES == 4:
            r3 = dot(a, tl.load(w_at + 3 * gate_stride, mask=w_ok, other=0.0), r3, UPCAST, COMPUTE, DOT_PRECISION)
    return add_gate_bias(r0, r1, r2, r3, b_ptr, cols, col_ok, H, GATES, HAS_BIAS, COMPUTE)


@triton.jit
def add_gate_bias(r0, r1, r2, r3, b_ptr, cols, col_ok, H, GATES: tl.constexpr, HAS_BIAS: tl.constexpr,
                  COMPUTE: tl.constexpr):
    """Each gate's tile plus its columns of b (GATES * H,), after the product (the order both products keep)."""
    if HAS_BIAS:
        r0 += tl.load(b_ptr + cols, mask=col_ok, other=0.0).to(COMPUTE)[None, :]
        if GATES >= 2:
            r1 += tl.load(b_ptr + H + cols, mask=col_ok, other=0.0).to(COMPUTE)[None, :]
        if GATES >= 3:
            r2 += tl.load(b_ptr + 2 * H + cols, mask=col_ok, other=0.0).to(COMPUTE)[None, :]
        if GATES == 4:
            r3 += tl.load(b_ptr + 3 * H + cols, mask=col_ok, other=0.0).to(COMPUTE)[None, :]
    return r0, r1, r2, r3


# ---- W_hh on chip (fusedrnn/strategies/persistent.py, FUSEDRNN_W_ON_CHIP): opt-in, a compile-time flag ------
# A program that owns one tile for the whole time loop loads its slice of W_hh once, before the loop, as GATES
# tiles of [K_PAD, BLOCK_H] (K_PAD: H padded to a power of two for tl.arange; rows past H are zeros), and each
# step multiplies with them over the whole K in one dot per gate instead of re-reading W_hh from L2 in chunks.
# Triton keeps such loop-invariant dot operands in shared memory (benchmarks/NOTES.md, 2026-12-04). The step
# bodies get the tiles as `w_tiles`, a tuple of GATES tensors, or None (off: the code is what it was without).


@triton.jit
def resident_weights(w_hh_ptr, tile_h, H, GATES: tl.constexpr, BLOCK_H: tl.constexpr, K_PAD: tl.constexpr,
                     FOR_GRAD: tl.constexpr):
    """Hidden tile tile_h's slice of W_hh (GATES * H, H), row-major, as a tuple of GATES [K_PAD, BLOCK_H] tiles.
    Forward (FOR_GRAD false): tile g is W_hh[g*H + cols, :]^T, gate g's columns of h @ W_hh^T. Backward: tile g is
    W_hh[g*H : g*H + H, cols], what gate g's block of the later step's gradients contributes to dL/dh[:, cols]."""
    cols = tile_h * BLOCK_H + tl.arange(0, BLOCK_H)
    ks = tl.arange(0, K_PAD)
    ok = (ks < H)[:, None] & (cols < H)[None, :]
    if FOR_GRAD:
        at = ks[:, None] * H + cols[None, :]
    else:
        at = ks[:, None] + cols[None, :] * H
    w_tiles = (tl.load(w_hh_ptr + at, mask=ok, other=0.0),)
    if GATES >= 2:
        w_tiles = w_tiles + (tl.load(w_hh_ptr + H * H + at, mask=ok, other=0.0),)
    if GATES >= 3:
        w_tiles = w_tiles + (tl.load(w_hh_ptr + 2 * H * H + at, mask=ok, other=0.0),)
    if GATES == 4:
        w_tiles = w_tiles + (tl.load(w_hh_ptr + 3 * H * H + at, mask=ok, other=0.0),)
    return w_tiles


@triton.jit
def resident_gate_matmul(
    a_ptr, K, w_tiles, rows, row_ok, COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, a_mask_ptr, A_MASK: tl.constexpr,
):
    """gate_matmul's products (no bias) with the forward tiles of resident_weights: A's rows (B, K) read once,
    whole (from L2, .cg, as there), one dot per gate. Four tiles, zeros past the gates."""
    K_PAD: tl.constexpr = w_tiles[0].shape[0]
    ks = tl.arange(0, K_PAD)
    at = rows.to(tl.int64)[:, None] * K + ks[None, :]
    a_ok = row_ok[:, None] & (ks < K)[None, :]
    a = tl.load(a_ptr + at, mask=a_ok, other=0.0, cache_modifier=".cg")
    if A_MASK:
        a = (a.to(COMPUTE) * tl.load(a_mask_ptr + at, mask=a_ok, other=0.0)).to(a_ptr.dtype.element_ty)
    zeros = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    r0 = dot(a, w_tiles[0], zeros, UPCAST, COMPUTE, DOT_PRECISION)
    r1, r2, r3 = zeros, zeros, zeros
    if len(w_tiles) >= 2:
        r1 = dot(a, w_tiles[1], zeros, UPCAST, COMPUTE, DOT_PRECISION)
    if len(w_tiles) >= 3:
        r2 = dot(a, w_tiles[2], zeros, UPCAST, COMPUTE, DOT_PRECISION)
    if len(w_tiles) == 4:
        r3 = dot(a, w_tiles[3], zeros, UPCAST, COMPUTE, DOT_PRECISION)
    return r0, r1, r2, r3


@triton.jit
def resident_grad_matmul(
    g_ptr, GH, H, w_tiles, rows, g_rows_ok, COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """tile_matmul's G @ W_hh[:, cols] with the backward tiles of resident_weights: G (B, GH) the later step's
    gate gradients (what other programs wrote: from L2, .cg), one block of H per gate, one dot each."""
    K_PAD: tl.constexpr = w_tiles[0].shape[0]
    ks = tl.arange(0, K_PAD)
    at = rows.to(tl.int64)[:, None] * GH + ks[None, :]
    g_ok = g_rows_ok[:, None] & (ks < H)[None, :]
    acc = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    for gate in tl.static_range(len(w_tiles)):
        g = tl.load(g_ptr + at + gate * H, mask=g_ok, other=0.0, cache_modifier=".cg")
        acc = dot(g, w_tiles[gate], acc, UPCAST, COMPUTE, DOT_PRECISION)
    return acc


@triton.jit
def recurrent_preactivations(
    hg_ptr, h_in_ptr, w_hh_ptr, w_tiles, b_hh_ptr, rmask_ptr, rows, cols, row_ok, mask, H,
    GATES: tl.constexpr, GEMM_IN_KERNEL: tl.constexpr, HAS_BIAS: tl.constexpr, RECURRENT_MASK: tl.constexpr,
    COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """Every gate's recurrent pre-activation h_{t-1} W_hh^T + b_hh on this tile, as four tiles (zeros
    past GATES): read from the stepwise GEMM's output hg (B, GATES * H), or
    (GEMM_IN_KERNEL) computed here from the whole previous state.
    RECURRENT_MASK: the product reads h_{t-1} * m, m the (B, H) recurrent-dropout mask at rmask_ptr (in
    the compute dtype; the stepwise GEMM's caller masks h itself). w_tiles: this tile's W_hh on chip
    (resident_weights), or None: read from w_hh_ptr."""
    if GEMM_IN_KERNEL and w_tiles is not None:
        r0, r1, r2, r3 = resident_gate_matmul(
            h_in_ptr, H, w_tiles, rows, row_ok, COMPUTE, BLOCK_B, BLOCK_H, DOT_PRECISION, UPCAST, rmask_ptr,
            RECURRENT_MASK,
        )
        r0, r1, r2, r3 = add_gate_bias(r0, r1, r2, r3, b_hh_ptr, cols, cols < H, H, GATES, HAS_BIAS, COMPUTE)
    elif GEMM_IN_KERNEL:
        r0, r1, r2, r3 = gate_matmul(
            h_in_ptr, H, w_hh_ptr, b_hh_ptr, rows, cols, row_ok, H, GATES, HAS_BIAS, COMPUTE,
            BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST, rmask_ptr, RECURRENT_MASK,
        )
    else:
        r0, r1, r2, r3, _ = load_blocks(hg_ptr, row_offsets(rows, cols, H, GATES), H, mask, GATES, COMPUTE,
                                        BLOCK_B, BLOCK_H)
    return r0, r1, r2, r3


@triton.jit
def recurrent_grad(
    dh_rec_ptr, state_at, rec_grad_ptr, w_hh_ptr, w_tiles, rmask_ptr, has_rec, rows, cols, row_ok, mask, H, GH,
    GEMM_IN_KERNEL: tl.constexpr, RECURRENT_MASK: tl.constexpr, COMPUTE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr,
    DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr,
):
    """The gradient reaching h_t through the later step's recurrent GEMM, dhg_later @ W_hh, on this
    tile: read from the stepwise GEMM's output, or (GEMM_IN_KERNEL) computed here from the later step's
    (B, GH) gate gradients at rec_grad_ptr (none when has_rec is false: the first step processed).
    RECURRENT_MASK: that product read h_t * m, so its gradient is (dhg_later @ W_hh) * m. w_tiles: this tile's
    columns of W_hh on chip (resident_weights), or None: read from w_hh_ptr."""
    if GEMM_IN_KERNEL and w_tiles is not None:
        grad = resident_grad_matmul(
            rec_grad_ptr, GH, H, w_tiles, rows, row_ok & has_rec, COMPUTE, BLOCK_B, BLOCK_H, DOT_PRECISION, UPCAST,
        )
    elif GEMM_IN_KERNEL:
        grad = tile_matmul(
            rec_grad_ptr, GH, w_hh_ptr, H, 1, rows, cols, row_ok & has_rec, cols < H, GH,
            COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST,
        )
    else:
        grad = tl.load(dh_rec_ptr + state_at, mask=mask).to(COMPUTE)
    if RECURRENT_MASK:
        grad = grad * tl.load(rmask_ptr + state_at, mask=mask, other=0.0)
    return grad


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
def seq_offsets(t, rows, cols, B, H, WIDTH: tl.constexpr):
    """Offsets of block 0 of a (T, B, WIDTH * H) buffer at per-row times t; add k * H for block k."""
    return ((t * B + rows.to(tl.int64)) * (WIDTH * H))[:, None] + cols[None, :]


@triton.jit
def row_offsets(rows, cols, H, WIDTH: tl.constexpr):
    """Offsets of block 0 of a (B, WIDTH * H) buffer; add k * H for block k."""
    return (rows.to(tl.int64) * (WIDTH * H))[:, None] + cols[None, :]


@triton.jit
def store_hidden_and_output(
    h_in_ptr, h_out_ptr, y_ptr, state_at, out_at, h, live, mask, HAS_LENGTHS: tl.constexpr
):
    """The new hidden state into the state buffer (input of the next step) and into y at time t.

    A finished row keeps its state (h_in) and writes zeros into its padding. h_in and h_out are one
    buffer in the stepwise strategy; with the GEMM in the kernel other programs still read h_in.
    """
    if HAS_LENGTHS:
        h_prev = tl.load(h_in_ptr + state_at, mask=mask)
        tl.store(h_out_ptr + state_at, tl.where(live, h.to(h_out_ptr.dtype.element_ty), h_prev), mask=mask)
        tl.store(y_ptr + out_at, tl.where(live, h, 0.0).to(y_ptr.dtype.element_ty), mask=mask)
    else:
        tl.store(h_out_ptr + state_at, h.to(h_out_ptr.dtype.element_ty), mask=mask)
        tl.store(y_ptr + out_at, h.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def incoming_hidden_grad(dh_rec, dh_ptr, dy_ptr, state_at, out_at, live, mask, COMPUTE: tl.constexpr):
    """Gradient reaching the hidden state after this step, as (carried, total).

    carried: through the recurrent GEMM of the later step (dh_rec) plus the direct path; total adds
    y_t's own.
    """
    carried = dh_rec + tl.load(dh_ptr + state_at, mask=mask)
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


# ---- Gradient flow through time (fusedrnn/gradient_flow.py): opt-in, compile-time flags -------------------
# Off (RECORD_FLOW False, CLIP 0) these helpers compile to nothing. CLIP: 0 off, 1 by value, 2 by norm.


@triton.jit
def record_grad_norm(flow_ptr, q: tl.constexpr, t, rows, tile_h, grad, live, row_ok, T, B, H):
    """This tile's share of ||grad||^2 for each of its rows at the row's own time t, into column tile_h of
    the (Q, T, B, cdiv(H, 16)) buffer at flow_ptr (quantity q: 0 the hidden state, 1 the cell state); 0
    for a row outside its sequence. The host sums the columns after the loop: no atomics, deterministic.
    cdiv(H, 16) columns hold every strategy's tiles (tiles.py: no tile is narrower than 16 or H)."""
    partial = tl.sum(tl.where(live, grad * grad, 0.0), axis=1)
    at = (((t + q * T) * B + rows.to(tl.int64)) * tl.cdiv(H, 16)) + tile_h
    tl.store(flow_ptr + at, partial.to(flow_ptr.dtype.element_ty), mask=row_ok)


@triton.jit
def observe_hidden_grad(
    dh, flow_ptr, clip_ptr, t, rows, tile_h, live, row_ok, T, B, H,
    RECORD_FLOW: tl.constexpr, CLIP: tl.constexpr,
):
    """dL/dh_t, the total gradient reaching this step's hidden state (from y_t, from h_n, through the
    recurrence), as the step goes on to use it: its norm recorded first (RECORD_FLOW), then clipped
    elementwise to [-v, v] with v at clip_ptr (CLIP 1; a tensor, since a float argument would be rounded to
    float32), or scaled by each row's factor min(1, v / ||dL/dh_t||) at clip_ptr + row, which the host
    computed before this step (CLIP 2: a row's norm needs every tile of the row)."""
    if RECORD_FLOW:
        record_grad_norm(flow_ptr, 0, t, rows, tile_h, dh, live, row_ok, T, B, H)
    if CLIP == 1:
        threshold = tl.load(clip_ptr).to(dh.dtype)
        dh = tl.minimum(tl.maximum(dh, -threshold), threshold)
    elif CLIP == 2:
        dh = dh * tl.load(clip_ptr + rows, mask=row_ok, other=1.0).to(dh.dtype)[:, None]
    return dh


@triton.jit
def load_blocks(ptr, at, H, mask, COUNT: tl.constexpr, COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr,
                BLOCK_H: tl.constexpr):
    """Blocks 0..COUNT-1 (COUNT <= 5) of a buffer, as five tiles: zeros past COUNT and outside the mask."""
    b0 = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    b1 = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    b2 = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    b3 = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    b4 = tl.zeros((BLOCK_B, BLOCK_H), dtype=COMPUTE)
    if COUNT >= 1:
        b0 = load_block(ptr, at, 0, H, mask, COMPUTE)
    if COUNT >= 2:
        b1 = load_block(ptr, at, 1, H, mask, COMPUTE)
    if COUNT >= 3:
        b2 = load_block(ptr, at, 2, H, mask, COMPUTE)
    if COUNT >= 4:
        b3 = load_block(ptr, at, 3, H, mask, COMPUTE)
    if COUNT >= 5:
        b4 = load_block(ptr, at, 4, H, mask, COMPUTE)
    return b0, b1, b2, b3, b4


@triton.jit
def store_blocks(ptr, at, H, b0, b1, b2, b3, b4, mask, COUNT: tl.constexpr):
    """Blocks 0..COUNT-1 (COUNT <= 5) of a buffer from the first COUNT of five tiles."""
    if COUNT >= 1:
        store_block(ptr, at, 0, H, b0, mask)
    if COUNT >= 2:
        store_block(ptr, at, 1, H, b1, mask)
    if COUNT >= 3:
        store_block(ptr, at, 2, H, b2, mask)
    if COUNT >= 4:
        store_block(ptr, at, 3, H, b3, mask)
    if COUNT >= 5:
        store_block(ptr, at, 4, H, b4, mask)


# ---- Zoneout (fusedrnn/nn/regularizers.py): opt-in, a compile-time flag -------------------------------------
# ZONEOUT 0: off (no code); 1: training, per-element masks; 2: evaluation, the expectation with the rates.


@triton.jit
def zoneout_keep(zoneout_ptr, q: tl.constexpr, t, rows, cols, live, T, B, H, ZONEOUT: tl.constexpr,
                 COMPUTE: tl.constexpr):
    """The share of state q's previous value (0: h, 1: an LSTM's c) that this step keeps, a in
    state = a * previous + (1 - a) * candidate: zoneout's mask at the row's own time t (ZONEOUT 1: a
    (states, T, B, H) uint8 buffer, 1 keeps the previous value), or the rate (ZONEOUT 2: (states,) in COMPUTE,
    the expectation the paper uses at evaluation). Zero outside the live elements, whose state is kept anyway."""
    if ZONEOUT == 1:
        at = (((q * T + t) * B + rows.to(tl.int64)) * H)[:, None] + cols[None, :]
        keep = tl.load(zoneout_ptr + at, mask=live, other=0).to(COMPUTE)
    else:
        keep = tl.where(live, tl.load(zoneout_ptr + q).to(COMPUTE), 0.0)
    return keep


@triton.jit
def zone(candidate, previous, keep):
    """The zoned state: keep * previous + (1 - keep) * candidate (fusedrnn/reference.py's order)."""
    return keep * previous + (1.0 - keep) * candidate
