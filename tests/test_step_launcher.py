"""StepLauncher: the compiled kernel is reused only while every tensor keeps its alignment.

The direct launch itself runs only on a GPU (tests/test_gpu.py checks its results at real sizes); here a
stand-in for Triton's JIT function and compiled kernel records which path each launch took.
"""

import pytest
import torch

from fusedrnn.kernels import stepwise
from fusedrnn.kernels.stepwise import StepLauncher


@pytest.fixture(autouse=True)
def direct_launches_on(monkeypatch):
    monkeypatch.setattr(stepwise, "DIRECT_LAUNCH", True)


class FakeCompiled:
    function = "cubin handle"  # what marks a real compiled kernel

    def __init__(self, log):
        self.log = log

    def __getitem__(self, grid):
        return lambda *args: self.log.append(("direct", grid, args))


class FakeJit:
    arg_names = ["x", "step", "FLAG", "BLOCK"]

    def __init__(self, compiles=True):
        self.log, self.compiles = [], compiles

    def __getitem__(self, grid):
        def run(*args, **constexprs):
            self.log.append(("jit", grid, args, constexprs))
            return FakeCompiled(self.log) if self.compiles else None

        return run


def test_reuses_a_compiled_kernel_per_alignment_of_the_varying_tensors():
    kernel = FakeJit()
    launch = StepLauncher(kernel, (2, 3), dict(FLAG=True, BLOCK=16, num_warps=4), varying=(0,))
    x = torch.zeros(64)
    launch(x, 0)
    launch(x, 1)
    launch(x[1:], 2)  # 4 bytes off: not what the first kernel was compiled for
    launch(x[1:], 3)
    launch(x[4:], 4)  # 16 bytes off: aligned, as the first
    paths = [entry[0] for entry in kernel.log]
    assert paths == ["jit", "direct", "jit", "direct", "direct"]
    assert kernel.log[0] == ("jit", (2, 3), (x, 0), dict(FLAG=True, BLOCK=16, num_warps=4))
    # Direct launches pass the compile-time parameters in signature order, launch options left out.
    assert kernel.log[1] == ("direct", (2, 3), (x, 1, True, 16))
    assert kernel.log[4][2][0].data_ptr() == x[4:].data_ptr()


def test_interpreter_goes_through_triton_every_time():
    kernel = FakeJit(compiles=False)
    launch = StepLauncher(kernel, (1,), dict(FLAG=False, BLOCK=8), varying=(0,))
    for step in range(3):
        launch(torch.zeros(4), step)
    assert [entry[0] for entry in kernel.log] == ["jit"] * 3


def test_direct_launches_can_be_switched_off(monkeypatch):
    monkeypatch.setattr(stepwise, "DIRECT_LAUNCH", False)
    kernel = FakeJit()
    launch = StepLauncher(kernel, (1,), dict(FLAG=False, BLOCK=8), varying=(0,))
    for step in range(3):
        launch(torch.zeros(4), step)
    assert [entry[0] for entry in kernel.log] == ["jit"] * 3
