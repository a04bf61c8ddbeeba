"""The two time-loop kernels that every strategy launches, and the grid-wide barrier.

A launch runs processing steps k_begin..k_end-1 (forward: step k; backward: step T-1-k) of one
direction. Each program loops over its share of the (batch tile, hidden tile) grid (tiles pid, pid +
nprog, ...) and calls the cell's step body (`CELL_STEP`, a Triton function passed as a compile-time
argument, with the cell's `CELL_VARIANT`) on each. The strategies differ only in how they launch these kernels:
- one step per launch, one program per tile (stepwise, fusedstep): the kernel boundary orders the steps;
- all steps in one launch (persistent, SYNC): the programs meet at a grid barrier after every step,
  which needs every program resident at once (cooperative launch, grid <= what fits on the GPU).

Every program owns the same tiles at every step, so per-tile state (c, the gradients dh and dc) is read
and written by one program only. What all programs read, the previous hidden state (forward) and the
later step's gate gradients (backward), alternates between two buffers (`*_flip`: the distance between
them, 0 for the stepwise strategy, which updates h in place between a cuBLAS GEMM and the kernel):
after the barrier of step k, nobody reads the buffer step k read, so step k+1 may overwrite it.

W_ON_CHIP (0: off, no code; else H padded to a power of two) keeps W_hh on chip: the launcher grants one
program per tile (persistent.py checks it), so each program loads its tile's slice of W_hh once, before the
time loop (resident_weights in fusedrnn/cells/common.py), and hands it to every step of its tile as
`w_tiles`, which the step bodies pass to the recurrent product instead of re-reading W_hh from L2.
"""

import triton
import triton.language as tl

from fusedrnn.cells.common import resident_weights


@triton.jit
def grid_barrier(sync_ptr, target, SPIN_LIMIT: tl.constexpr):
    """Wait until the counter at sync_ptr reaches `target` (every program has arrived `target /
    nprog` times). Triton 3.6 orders no other thread's stores before a one-thread atomic, hence the CTA
    barriers around it: every store of this program happens before the release, and no thread reads
    the others' results before the acquire. SPIN_LIMIT > 0 bounds the wait: past it, the flag at
    sync_ptr + 1 is set (the launcher turns it into an error) and later barriers stop waiting."""
    tl.debug_barrier()
    tl.atomic_add(sync_ptr, 1, sem="release", scope="gpu")
    seen = tl.atomic_add(sync_ptr, 0, sem="acquire", scope="gpu")
    if SPIN_LIMIT > 0:
        spins = tl.atomic_add(sync_ptr + 1, 0, sem="relaxed", scope="gpu") * SPIN_LIMIT  # gave up before: skip
        while (seen < target) & (spins < SPIN_LIMIT):
            seen = tl.atomic_add(sync_ptr, 0, sem="acquire", scope="gpu")
            spins += 1
        if seen < target:
            tl.atomic_xchg(sync_ptr + 1, 1, sem="relaxed", scope="gpu")
    else:
        while seen < target:
            seen = tl.atomic_add(sync_ptr, 0, sem="acquire", scope="gpu")
    tl.debug_barrier()


@triton.jit
def tile_count(B, H, BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr):
    tiles_b = tl.cdiv(B, BLOCK_B)
    return tiles_b, tiles_b * tl.cdiv(H, BLOCK_H)


@triton.jit(do_not_specialize=["k_begin", "k_end", "T"])
def forward_kernel(
    gx_ptr, hg_ptr, w_hh_ptr, b_hh_ptr, h_ptr, h_flip, c_ptr, y_ptr, acts_ptr, lengths_ptr, rmask_ptr,
    zoneout_ptr, ln_ptr, sync_ptr, k_begin, k_end, T, B, H,
    CELL_STEP: tl.constexpr, CELL_VARIANT: tl.constexpr, HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr,
    STORE_ACTS: tl.constexpr, GEMM_IN_KERNEL: tl.constexpr, HAS_BIAS: tl.constexpr, RECURRENT_MASK: tl.constexpr,
    ZONEOUT: tl.constexpr, COMPUTE: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, DOT_PRECISION: tl.constexpr,
    UPCAST: tl.constexpr, SYNC: tl.constexpr, SPIN_LIMIT: tl.constexpr, GATES: tl.constexpr, W_ON_CHIP: tl.constexpr,
    LAYER_NORM: tl.constexpr = 0,
):
    """Forward steps k_begin..k_end-1. h_ptr: the state buffers, h_flip elements apart; step k reads
    buffer k % 2 and writes the other. ZONEOUT (0: off, no code) mixes each new state with the previous one
    by zoneout's masks or rates at zoneout_ptr (fusedrnn/cells/common.py, zoneout_keep). LAYER_NORM (0: off,
    no code) normalises the recurrent pre-activations (and an LSTM's c) with the parameters at ln_ptr
    (fusedrnn/cells/layer_norm.py; whole-row tiles)."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    tiles_b, n_tiles = tile_count(B, H, BLOCK_B, BLOCK_H)
    # W_ON_CHIP: this program owns tile pid alone, and its slice of W_hh is loaded here, once.
    w_tiles = resident_weights(w_hh_ptr, pid // tiles_b, H, GATES, BLOCK_H, W_ON_CHIP, False) if W_ON_CHIP else None
    last_tile = tl.minimum(pid + 1, n_tiles) if W_ON_CHIP else n_tiles
    for k in range(k_begin, k_end):
        h_in = h_ptr + (k % 2) * h_flip
        h_out = h_ptr + ((k + 1) % 2) * h_flip
        for tile_id in range(pid, last_tile, nprog):
            CELL_STEP(
                tile_id % tiles_b, tile_id // tiles_b, k, gx_ptr, hg_ptr, w_hh_ptr, w_tiles, b_hh_ptr, h_in, h_out,
                c_ptr, y_ptr, acts_ptr, lengths_ptr, rmask_ptr, zoneout_ptr, ln_ptr, T, B, H, HAS_LENGTHS, REVERSE,
                STORE_ACTS, GEMM_IN_KERNEL, HAS_BIAS, RECURRENT_MASK, ZONEOUT, COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K,
                DOT_PRECISION, UPCAST, CELL_VARIANT, LAYER_NORM,
            )
        if SYNC:
            grid_barrier(sync_ptr, (k - k_begin + 1) * nprog, SPIN_LIMIT)


@triton.jit(do_not_specialize=["k_begin", "k_end", "T"])
def backward_kernel(
    acts_ptr, y_ptr, h0_ptr, c0_ptr, dy_ptr, dh_rec_ptr, w_hh_ptr, dh_ptr, dc_ptr, dgx_ptr, dhg_ptr, dstep_ptr,
    dstep_flip, lengths_ptr, rmask_ptr, zoneout_ptr, flow_ptr, clip_ptr, ln_ptr, ln_grad_ptr, sync_ptr, k_begin,
    k_end, T, B, H,
    CELL_STEP: tl.constexpr, CELL_VARIANT: tl.constexpr, GATES: tl.constexpr, HAS_INIT: tl.constexpr,
    HAS_LENGTHS: tl.constexpr, REVERSE: tl.constexpr, WRITE_STEP: tl.constexpr, GEMM_IN_KERNEL: tl.constexpr,
    RECURRENT_MASK: tl.constexpr, ZONEOUT: tl.constexpr, COMPUTE: tl.constexpr, BLOCK_B: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_K: tl.constexpr, DOT_PRECISION: tl.constexpr, UPCAST: tl.constexpr, SYNC: tl.constexpr,
    SPIN_LIMIT: tl.constexpr, RECORD_FLOW: tl.constexpr, CLIP: tl.constexpr, W_ON_CHIP: tl.constexpr,
    LAYER_NORM: tl.constexpr = 0,
):
    """Backward steps for processing indices k_begin..k_end-1 (step T-1-k). The later step's gate
    gradients, which the recurrent GEMM in the kernel reads: the step buffer written at k-1 (WRITE_STEP,
    two buffers dstep_flip apart, written at k % 2), else dhg at that step's time. RECORD_FLOW and CLIP
    (off by default: no code) record and clip dL/dh_t (fusedrnn/cells/common.py, observe_hidden_grad).
    ZONEOUT (off by default: no code) reads zoneout's masks or rates at zoneout_ptr (common.py, zoneout_keep).
    LAYER_NORM (off by default: no code) runs the normalisations' backward and writes the per-step
    contributions to their parameters' gradients at ln_grad_ptr (fusedrnn/cells/layer_norm.py)."""
    pid = tl.program_id(0)
    nprog = tl.num_programs(0)
    tiles_b, n_tiles = tile_count(B, H, BLOCK_B, BLOCK_H)
    # W_ON_CHIP: this program owns tile pid alone, and its slice of W_hh is loaded here, once.
    w_tiles = resident_weights(w_hh_ptr, pid // tiles_b, H, GATES, BLOCK_H, W_ON_CHIP, True) if W_ON_CHIP else None
    last_tile = tl.minimum(pid + 1, n_tiles) if W_ON_CHIP else n_tiles
    step_size = B * GATES * H
    for k in range(k_begin, k_end):
        step = T - 1 - k
        dstep = dstep_ptr + (k % 2) * dstep_flip
        if WRITE_STEP:
            later = dstep_ptr + ((k + 1) % 2) * dstep_flip
        else:
            # The time of step + 1; on the first step processed (k = 0) nothing is read from it.
            if REVERSE:
                t_later = tl.maximum(k - 1, 0)
            else:
                t_later = tl.minimum(step + 1, T - 1)
            later = dhg_ptr + t_later.to(tl.int64) * step_size
        for tile_id in range(pid, last_tile, nprog):
            CELL_STEP(
                tile_id % tiles_b, tile_id // tiles_b, step, acts_ptr, y_ptr, h0_ptr, c0_ptr, dy_ptr, dh_rec_ptr,
                later, w_hh_ptr, w_tiles, dh_ptr, dc_ptr, dgx_ptr, dhg_ptr, dstep, lengths_ptr, rmask_ptr, zoneout_ptr,
                flow_ptr, clip_ptr, ln_ptr, ln_grad_ptr, T, B, H, HAS_INIT, HAS_LENGTHS, REVERSE, WRITE_STEP,
                GEMM_IN_KERNEL, RECURRENT_MASK, ZONEOUT, COMPUTE, BLOCK_B, BLOCK_H, BLOCK_K, DOT_PRECISION, UPCAST,
                CELL_VARIANT, RECORD_FLOW, CLIP, LAYER_NORM,
            )
        if SYNC:
            grid_barrier(sync_ptr, (k - k_begin + 1) * nprog, SPIN_LIMIT)
