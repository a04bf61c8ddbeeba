"""The persistent strategy with W_hh on chip (FUSEDRNN_W_ON_CHIP; kernels.py W_ON_CHIP), in the interpreter.

Each program owns one tile and loads its slice of W_hh once per launch. The interpreter runs programs one after
another, so one tile per program means either a single tile (H <= 16, B <= 16: one program, the grid barrier on,
W loaded once for the whole loop) or one launch per step with as many programs as tiles (INTERPRETER_PROGRAMS;
W loaded once per step's launch, the same code). Every output, final state and gradient is checked against the
float64 reference, and against the default persistent path (W_hh read from memory at every step).
"""

import pytest
import torch
from helpers import assert_all_close
from test_recurrence import make, run

from fusedrnn import reference
from fusedrnn.strategies import persistent
from fusedrnn.testing import assert_close

BACKEND = "triton-persistent"
MODES = ("LSTM", "GRU", "RNN_TANH")
MANY_PROGRAMS = 1 << 20  # more than any test's tile count: one program per tile, one launch per step


@pytest.fixture
def on_chip(monkeypatch):
    """W_hh on chip where it applies; returns a function that sets the interpreter's program count."""
    monkeypatch.setattr(persistent, "W_ON_CHIP", True)
    monkeypatch.setattr(persistent.STRATEGY, "w_hh_placement", {})

    def programs(count: int) -> None:
        monkeypatch.setattr(persistent, "INTERPRETER_PROGRAMS", count)

    return programs


def outputs_and_grads(mode, dtype, T, B, H, reverse, lengths, seed=0):
    """(every output and gradient of the fused recurrence, the same from the float64 reference)."""
    x, w_ih, w_hh, b_ih, b_hh, states = make(mode, T, B, 5, H, dtype, seed=seed)
    out = run(mode, x, w_ih, w_hh, b_ih, b_hh, states, lengths, reverse, BACKEND)
    inputs = [x, w_ih, w_hh, b_ih, b_hh, *states]
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    rx, rw_ih, rw_hh, rb_ih, rb_hh, *rstates = ref_inputs
    y, final = reference.rnn_direction(mode, rx, tuple(rstates), (rw_ih, rw_hh, rb_ih, rb_hh),
                                       None if lengths is None else torch.tensor(lengths), reverse)
    expected = [y, *final]
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in out]
    grads = torch.autograd.grad(out, inputs, [u.to(dtype) for u in upstream])
    ref_grads = torch.autograd.grad(expected, ref_inputs, upstream)
    return [*out, *grads], [*expected, *ref_grads]


NAMES = {1: ["y", "h_n"], 2: ["y", "h_n", "c_n"]}


def names(mode, count):
    states = 2 if mode == "LSTM" else 1
    return (NAMES[states] + ["dx", "dw_ih", "dw_hh", "db_ih", "db_hh", "dh0", "dc0"])[:count]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("reverse, lengths", [(False, None), (True, [7, 3, 5])], ids=["forward", "reverse-packed"])
def test_one_tile_per_program_matches_float64_and_the_default_path(on_chip, monkeypatch, mode, dtype, reverse,
                                                                   lengths):
    """H=37 (padded to 64 on chip; 3 tiles of 16 hidden units), one program per tile, one launch per step."""
    on_chip(MANY_PROGRAMS)
    got, expected = outputs_and_grads(mode, dtype, 7, 3, 37, reverse, lengths)
    assert persistent.STRATEGY.w_hh_placement == {"forward_kernel": "on chip", "backward_kernel": "on chip"}
    assert_all_close(got, expected, dtype, names(mode, len(got)))

    monkeypatch.setattr(persistent, "W_ON_CHIP", False)
    default, _ = outputs_and_grads(mode, dtype, 7, 3, 37, reverse, lengths)
    assert persistent.STRATEGY.w_hh_placement["forward_kernel"].startswith("L2: FUSEDRNN_W_ON_CHIP is off")
    # One dot over the padded K instead of chunks of BLOCK_K: the same sums up to their order.
    for a, b, name in zip(got, default, names(mode, len(got))):
        assert_close(a, b, dtype, name=name)


@pytest.mark.parametrize("mode", MODES)
def test_a_single_tile_keeps_w_for_the_whole_loop_behind_the_barrier(on_chip, mode):
    """B=3, H=16: one tile, one program, one launch for all steps (the grid barrier on)."""
    on_chip(1)
    got, expected = outputs_and_grads(mode, torch.float32, 6, 3, 16, True, [6, 2, 4])
    assert persistent.STRATEGY.w_hh_placement == {"forward_kernel": "on chip", "backward_kernel": "on chip"}
    assert_all_close(got, expected, torch.float32, names(mode, len(got)))


def test_more_tiles_than_programs_reads_w_from_memory(on_chip):
    """One program over three tiles cannot keep three slices: the default kernel runs, and says why."""
    on_chip(1)
    got, expected = outputs_and_grads("LSTM", torch.float32, 5, 3, 37, False, None)
    assert persistent.STRATEGY.w_hh_placement["forward_kernel"] == "L2: 3 tiles for 1 programs (one tile per program needed)"
    assert_all_close(got, expected, torch.float32, names("LSTM", len(got)))


@pytest.mark.parametrize("mode", ("LSTM", "GRU"))
def test_gradcheck(on_chip, mode):
    on_chip(MANY_PROGRAMS)
    x, w_ih, w_hh, b_ih, b_hh, states = make(mode, 3, 3, 2, 17, torch.float64)

    def f(x, w_ih, w_hh, b_ih, b_hh, *states):
        return run(mode, x, w_ih, w_hh, b_ih, b_hh, states, [3, 1, 2], True, BACKEND)

    assert torch.autograd.gradcheck(f, (x, w_ih, w_hh, b_ih, b_hh, *states), fast_mode=True)
    assert persistent.STRATEGY.w_hh_placement == {"forward_kernel": "on chip", "backward_kernel": "on chip"}
