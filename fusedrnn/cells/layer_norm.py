"""Layer normalisation inside the cells (Ba, Kiros and Hinton 2016), the layers' `layer_norm` option
(fusedrnn/nn/layer_norm.py): the plain-torch form the reference steps use, and the Triton helpers of the step
bodies.

LN(v; gamma, beta) = gamma * (v - mean(v)) / sqrt(var(v) + EPS) + beta, over the features of one row (var
the biased variance, EPS as torch's LayerNorm). The cells normalise the recurrent pre-activations h W_hh^T
over all GATES * H of a row (the input ones are normalised on the host, before the time loop), and an LSTM
its new cell state c' over H. A row's statistics need every hidden unit of the row, so with layer_norm on
every strategy runs tiles that own whole rows (fusedrnn/strategies/tiles.py): the sums below are tile-local.

In the kernels the recurrent product is taken without b_hh; the bias, b_hh + beta_h, is added after the
normalisation (the ops get that sum as b_hh, so their bias gradient is both's). The forward saves the raw
product (GATES blocks of H after the cell's own); the backward recomputes the row statistics from it, and
an LSTM's from the saved c. The parameters' gradients are reduced after the loop on the host from per-step
per-row contributions the backward writes (`LN_GRAD_BLOCKS`): no atomics.
"""

import torch
import triton
import triton.language as tl

from fusedrnn.cells.common import store_blocks

EPS = 1e-5
_KERNEL_EPS = tl.constexpr(EPS)  # the kernels read globals only as constexprs


def layer_norm(v: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """LN over the last dimension, written out (the reference shares no code with torch's layer_norm)."""
    mean = v.mean(-1, keepdim=True)
    var = ((v - mean) ** 2).mean(-1, keepdim=True)
    return weight * (v - mean) / torch.sqrt(var + EPS) + bias


def grad_blocks(gates: int, has_cell_state: bool) -> int:
    """Blocks of H per row and step that the backward writes for the parameters' gradients: the gradient of
    the normalised recurrent pre-activations (b_hh + beta_h's), that times the normalised values (gamma_h's),
    and for an LSTM the normalised c's gradient times the normalised c (gamma_c's) and alone (beta_c's)."""
    return 2 * gates + (2 if has_cell_state else 0)


@triton.jit
def _masked_sum(x, col_ok):
    return tl.sum(tl.where(col_ok[None, :], x, 0.0), axis=1)


@triton.jit
def row_statistics(b0, b1, b2, b3, col_ok, H, GATES: tl.constexpr):
    """Mean and 1 / sqrt(var + EPS) per row over the first GATES tiles (each all H columns of its block)."""
    n = GATES * H
    total = _masked_sum(b0, col_ok)
    if GATES >= 2:
        total += _masked_sum(b1, col_ok)
    if GATES >= 3:
        total += _masked_sum(b2, col_ok)
    if GATES == 4:
        total += _masked_sum(b3, col_ok)
    mean = total / n
    d = b0 - mean[:, None]
    squares = _masked_sum(d * d, col_ok)
    if GATES >= 2:
        d = b1 - mean[:, None]
        squares += _masked_sum(d * d, col_ok)
    if GATES >= 3:
        d = b2 - mean[:, None]
        squares += _masked_sum(d * d, col_ok)
    if GATES == 4:
        d = b3 - mean[:, None]
        squares += _masked_sum(d * d, col_ok)
    return mean, 1.0 / tl.sqrt(squares / n + _KERNEL_EPS)


@triton.jit
def normalised(b, mean, rstd, col_ok):
    """(b - mean) / sqrt(var + EPS), zero in the padding columns."""
    return tl.where(col_ok[None, :], (b - mean[:, None]) * rstd[:, None], 0.0)


@triton.jit
def _load_vector(ptr, k, cols, H, COMPUTE: tl.constexpr):
    return tl.load(ptr + k * H + cols, mask=cols < H, other=0.0).to(COMPUTE)[None, :]


@triton.jit
def normalise_recurrent(r0, r1, r2, r3, ln_ptr, b_ptr, cols, H, GATES: tl.constexpr, COMPUTE: tl.constexpr):
    """gamma_h * LN(r) + b for each gate's tile of the raw recurrent product r (whole rows): gamma_h at ln_ptr
    (GATES * H), b (b_hh + beta_h, GATES * H) at b_ptr."""
    col_ok = cols < H
    mean, rstd = row_statistics(r0, r1, r2, r3, col_ok, H, GATES)
    r0 = normalised(r0, mean, rstd, col_ok) * _load_vector(ln_ptr, 0, cols, H, COMPUTE) + \
        _load_vector(b_ptr, 0, cols, H, COMPUTE)
    if GATES >= 2:
        r1 = normalised(r1, mean, rstd, col_ok) * _load_vector(ln_ptr, 1, cols, H, COMPUTE) + \
            _load_vector(b_ptr, 1, cols, H, COMPUTE)
    if GATES >= 3:
        r2 = normalised(r2, mean, rstd, col_ok) * _load_vector(ln_ptr, 2, cols, H, COMPUTE) + \
            _load_vector(b_ptr, 2, cols, H, COMPUTE)
    if GATES == 4:
        r3 = normalised(r3, mean, rstd, col_ok) * _load_vector(ln_ptr, 3, cols, H, COMPUTE) + \
            _load_vector(b_ptr, 3, cols, H, COMPUTE)
    return r0, r1, r2, r3


@triton.jit
def save_and_normalise(r0, r1, r2, r3, acts_ptr, raw_at, ln_ptr, b_ptr, cols, H, live, GATES: tl.constexpr,
                       STORE_ACTS: tl.constexpr, COMPUTE: tl.constexpr):
    """A forward step's recurrent pre-activations under layer_norm: the raw product (computed without b_hh)
    saved for the backward at raw_at (GATES blocks, when STORE_ACTS), then normalise_recurrent's."""
    if STORE_ACTS:
        store_blocks(acts_ptr, raw_at, H, r0, r1, r2, r3, r3, live, GATES)
    return normalise_recurrent(r0, r1, r2, r3, ln_ptr, b_ptr, cols, H, GATES, COMPUTE)


@triton.jit
def normalise_cell_state(c, ln_ptr, cols, H, GATES: tl.constexpr, COMPUTE: tl.constexpr):
    """(gamma_c * LN(c) + beta_c, LN(c) without them, 1 / std) for an LSTM's whole-row tile of c; gamma_c and
    beta_c follow gamma_h at ln_ptr."""
    col_ok = cols < H
    mean, rstd = row_statistics(c, c, c, c, col_ok, H, 1)
    c_hat = normalised(c, mean, rstd, col_ok)
    return c_hat * _load_vector(ln_ptr, GATES, cols, H, COMPUTE) + _load_vector(ln_ptr, GATES + 1, cols, H, COMPUTE), \
        c_hat, rstd


@triton.jit
def backward_through(d0, d1, d2, d3, v0, v1, v2, v3, w0, w1, w2, w3, rstd, col_ok, H, GATES: tl.constexpr):
    """The gradient of the raw values v (normalised ones v, gamma w, 1 / std rstd per row) from that of
    w * v + beta (d): rstd * (dv - mean(dv) - v * mean(dv * v)) with dv = d * w, means over the row."""
    n = GATES * H
    d0 = d0 * w0
    d1 = d1 * w1
    d2 = d2 * w2
    d3 = d3 * w3
    mean_d = _masked_sum(d0, col_ok)
    mean_dv = _masked_sum(d0 * v0, col_ok)
    if GATES >= 2:
        mean_d += _masked_sum(d1, col_ok)
        mean_dv += _masked_sum(d1 * v1, col_ok)
    if GATES >= 3:
        mean_d += _masked_sum(d2, col_ok)
        mean_dv += _masked_sum(d2 * v2, col_ok)
    if GATES == 4:
        mean_d += _masked_sum(d3, col_ok)
        mean_dv += _masked_sum(d3 * v3, col_ok)
    mean_d = (mean_d / n)[:, None]
    mean_dv = (mean_dv / n)[:, None]
    r = rstd[:, None]
    return (tl.where(col_ok[None, :], r * (d0 - mean_d - v0 * mean_dv), 0.0),
            tl.where(col_ok[None, :], r * (d1 - mean_d - v1 * mean_dv), 0.0),
            tl.where(col_ok[None, :], r * (d2 - mean_d - v2 * mean_dv), 0.0),
            tl.where(col_ok[None, :], r * (d3 - mean_d - v3 * mean_dv), 0.0))


@triton.jit
def cell_state_backward(dc_norm, c_hat, rstd, ln_ptr, cols, H, GATES: tl.constexpr, COMPUTE: tl.constexpr):
    """An LSTM's c gradient through its normalisation, from that of gamma_c * LN(c) + beta_c (dc_norm)."""
    gamma = _load_vector(ln_ptr, GATES, cols, H, COMPUTE)
    dc, _, _, _ = backward_through(dc_norm, dc_norm, dc_norm, dc_norm, c_hat, c_hat, c_hat, c_hat, gamma, gamma,
                                   gamma, gamma, rstd, cols < H, H, 1)
    return dc


@triton.jit
def recurrent_backward(d0, d1, d2, d3, saved_ptr, saved_at, grad_ptr, grad_at, ln_ptr, live, mask, cols, H,
                       GATES: tl.constexpr, COMPUTE: tl.constexpr):
    """The gradient of the raw recurrent product (what the recurrent GEMM carries back) from that of the
    normalised pre-activations (d, zero outside the live elements), with the raw product saved at saved_at
    (GATES blocks). Writes the parameters' per-row contributions at grad_at (blocks 0..2 * GATES - 1, see
    grad_blocks) for every element of the tile (mask), zeros outside the live ones: each (t, b) is written
    once over the loop, as dgx is."""
    col_ok = cols < H
    v0 = tl.load(saved_ptr + saved_at, mask=live, other=0.0).to(COMPUTE)
    v1 = v0
    v2 = v0
    v3 = v0
    if GATES >= 2:
        v1 = tl.load(saved_ptr + saved_at + H, mask=live, other=0.0).to(COMPUTE)
    if GATES >= 3:
        v2 = tl.load(saved_ptr + saved_at + 2 * H, mask=live, other=0.0).to(COMPUTE)
    if GATES == 4:
        v3 = tl.load(saved_ptr + saved_at + 3 * H, mask=live, other=0.0).to(COMPUTE)
    mean, rstd = row_statistics(v0, v1, v2, v3, col_ok, H, GATES)
    v0 = normalised(v0, mean, rstd, col_ok)
    v1 = normalised(v1, mean, rstd, col_ok)
    v2 = normalised(v2, mean, rstd, col_ok)
    v3 = normalised(v3, mean, rstd, col_ok)
    store_blocks(grad_ptr, grad_at, H, d0, d1, d2, d3, d3, mask, GATES)
    store_blocks(grad_ptr, grad_at + GATES * H, H, d0 * v0, d1 * v1, d2 * v2, d3 * v3, d3 * v3, mask, GATES)
    w0 = _load_vector(ln_ptr, 0, cols, H, COMPUTE)
    w1 = w0
    w2 = w0
    w3 = w0
    if GATES >= 2:
        w1 = _load_vector(ln_ptr, 1, cols, H, COMPUTE)
    if GATES >= 3:
        w2 = _load_vector(ln_ptr, 2, cols, H, COMPUTE)
    if GATES == 4:
        w3 = _load_vector(ln_ptr, 3, cols, H, COMPUTE)
    return backward_through(d0, d1, d2, d3, v0, v1, v2, v3, w0, w1, w2, w3, rstd, col_ok, H, GATES)

