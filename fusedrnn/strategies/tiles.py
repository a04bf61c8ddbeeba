"""Tile, chunk and warp choice for every strategy, in one place.

A tile is BLOCK_B batch rows by BLOCK_H hidden units of one step; `tl.dot` needs every side >= 16, so
strategies with the recurrent GEMM in the kernel use tiles of at least 16 x 16. To be tuned on GPUs:
`benchmarks/profile_steps.py --sweep` times alternatives (it patches `choose`).
"""

import os
from dataclasses import dataclass

import torch

# The persistent strategy's tiles, most programs first: the first whose tile count fits on the GPU (one
# program per multiprocessor) is taken, else the last (each program then runs several tiles). Small tiles
# mean more programs sharing the step's GEMM; larger ones read W_hh from L2 fewer times.
# (BLOCK_B, BLOCK_H, num_warps, BLOCK_K for 16-bit types, BLOCK_K for float32): the K chunk is the largest
# that compiles without register spills for sm_90a (benchmarks/compile_check.py); fewer, larger chunks
# shorten each step's chain of dependent loads (the tile sweeps in benchmarks/NOTES.md).
PERSISTENT_TILES = (
    (16, 16, 4, 256, 64),
    (16, 32, 4, 128, 64),
    (32, 32, 8, 64, 64),
    (64, 32, 8, 128, 128),
)
# FUSEDRNN_K_STAGES=2: the persistent kernels' K loop (the in-kernel GEMM's chunks) software-pipelined two deep, the
# next chunk's loads issued before this chunk's dot. Safe across the grid barrier because Triton 3.6 pipelines
# only innermost loops and the barrier's spin loop keeps the time loop from being one: a pipelined loop inside a
# step issues its loads after the step's barrier and waits for them before the next (`benchmarks/compile_check.py
# --k-stages 2` fails a kernel whose time loop got pipelined; tests/test_compile.py). Opt-in until a GPU run has
# stress-tested and timed it.
PERSISTENT_K_STAGES = int(os.environ.get("FUSEDRNN_K_STAGES", "1") or 1)
if PERSISTENT_K_STAGES not in (1, 2, 3):
    raise ValueError(f"FUSEDRNN_K_STAGES={PERSISTENT_K_STAGES}: the persistent K loop's depth is 1, 2 or 3")
# Not a strategy: the cells' one-launch step (single_step.py), whatever their backend names.
SINGLE_STEP = "single-step"
PERSISTENT_SHAPES = tuple((block_b, block_h) for block_b, block_h, *_ in PERSISTENT_TILES)


# The host's arithmetic for tiles: triton.cdiv and triton.next_power_of_2 are constexpr functions now, each call
# tens of microseconds of host time through their wrapper, several per launch.
def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n, 0 for 0 (as triton.next_power_of_2)."""
    return 1 << (n - 1).bit_length() if n > 0 else 0


@dataclass(frozen=True)
class Tiles:
    block_b: int
    block_h: int
    block_k: int  # the in-kernel GEMM's reduction chunk (unused by the stepwise strategy)
    num_warps: int
    num_stages: int = 0  # software pipelining depth of the kernel's loops; 0: Triton's default

    def count(self, B: int, H: int) -> int:
        return cdiv(B, self.block_b) * cdiv(H, self.block_h)

    def meta(self) -> dict:
        meta = dict(BLOCK_B=self.block_b, BLOCK_H=self.block_h, BLOCK_K=self.block_k, num_warps=self.num_warps)
        return meta | (dict(num_stages=self.num_stages) if self.num_stages else {})


def _chunk(dtype: torch.dtype) -> int:
    return 64 if dtype.itemsize == 2 else 32


def flow_columns(H: int) -> int:
    """Columns of the gradient-flow buffer (fusedrnn/cells/common.py, record_grad_norm): one per tile along H,
    for every strategy's tiles, which are at least 16 wide or cover all of H (checked in `choose`)."""
    return cdiv(H, 16)


# Layer norm (fusedrnn/cells/layer_norm.py) needs a row's statistics over all its hidden units, so with it every
# strategy takes tiles that own whole rows: BLOCK_H = H rounded up to a power of two (a tile holds every gate's
# block of it), few rows. Past this H the tiles' registers would run out (the in-kernel GEMM keeps GATES
# accumulators of 16 x BLOCK_H): refused rather than spilled to no end.
LAYER_NORM_MAX_HIDDEN = 1024


def choose(strategy: str, B: int, H: int, dtype: torch.dtype, programs: int = 0, whole_rows: bool = False) -> Tiles:
    """Tiles for a strategy (its backend value, or SINGLE_STEP) at batch B, hidden size H; `programs`: how many programs
    can be resident at once (the persistent strategy; 0 elsewhere); whole_rows: tiles that hold every hidden unit
    of their rows (layer norm)."""
    tiles = _whole_rows(strategy, B, H, dtype) if whole_rows else _choose(strategy, B, H, dtype, programs)
    if cdiv(H, tiles.block_h) > flow_columns(H):
        raise AssertionError(f"fusedrnn: tiles {tiles} are narrower than the gradient-flow buffer assumes")
    return tiles


def _whole_rows(strategy: str, B: int, H: int, dtype: torch.dtype) -> Tiles:
    if H > LAYER_NORM_MAX_HIDDEN:
        raise ValueError(f"fusedrnn: layer_norm runs whole-row tiles, which the Triton strategies have up to "
                         f"hidden_size {LAYER_NORM_MAX_HIDDEN}; got {H} (backend='torch' runs any size)")
    block_h = max(16, next_power_of_2(H))
    warps = 4 if block_h <= 64 else 8 if block_h <= 256 else 16
    if strategy == "triton":  # pointwise only: as many rows as fit 2048 elements per gate
        return Tiles(max(1, min(next_power_of_2(B), 2048 // block_h)), block_h, 16, warps)
    # tl.dot needs 16 rows; the K chunk shrinks as the tile widens (the GATES accumulators hold the registers).
    chunk = (64 if dtype.itemsize == 2 else 32) if block_h <= 64 else 16
    if strategy == "triton-fusedstep":
        return Tiles(16, block_h, chunk, warps)
    if strategy == "triton-persistent":  # one stage, as below
        return Tiles(16, block_h, chunk, warps, num_stages=1)
    raise ValueError(f"no whole-row tiles for strategy {strategy!r}")


def _choose(strategy: str, B: int, H: int, dtype: torch.dtype, programs: int) -> Tiles:
    if strategy == "triton":  # pointwise only: wide tiles, few programs
        block_h = min(next_power_of_2(H), 256)
        block_b = max(1, min(next_power_of_2(B), 2048 // block_h))
        return Tiles(block_b, block_h, 16, 4)
    if strategy in ("triton-fusedstep", SINGLE_STEP):
        # Small tiles give more programs (64 at B=64, H=512) for a GEMM that is latency-bound.
        return Tiles(16, 32 if H > 16 else 16, _chunk(dtype), 4)
    if strategy == "triton-persistent":
        candidates = [tile for tile in PERSISTENT_TILES if tile[1] <= max(16, next_power_of_2(H))]
        fits = [tile for tile in candidates if cdiv(B, tile[0]) * cdiv(H, tile[1]) <= max(programs, 1)]
        block_b, block_h, warps, chunk_16bit, chunk_32bit = (fits or candidates[-1:])[0]
        # One pipeline stage unless FUSEDRNN_K_STAGES says otherwise: no load may be issued before the grid
        # barrier that orders it (a Triton hazard with pipelined loops around waits; see the research notes).
        chunk = chunk_16bit if dtype.itemsize == 2 else chunk_32bit
        return Tiles(block_b, block_h, chunk, warps, num_stages=PERSISTENT_K_STAGES)
    raise ValueError(f"no tiles for strategy {strategy!r}")
