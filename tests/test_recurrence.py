"""The recurrence (kernels + custom ops) against the float64 reference, and gradcheck, for every
strategy: stepwise (a GEMM per step beside the kernel), fusedstep (the GEMM in the kernel) and persistent
(one launch for all steps), the last in both of its interpreter modes: one program over every tile with
the grid barrier, and several programs with one launch per step."""

import pytest
import torch
import torch.nn.functional as F
from helpers import GATED_MODES, assert_all_close

from fusedrnn import reference
from fusedrnn.cells import cell
from fusedrnn.ops import recurrence
from fusedrnn.strategies import NAMES

# (backend value, programs of the persistent strategy under the interpreter): every strategy, and the
# persistent one also run by several programs with one launch per step.
STRATEGIES = [pytest.param((name, 1), id=name) for name in NAMES]
STRATEGIES.append(pytest.param(("triton-persistent", 3), id="triton-persistent-3-programs"))


@pytest.fixture(params=STRATEGIES)
def backend(request, monkeypatch):
    from fusedrnn.strategies import persistent

    name, programs = request.param
    monkeypatch.setattr(persistent, "INTERPRETER_PROGRAMS", programs)
    return name


def run(mode, x, w_ih, w_hh, b_ih, b_hh, states, lengths, reverse, backend="triton"):
    gx = F.linear(x, w_ih, b_ih)
    lengths = None if lengths is None else torch.tensor(lengths, dtype=torch.int32)
    return recurrence(mode, gx, w_hh, b_hh, states, lengths, reverse, backend)


def make(mode, T, B, I, H, dtype, with_state=True, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    G = cell(mode).gates * H

    def leaf(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5).to(dtype).requires_grad_()

    x, w_ih, w_hh = leaf(T, B, I), leaf(G, I), leaf(G, H)
    b_ih, b_hh = (leaf(G), leaf(G)) if bias else (None, None)
    n = cell(mode).states
    states = tuple(leaf(B, H) for _ in range(n)) if with_state else (None,) * n
    return x, w_ih, w_hh, b_ih, b_hh, states


# float64 over every combination; the other dtypes on the hardest one (reverse, ragged, initial state).
CASES = [(torch.float64, reverse, lengths, with_state)
         for reverse in (False, True) for lengths in (None, [7, 3, 5]) for with_state in (True, False)]
CASES += [(dtype, True, [7, 3, 5], True) for dtype in (torch.float32, torch.float16, torch.bfloat16)]


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("dtype, reverse, lengths, with_state", CASES)
def test_recurrence_matches_reference(backend, mode, dtype, reverse, lengths, with_state):
    T, B, I, H = 7, 3, 5, 37
    x, w_ih, w_hh, b_ih, b_hh, states = make(mode, T, B, I, H, dtype, with_state)
    out = run(mode, x, w_ih, w_hh, b_ih, b_hh, states, lengths, reverse, backend)

    inputs = [t for t in (x, w_ih, w_hh, b_ih, b_hh, *states) if t is not None]
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    rx, rw_ih, rw_hh, rb_ih, rb_hh, *rstates = ref_inputs
    if not with_state:
        rstates = [torch.zeros(B, H, dtype=torch.float64)] * len(states)
    y, final = reference.rnn_direction(
        mode, rx, tuple(rstates), (rw_ih, rw_hh, rb_ih, rb_hh), None if lengths is None else torch.tensor(lengths), reverse
    )
    expected = [y, *final]
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in out]
    grads = torch.autograd.grad(out, inputs, [u.to(dtype) for u in upstream])
    ref_grads = torch.autograd.grad(expected, ref_inputs, upstream)
    names = ["y", "h_n", "c_n"][: len(out)]
    assert_all_close(list(out), expected, dtype, names)
    grad_names = ["x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0"][: len(grads)]
    assert_all_close(list(grads), list(ref_grads), dtype, grad_names)


@pytest.mark.parametrize("mode", GATED_MODES)
def test_no_bias(backend, mode):
    x, w_ih, w_hh, _, _, states = make(mode, 5, 2, 3, 8, torch.float64, bias=False)
    out = run(mode, x, w_ih, w_hh, None, None, states, [5, 2], True, backend)
    y, final = reference.rnn_direction(mode, x, states, (w_ih, w_hh), torch.tensor([5, 2]), True)
    assert_all_close(list(out), [y, *final], torch.float64, ["y", "h_n", "c_n"][: len(out)])


# The kernels' gradients are compared with the reference's above; gradcheck (slow under the interpreter)
# checks the backward against the forward itself, per strategy, on its hardest case and a plain one.
@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("reverse, lengths", [(False, None), (True, [3, 1, 2])])
@pytest.mark.parametrize("strategy", NAMES)
def test_gradcheck(strategy, mode, reverse, lengths):
    backend = strategy
    x, w_ih, w_hh, b_ih, b_hh, states = make(mode, 3, 3, 2, 3, torch.float64)

    def f(x, w_ih, w_hh, b_ih, b_hh, *states):
        return run(mode, x, w_ih, w_hh, b_ih, b_hh, states, lengths, reverse, backend)

    assert torch.autograd.gradcheck(f, (x, w_ih, w_hh, b_ih, b_hh, *states), fast_mode=True)


def test_retain_graph_backward_twice_gives_same_gradients():
    x, w_ih, w_hh, b_ih, b_hh, states = make("LSTM", 5, 2, 3, 4, torch.float64)
    out = run("LSTM", x, w_ih, w_hh, b_ih, b_hh, states, [5, 3], True)
    loss = sum((o * o).sum() for o in out)
    first = torch.autograd.grad(loss, (x, w_hh), retain_graph=True)
    second = torch.autograd.grad(loss, (x, w_hh))
    for a, b in zip(first, second):
        assert torch.equal(a, b)


def test_inference_saves_no_activations(monkeypatch):
    """Under no_grad the kernels keep nothing for backward, even though the weights require grad."""
    from fusedrnn.strategies import driver

    widths = []
    real = driver.new_empty
    monkeypatch.setattr(driver, "new_empty", lambda like, *shape: widths.append(shape[-1]) or real(like, *shape))
    x, w_ih, w_hh, b_ih, b_hh, states = make("LSTM", 4, 2, 3, 5, torch.float32)
    saved_width = 5 * 5  # i, f, g, o, c
    with torch.no_grad():
        out = run("LSTM", x, w_ih, w_hh, b_ih, b_hh, states, None, False)
    assert saved_width not in widths and not out[0].requires_grad
    run("LSTM", x, w_ih, w_hh, b_ih, b_hh, states, None, False)
    assert saved_width in widths
