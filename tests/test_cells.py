"""fusedrnn.LSTMCell / GRUCell with the Triton backends (interpreter) against the reference and torch.nn."""

import pytest
import torch
from helpers import GATED_MODES, assert_all_close, random_like_module
from torch import nn

import fusedrnn
from fusedrnn._backend import TRITON_BACKENDS
from fusedrnn.cells import cell


def cell_pair(mode, dtype, input_size=5, hidden_size=37, bias=True, backend="triton"):
    cell = getattr(fusedrnn, mode + "Cell")(input_size, hidden_size, bias=bias, backend=backend, dtype=dtype)
    fused = random_like_module(cell)
    twin = getattr(nn, mode + "Cell")(input_size, hidden_size, bias=bias, dtype=torch.float64)
    twin.load_state_dict(fused.state_dict())
    return fused, twin


def as_tuple(out):
    return list(out) if isinstance(out, tuple) else [out]


# Every Triton backend runs the same one-launch step (test_cell_step.py checks its kernels in full); here the
# modules' plumbing (batching, optional state, bias) against torch.nn: every combination under one backend
# value, two under the others.
CASES = [("triton-persistent", dtype, batched, with_hx, bias) for dtype in (torch.float32, torch.float64, torch.float16)
         for batched in (True, False) for with_hx in (True, False) for bias in (True, False)]
CASES += [(backend, dtype, dtype == torch.float64, dtype == torch.float64, dtype == torch.float64)
          for backend in TRITON_BACKENDS if backend != "triton-persistent" for dtype in (torch.float64, torch.float16)]


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("backend, dtype, batched, with_hx, bias", CASES)
def test_cell_matches_reference_and_torch(backend, mode, dtype, batched, with_hx, bias):
    fused, twin = cell_pair(mode, dtype, bias=bias, backend=backend)
    g = torch.Generator().manual_seed(0)
    lead = (3,) if batched else ()
    x64 = torch.randn(*lead, 5, generator=g, dtype=torch.float64)
    states64 = [torch.randn(*lead, 37, generator=g, dtype=torch.float64) for _ in range(2 if mode == "LSTM" else 1)]

    def run(module, dt):
        x = x64.to(dt).requires_grad_()
        states = [s.to(dt).requires_grad_() for s in states64] if with_hx else []
        hx = (tuple(states) if mode == "LSTM" else states[0]) if with_hx else None
        return x, states, as_tuple(module(x, hx))

    x, states, out = run(fused, dtype)
    upstream = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in out]
    wrt = [x, *states, *fused.parameters()]
    grads = torch.autograd.grad(out, wrt, [u.to(dtype) for u in upstream])
    names = ["h", "c"][: len(out)]
    grad_names = ["input"] + [f"hx[{k}]" for k in range(len(states))] + [n for n, _ in fused.named_parameters()]

    rx, rstates, torch_out = run(twin, torch.float64)
    weights = (twin.weight_ih, twin.weight_hh) + ((twin.bias_ih, twin.bias_hh) if bias else ())
    ref_states = rstates if with_hx else [torch.zeros(*lead, 37, dtype=torch.float64)] * len(states64)
    if batched:
        ref_out = list(cell(mode).reference_step(rx, tuple(ref_states), *weights))
    else:
        ref_out = [s[0] for s in cell(mode).reference_step(rx[None], tuple(s[None] for s in ref_states), *weights)]
    for expected in (ref_out, torch_out):
        ref_grads = torch.autograd.grad(expected, [rx, *rstates, *twin.parameters()], upstream, retain_graph=True)
        assert all(o.shape == e.shape and o.dtype == dtype for o, e in zip(out, expected))
        assert_all_close(out, expected, dtype, names)
        assert_all_close(list(grads), list(ref_grads), dtype, grad_names)


@pytest.mark.parametrize("mode", GATED_MODES)
def test_cell_gradcheck(mode):
    fused, _ = cell_pair(mode, torch.float64, 2, 3)
    x = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)

    def f(x, h, c):
        return fused(x, (h, c)) if mode == "LSTM" else fused(x, h)

    assert torch.autograd.gradcheck(f, (x, h, c))


@pytest.mark.parametrize("mode", GATED_MODES)
def test_cell_stepped_over_a_sequence_matches_the_layer(mode):
    """Stepping the fused cell T times gives the fused layer's output (a decoder's use)."""
    fused_cell, _ = cell_pair(mode, torch.float64, 4, 6)
    layer = getattr(fusedrnn, mode)(4, 6, backend="triton", dtype=torch.float64)
    layer.load_state_dict({k + "_l0": v for k, v in fused_cell.state_dict().items()})
    x = torch.randn(5, 2, 4, dtype=torch.float64)
    state = None
    for t in range(5):
        state = fused_cell(x[t], state)
    out, final = layer(x)
    last = state[0] if mode == "LSTM" else state
    assert_all_close([last], [out[-1]], torch.float64, ["h"])


def test_cell_repr_and_isinstance():
    cell = fusedrnn.LSTMCell(3, 4, backend="torch")
    assert isinstance(cell, nn.LSTMCell)
    assert repr(cell) == "LSTMCell(3, 4, backend='torch')"
    assert repr(fusedrnn.GRUCell(3, 4)) == repr(nn.GRUCell(3, 4))
