"""Tile, chunk and warp choice for every strategy, in one place.

A tile is BLOCK_B batch rows by BLOCK_H hidden units of one step; `tl.dot` needs every side >= 16, so
strategies with the recurrent GEMM in the kernel use tiles of at least 16 x 16. To be tuned on GPUs:
`benchmarks/profile_steps.py --sweep` times alternatives (it patches `choose`).
"""

from dataclasses import dataclass

import torch
import triton

# The persistent strategy's tile shapes, most programs first: the first whose tile count fits on the
# GPU (one program per multiprocessor) is taken, else the last (each program then runs several tiles).
# Small tiles mean more programs sharing the step's GEMM; larger ones read W_hh from L2 fewer times.
PERSISTENT_SHAPES = ((16, 16), (16, 32), (32, 32), (64, 32), (64, 64))


@dataclass(frozen=True)
class Tiles:
    block_b: int
    block_h: int
    block_k: int  # the in-kernel GEMM's reduction chunk (unused by the stepwise strategy)
    num_warps: int
    num_stages: int = 0  # software pipelining depth of the kernel's loops; 0: Triton's default

    def count(self, B: int, H: int) -> int:
        return triton.cdiv(B, self.block_b) * triton.cdiv(H, self.block_h)

    def meta(self) -> dict:
        meta = dict(BLOCK_B=self.block_b, BLOCK_H=self.block_h, BLOCK_K=self.block_k, num_warps=self.num_warps)
        return meta | (dict(num_stages=self.num_stages) if self.num_stages else {})


def _chunk(dtype: torch.dtype) -> int:
    return 64 if dtype.itemsize == 2 else 32


def choose(strategy: str, B: int, H: int, dtype: torch.dtype, programs: int = 0) -> Tiles:
    """Tiles for a strategy (its backend value) at batch B, hidden size H; `programs`: how many programs
    can be resident at once (the persistent strategy; 0 elsewhere)."""
    if strategy == "triton":  # pointwise only: wide tiles, few programs
        block_h = min(triton.next_power_of_2(H), 256)
        block_b = max(1, min(triton.next_power_of_2(B), 2048 // block_h))
        return Tiles(block_b, block_h, 16, 4)
    if strategy == "triton-fusedstep":
        # Small tiles give more programs (64 at B=64, H=512) for a GEMM that is latency-bound.
        return Tiles(16, 32 if H > 16 else 16, _chunk(dtype), 4)
    if strategy == "triton-persistent":
        shapes = [(b, h) for b, h in PERSISTENT_SHAPES if h <= max(16, triton.next_power_of_2(H))]
        for block_b, block_h in shapes:
            if triton.cdiv(B, block_b) * triton.cdiv(H, block_h) <= max(programs, 1):
                break
        # One pipeline stage: no load may be issued before the grid barrier that orders it (a known Triton
        # hazard with pipelined loops around waits; see the research notes).
        return Tiles(block_b, block_h, _chunk(dtype), 4 if block_b * block_h <= 1024 else 8, num_stages=1)
    raise ValueError(f"no tiles for strategy {strategy!r}")
