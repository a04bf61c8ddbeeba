"""StepLauncher: the first launch goes through Triton's JIT, later ones (FUSEDRNN_DIRECT_LAUNCH) call the
compiled kernel with every parameter in signature order.

The direct launch itself runs only on a GPU (tests/test_gpu.py checks its results at real sizes); here a
stand-in for Triton's JIT function and compiled kernel records which path each launch took.
"""

import pytest

from fusedrnn.strategies import launch as launch_module
from fusedrnn.strategies.launch import StepLauncher


@pytest.fixture(autouse=True)
def direct_launches_on(monkeypatch):
    monkeypatch.setattr(launch_module, "DIRECT_LAUNCH", True)


class FakeCompiled:
    function = "cubin handle"  # what marks a real compiled kernel

    def __init__(self, log):
        self.log = log

    def __getitem__(self, grid):
        return lambda *args: self.log.append(("direct", grid, args))


class FakeJit:
    arg_names = ["x", "k_begin", "k_end", "FLAG", "BLOCK"]

    def __init__(self, compiles=True):
        self.log, self.compiles = [], compiles

    def __getitem__(self, grid):
        def run(**kwargs):
            self.log.append(("jit", grid, kwargs))
            return FakeCompiled(self.log) if self.compiles else None

        return run


def test_later_launches_call_the_compiled_kernel_with_arguments_in_signature_order():
    kernel = FakeJit()
    launch = StepLauncher(kernel, (2, 3), dict(x="tensor"), dict(FLAG=True, BLOCK=16, num_warps=4))
    launch(0, 1)
    launch(1, 2)
    launch(2, 3)
    assert [entry[0] for entry in kernel.log] == ["jit", "direct", "direct"]
    assert kernel.log[0] == ("jit", (2, 3), dict(x="tensor", k_begin=0, k_end=1, FLAG=True, BLOCK=16, num_warps=4))
    # Launch options (num_warps) are not kernel parameters: the compiled kernel carries them.
    assert kernel.log[1] == ("direct", (2, 3, 1), ("tensor", 1, 2, True, 16))


def test_interpreter_goes_through_triton_every_time():
    kernel = FakeJit(compiles=False)
    launch = StepLauncher(kernel, (1,), dict(x=0), dict(FLAG=False, BLOCK=8))
    for step in range(3):
        launch(step, step + 1)
    assert [entry[0] for entry in kernel.log] == ["jit"] * 3


def test_direct_launches_can_be_switched_off(monkeypatch):
    monkeypatch.setattr(launch_module, "DIRECT_LAUNCH", False)
    kernel = FakeJit()
    launch = StepLauncher(kernel, (1,), dict(x=0), dict(FLAG=False, BLOCK=8))
    for step in range(3):
        launch(step, step + 1)
    assert [entry[0] for entry in kernel.log] == ["jit"] * 3
