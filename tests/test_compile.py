"""The time-loop kernels compile for Hopper (sm_90a) without a GPU; the persistent ones without spills.

Triton compiles to PTX and its bundled ptxas assembles it on any machine, so a kernel that would fail to
compile on the GPU (a language feature the GPUs' Triton lacks, a shape rule of tl.dot, a resource limit)
fails here first. The interpreter tests cannot catch that: they never compile.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fusedrnn.cells import MODES

ROOT = Path(__file__).resolve().parents[1]
HOPPER_SHARED_BYTES = 227 * 1024  # shared memory one block may opt in to on sm_90


@pytest.mark.parametrize("strategy, shapes, dtypes, options", [
    ("triton-persistent", "16x1024,256x1024", "bfloat16,float32", []),
    ("triton-fusedstep", "64x512", "bfloat16", []),
    ("triton", "64x512", "float16", []),
    ("triton-persistent", "64x512", "float32", ["--recurrent-mask"]),  # recurrent dropout's kernels
    ("triton-persistent", "64x512", "float32", ["--zoneout"]),  # zoneout's (training masks)
    ("single-step", "64x512", "bfloat16", []),  # the cells' one-launch step
    ("triton-persistent", "16x1024", "bfloat16", ["--w-on-chip"]),  # W_hh on chip (FUSEDRNN_W_ON_CHIP)
    ("triton-persistent", "64x512", "float32", ["--w-on-chip"]),
    ("triton-persistent", "64x512", "float32", ["--layer-norm"]),  # layer norm's whole-row tiles (spills allowed)
    # The K loop pipelined two deep (FUSEDRNN_K_STAGES=2); the script fails if a time loop got pipelined.
    ("triton-persistent", "64x512,256x1024", "bfloat16,float32", ["--k-stages", "2"]),
    ("triton-persistent", "64x512", "bfloat16", ["--k-stages", "2", "--w-on-chip"]),
])
def test_kernels_compile_for_hopper(strategy, shapes, dtypes, options):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # compile, do not interpret
    run = subprocess.run(
        [sys.executable, "benchmarks/compile_check.py", "--arch", "90", "--strategy", strategy, "--shapes", shapes,
         "--dtypes", dtypes, *options],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    reports = [line for line in run.stdout.splitlines() if " regs, " in line]
    # every registered cell, forward and backward, at every shape and dtype
    assert len(reports) == len(MODES) * 2 * len(shapes.split(",")) * len(dtypes.split(","))
    if strategy == "triton-persistent" and "--layer-norm" not in options and "--k-stages" not in options:
        # One program per SM: a spill would slow every step of every program. Layer norm's whole-row tiles (16 x
        # 512, every gate's accumulator) spill in the gated cells at H = 512 (compile_check.py --layer-norm); the
        # two-stage K loop spills 4 bytes in the bf16 LSTM backward (opt-in, to be timed).
        for line in reports:
            assert re.search(r"spills 0/0 B", line), line
    if "--w-on-chip" in options:  # the slice and h's staging fit an H100/H200 block's shared memory (227 KB)
        for line in reports:
            assert int(re.search(r"shared (\d+) B", line).group(1)) <= HOPPER_SHARED_BYTES, line


def test_gradient_flow_kernels_compile_for_hopper():
    """The backward with recording and clipping on (fusedrnn/gradient_flow.py) compiles too; spills allowed."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run(
        [sys.executable, "benchmarks/compile_check.py", "--arch", "90", "--strategy", "triton-persistent", "--shapes",
         "16x1024", "--dtypes", "bfloat16", "--gradient-flow", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert len([line for line in run.stdout.splitlines() if " regs, " in line]) == len(MODES) * 2



def test_a_loop_holding_the_grid_barrier_is_never_pipelined():
    """Why FUSEDRNN_K_STAGES > 1 is safe: Triton 3.6 pipelines innermost loops only, and the barrier's spin loop
    keeps the time loop from being one. compile_check.py --check-pipelining compiles a toy loop of dot-fed loads
    with and without the barrier and fails unless time_loop_pipelined sees it pipelined only without."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = subprocess.run([sys.executable, "benchmarks/compile_check.py", "--check-pipelining"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "without the barrier: pipelined; with it: not pipelined" in run.stdout
