"""Launching a time-loop kernel many times with the same arguments but the step range.

Triton's `kernel[grid](...)` binds and specialises every argument on every call, which can cost more host
time than a step's GPU work (benchmarks/NOTES.md). `StepLauncher` sends the first launch
through it and keeps the compiled kernel; with FUSEDRNN_DIRECT_LAUNCH=1 later launches call that kernel
directly. That is sound because between launches only the step range changes, and the kernels never
specialise on it (`do_not_specialize`). Under the interpreter there is no compiled kernel and every
launch goes through Triton.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fusedrnn.strategies import tiles

# Opt-in until a GPU run has checked direct launches (tests/test_gpu.py runs the layers both ways).
DIRECT_LAUNCH = os.environ.get("FUSEDRNN_DIRECT_LAUNCH", "0") == "1"


@dataclass
class TimeLoop:
    """One direction's time loop, as the recurrence driver hands it to a strategy."""

    kernel: object  # fusedrnn.strategies.kernels.forward_kernel or backward_kernel
    args: dict  # tensors and sizes by name (all but the step range)
    flags: dict  # compile-time parameters every strategy passes as they are
    steps: int  # T
    batch: int
    hidden: int
    dtype: torch.dtype
    device: torch.device
    # The stepwise strategy's cuBLAS GEMM of the k-th step processed (before the kernel in the forward,
    # after it in the backward); strategies with the GEMM in the kernel do not call it.
    host_gemm: Callable[[int], None] | None = None
    gemm_before_kernel: bool = True

    @property
    def whole_rows(self) -> bool:
        """Whether each tile must hold whole rows (layer norm's row statistics)."""
        return bool(self.flags.get("LAYER_NORM", 0))


def run_per_step(loop: TimeLoop, tile: tiles.Tiles, programs: int = 0) -> None:
    """One launch per step (no grid barrier), one program per tile unless `programs` says fewer; the
    stepwise GEMM around it where there is one."""
    count = tile.count(loop.batch, loop.hidden)
    grid = (min(programs, count) if programs else count,)
    launch = StepLauncher(loop.kernel, grid, loop.args, {**loop.flags, **tile.meta(), "SYNC": False, "SPIN_LIMIT": 0})
    for k in range(loop.steps):
        if loop.host_gemm is not None and loop.gemm_before_kernel:
            loop.host_gemm(k)
        launch(k, k + 1)
        if loop.host_gemm is not None and not loop.gemm_before_kernel:
            loop.host_gemm(k)


class PerStepStrategy:
    """A strategy that launches the time-loop kernel once per step, one program per tile (stepwise and
    fusedstep; they differ in where the recurrent GEMM runs)."""

    def __init__(self, name: str, gemm_in_kernel: bool):
        self.name, self.gemm_in_kernel = name, gemm_in_kernel

    def run(self, loop: TimeLoop) -> None:
        run_per_step(loop, tiles.choose(self.name, loop.batch, loop.hidden, loop.dtype, whole_rows=loop.whole_rows))


class StepLauncher:
    """`launch(k_begin, k_end)` runs `kernel` on `grid` with `args` (by name) and the compile-time
    parameters `constexprs` (Triton's launch options such as num_warps among them)."""

    def __init__(self, kernel, grid: tuple[int, ...], args: dict, constexprs: dict):
        self.kernel, self.grid, self.args, self.constexprs = kernel, grid, args, constexprs
        self.keywords = {**args, "k_begin": 0, "k_end": 0, **constexprs}  # built once: launches only set the range
        self.compiled = None
        self.direct = None
        self.positional = None

    def __call__(self, k_begin: int, k_end: int) -> None:
        if self.direct is not None:
            self.positional[self.range_at] = k_begin
            self.positional[self.range_at + 1] = k_end
            self.direct(*self.positional)
            return
        self.keywords["k_begin"], self.keywords["k_end"] = k_begin, k_end
        self.compiled = self.kernel[self.grid](**self.keywords)
        if DIRECT_LAUNCH and hasattr(self.compiled, "function"):  # a CompiledKernel: not under the interpreter
            self.direct = self.compiled[(*self.grid, 1, 1)[:3]]  # the compiled kernel's launcher wants 3 sizes
            # Every kernel parameter in signature order, as the compiled kernel's launcher takes them.
            self.positional = [self.keywords[name] for name in self.kernel.arg_names]
            self.range_at = self.kernel.arg_names.index("k_begin")
            assert self.kernel.arg_names[self.range_at + 1] == "k_end", "the time-loop kernels take k_begin, k_end"

    def compile_only(self):
        """Compile without launching (Triton's warmup), for resource checks before a first launch."""
        return self.kernel.warmup(**self.args, k_begin=0, k_end=1, grid=self.grid, **self.constexprs)

