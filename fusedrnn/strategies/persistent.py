"""The persistent strategy (`backend="triton-persistent"`): one launch runs every step of a direction.

The programs split the step's tiles among them and meet at a grid barrier after each step (see
kernels.py), so a step costs no launch at all. A barrier only ends if every program is resident at once:
the grid is at most one program per multiprocessor, the kernel's registers and shared memory are checked
at its first compile, and the launch is cooperative, so the driver refuses (rather than hangs) a grid
that cannot be co-resident, also when other work holds part of the GPU. A kernel that does not fit runs
with one launch per step instead. FUSEDRNN_SPIN_LIMIT=N (tests, debugging) bounds each wait to N polls
and raises if one ran out; it synchronises with the GPU after every launch.

Under Triton's interpreter programs run one after another, so a program waiting for a later one would
wait forever. There the strategy runs one program over every tile, which meets each barrier at once (so
the barrier code runs), or, with INTERPRETER_PROGRAMS > 1, that many programs with the barrier off and one
launch per step (the kernel boundary is the barrier).

W_hh on chip (FUSEDRNN_W_ON_CHIP=1, opt-in until a GPU run shows it correct and faster): where every program
owns exactly one tile (tile count <= programs) and the kernel with the tile's slice of W_hh resident (GATES x
H_pad x BLOCK_H elements; kernels.py, W_ON_CHIP) compiles and fits the GPU as many times as there are programs,
each program loads that slice once and keeps it for the whole loop. Otherwise the same kernel reads W_hh from L2
at every step, as without the flag: not wrong, only the old speed. `STRATEGY.w_hh_placement` (and the debug log
of `fusedrnn.strategies.persistent`) says which each kernel ran and why. Under the interpreter the condition is
the same (one tile per program): one program over a single tile, or INTERPRETER_PROGRAMS >= the tile count.
"""

import dataclasses
import functools
import logging
import os
import warnings

import torch
import triton

from fusedrnn._backend import interpreter_enabled
from fusedrnn.strategies import tiles as tile_choice
from fusedrnn.strategies.launch import StepLauncher, TimeLoop, run_per_step
from fusedrnn.strategies.tiles import Tiles

INTERPRETER_PROGRAMS = 1
SPIN_LIMIT = int(os.environ.get("FUSEDRNN_SPIN_LIMIT", "0") or 0)
LAUNCH_OPTIONS = dict(launch_cooperative_grid=True)  # the driver refuses a grid that cannot be co-resident
W_ON_CHIP = os.environ.get("FUSEDRNN_W_ON_CHIP", "0") == "1"
_log = logging.getLogger(__name__)

_programs_that_fit: dict[tuple, int] = {}  # (device, kernel, compile-time parameters) -> resident programs


class Persistent:
    name = "triton-persistent"
    gemm_in_kernel = True

    def __init__(self):
        # Kernel name ("forward_kernel", "backward_kernel") -> where its last run read W_hh: "on chip", or
        # "L2: " and why not on chip.
        self.w_hh_placement: dict[str, str] = {}

    def run(self, loop: TimeLoop) -> None:
        B, H = loop.batch, loop.hidden
        if interpreter_enabled():
            # The smallest tiles, several per program, so that the tile loop runs too.
            tiles = tile_choice.choose(self.name, B, H, loop.dtype, programs=B * H, whole_rows=loop.whole_rows)
            if INTERPRETER_PROGRAMS > 1:
                run_per_step(self._place_w_hh(loop, tiles, INTERPRETER_PROGRAMS), tiles, INTERPRETER_PROGRAMS)
            else:
                self._launch(self._place_w_hh(loop, tiles, 1), tiles, 1)
            return
        multiprocessors = device_properties(loop.device)["multiprocessor_count"]
        tiles = tile_choice.choose(self.name, B, H, loop.dtype, programs=multiprocessors, whole_rows=loop.whole_rows)
        programs = min(tiles.count(B, H), multiprocessors)
        loop = self._place_w_hh(loop, tiles, programs)
        if resident_programs(loop, tiles) < programs:
            warnings.warn(f"fusedrnn: the persistent kernel does not fit {programs} programs on this GPU at B={B}, "
                          f"H={H}; running it with one launch per step", stacklevel=2)
            run_per_step(loop, tiles)
            return
        self._launch(loop, tiles, programs)

    def _place_w_hh(self, loop: TimeLoop, tiles: Tiles, programs: int) -> TimeLoop:
        """The loop with W_hh on chip (its W_ON_CHIP flag set) where FUSEDRNN_W_ON_CHIP asks for it and it
        applies, else the loop as it was; the choice is recorded in w_hh_placement."""
        place, why = self._w_hh_on_chip(loop, tiles, programs)
        name = getattr(loop.kernel, "__name__", str(loop.kernel))
        self.w_hh_placement[name] = "on chip" if place else f"L2: {why}"
        _log.debug("fusedrnn persistent %s at B=%d H=%d: W_hh %s", name, loop.batch, loop.hidden,
                   self.w_hh_placement[name])
        return place or loop

    def _w_hh_on_chip(self, loop: TimeLoop, tiles: Tiles, programs: int) -> tuple[TimeLoop | None, str]:
        if not W_ON_CHIP:
            return None, "FUSEDRNN_W_ON_CHIP is off"
        if loop.flags.get("LAYER_NORM"):  # its whole-row tiles would hold all of W_hh; not measured together
            return None, "layer_norm's whole-row tiles"
        B, H = loop.batch, loop.hidden
        if tiles.count(B, H) > programs:
            return None, f"{tiles.count(B, H)} tiles for {programs} programs (one tile per program needed)"
        padded = tile_choice.next_power_of_2(H)
        slice_bytes = loop.flags["GATES"] * padded * tiles.block_h * loop.dtype.itemsize
        on_chip = dataclasses.replace(loop, flags={**loop.flags, "W_ON_CHIP": padded})
        if interpreter_enabled():
            return on_chip, ""
        # What the compiler puts in shared memory besides the slice: the staging of h's (BLOCK_B, H_pad) rows
        # (benchmarks/compile_check.py --w-on-chip). An estimate that saves a compile; the compiled kernel decides.
        needed = slice_bytes + tiles.block_b * padded * loop.dtype.itemsize
        shared = device_properties(loop.device)["max_shared_mem"]
        if needed > shared:
            return None, (f"its slice of {slice_bytes >> 10} KB and h's {(needed - slice_bytes) >> 10} KB exceed "
                          f"{shared >> 10} KB of shared memory")
        if resident_programs(on_chip, tiles) < programs:
            return None, f"the kernel with its {slice_bytes >> 10} KB slice does not fit {programs} programs"
        return on_chip, ""

    def _launch(self, loop: TimeLoop, tiles: Tiles, programs: int) -> None:
        sync = loop.args["sync_ptr"]  # arrivals, and the gave-up flag: zeros, one pair per launch
        StepLauncher(loop.kernel, (programs,), loop.args, constexprs(loop, tiles))(0, loop.steps)
        if SPIN_LIMIT and int(sync[1]):
            raise RuntimeError(
                f"fusedrnn: a grid barrier of the persistent kernel waited more than FUSEDRNN_SPIN_LIMIT={SPIN_LIMIT} "
                f"polls ({programs} programs); its results are invalid. Please report this with your GPU and shapes."
            )


def constexprs(loop: TimeLoop, tiles: Tiles) -> dict:
    return {**loop.flags, **tiles.meta(), "SYNC": True, "SPIN_LIMIT": SPIN_LIMIT, **LAUNCH_OPTIONS}


def resident_programs(loop: TimeLoop, tiles: Tiles) -> int:
    """How many programs of this kernel fit on the GPU at once, from its compiled registers and shared
    memory (computed at its first compile, then remembered)."""
    options = constexprs(loop, tiles)
    key = (loop.device, loop.kernel, tuple(sorted((name, str(value)) for name, value in options.items())))
    if key not in _programs_that_fit:
        launcher = StepLauncher(loop.kernel, (1,), loop.args, options)
        _programs_that_fit[key] = _occupancy(launcher.compile_only(), tiles.num_warps, loop.device)
    return _programs_that_fit[key]


def _occupancy(compiled, num_warps: int, device: torch.device) -> int:
    try:
        compiled._init_handles()
    except triton.runtime.errors.OutOfResources:
        return 0
    props = device_properties(device)
    if compiled.n_spills:
        warnings.warn(f"fusedrnn: the persistent kernel spills {compiled.n_spills} registers "
                      f"({compiled.n_regs} per thread); it runs, slower", stacklevel=3)
    per_sm = min(
        props["max_num_regs"] // max(compiled.n_regs * 32 * num_warps, 1),
        props["max_shared_mem"] // compiled.metadata.shared if compiled.metadata.shared else 64,
        2048 // (32 * num_warps),
    )
    return per_sm * props["multiprocessor_count"]


def device_properties(device: torch.device) -> dict:
    """Triton's view of the GPU: multiprocessor_count, max_shared_mem (bytes per block), max_num_regs (per SM);
    asked of the driver once per device (every persistent launch reads it)."""
    return _properties_of(device.index or torch.cuda.current_device())


@functools.lru_cache(maxsize=16)
def _properties_of(index: int) -> dict:
    return triton.runtime.driver.active.utils.get_device_properties(index)


STRATEGY = Persistent()
