"""fusedrnn.RNN and RNNCell (the Elman cell, tanh and relu) on the Triton strategies under the interpreter,
against the float64 reference and torch.nn; a smaller battery than the gated cells' (same machinery)."""

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_all_close, canonical, make_input, random_like_module, reference_forward
from torch import nn

import fusedrnn
from fusedrnn import reference
from fusedrnn.ops import recurrence
from fusedrnn.strategies import NAMES

MODES = {"RNN_TANH": "tanh", "RNN_RELU": "relu"}


def draw(mode, T, B, I, H, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)

    def leaf(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5).to(dtype).requires_grad_()

    return leaf(T, B, I), leaf(H, I), leaf(H, H), leaf(H), leaf(H), leaf(B, H)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", NAMES)
@pytest.mark.parametrize("dtype, reverse, lengths", [
    (torch.float64, False, None), (torch.float64, True, [7, 3, 5]), (torch.float32, True, [7, 3, 5]),
])
def test_recurrence_matches_reference(mode, backend, dtype, reverse, lengths):
    T, B, I, H = 7, 3, 5, 37
    inputs = draw(mode, T, B, I, H, dtype)
    x, w_ih, w_hh, b_ih, b_hh, h0 = inputs
    lengths_t = None if lengths is None else torch.tensor(lengths)
    out = recurrence(mode, F.linear(x, w_ih, b_ih), w_hh, b_hh, (h0,), lengths_t, reverse, backend)
    ref_inputs = [t.detach().double().requires_grad_() for t in inputs]
    rx, rw_ih, rw_hh, rb_ih, rb_hh, rh0 = ref_inputs
    y, (h_n,) = reference.rnn_direction(mode, rx, (rh0,), (rw_ih, rw_hh, rb_ih, rb_hh), lengths_t, reverse)
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in out]
    grads = torch.autograd.grad(out, inputs, [u.to(dtype) for u in upstream])
    ref_grads = torch.autograd.grad((y, h_n), ref_inputs, upstream)
    assert_all_close(list(out), [y, h_n], dtype, ["y", "h_n"])
    assert_all_close(list(grads), list(ref_grads), dtype, ["x", "w_ih", "w_hh", "b_ih", "b_hh", "h0"])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", ["triton", "triton-persistent"])
def test_gradcheck(mode, backend):
    x, w_ih, w_hh, b_ih, b_hh, h0 = draw(mode, 3, 3, 2, 3, torch.float64)

    def f(x, w_ih, w_hh, b_ih, b_hh, h0):
        return recurrence(mode, F.linear(x, w_ih, b_ih), w_hh, b_hh, (h0,), torch.tensor([3, 1, 2]), True, backend)

    assert torch.autograd.gradcheck(f, (x, w_ih, w_hh, b_ih, b_hh, h0), fast_mode=True)


@pytest.mark.parametrize("nonlinearity", MODES.values())
def test_module_packed_bidirectional_two_layers_matches_reference_and_torch(nonlinearity):
    kwargs = dict(num_layers=2, bidirectional=True, nonlinearity=nonlinearity)
    fused = random_like_module(fusedrnn.RNN(5, 6, backend="triton-persistent", dtype=torch.float64, **kwargs))
    twin = nn.RNN(5, 6, dtype=torch.float64, **kwargs)
    twin.load_state_dict(fused.state_dict())
    g = torch.Generator().manual_seed(0)
    x64, h64 = torch.randn(7, 3, 5, generator=g, dtype=torch.float64), torch.randn(4, 3, 6, generator=g, dtype=torch.float64)
    upstream = None
    results = []
    for module, run in ((fused, fused), (twin, lambda i, h: reference_forward(twin, i, h)), (twin, twin)):
        x, h0 = x64.clone().requires_grad_(), h64.clone().requires_grad_()
        outputs = canonical(run(make_input(x, lengths=[3, 7, 5]), h0), False)
        if upstream is None:
            upstream = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outputs]
        grads = torch.autograd.grad(outputs, [x, h0, *module.parameters()], upstream)
        results.append((outputs, grads))
    names = ["input", "h0"] + [n for n, _ in fused.named_parameters()]
    for outputs, grads in results[1:]:
        assert_all_close(results[0][0], outputs, torch.float64, ["output", "h_n"])
        assert_all_close(list(results[0][1]), list(grads), torch.float64, names)


@pytest.mark.parametrize("nonlinearity", MODES.values())
@pytest.mark.parametrize("batched", [True, False])
def test_cell_matches_torch(nonlinearity, batched):
    cell = random_like_module(fusedrnn.RNNCell(4, 9, nonlinearity=nonlinearity, backend="triton", dtype=torch.float64))
    twin = nn.RNNCell(4, 9, nonlinearity=nonlinearity, dtype=torch.float64)
    twin.load_state_dict(cell.state_dict())
    g = torch.Generator().manual_seed(0)
    lead = (3,) if batched else ()
    x64, h64 = torch.randn(*lead, 4, generator=g, dtype=torch.float64), torch.randn(*lead, 9, generator=g, dtype=torch.float64)
    upstream = torch.randn(*lead, 9, generator=g, dtype=torch.float64)
    results = []
    for module in (cell, twin):
        x, h = x64.clone().requires_grad_(), h64.clone().requires_grad_()
        out = module(x, h)
        results.append([out, *torch.autograd.grad(out, [x, h, *module.parameters()], upstream)])
    assert_all_close(results[0], results[1], torch.float64, ["h'", "x", "h", "w_ih", "w_hh", "b_ih", "b_hh"])
    assert cell(x64).shape == twin(x64).shape  # no hidden state: zeros, as torch


def test_drop_in_surface_and_errors():
    fused = fusedrnn.RNN(3, 4, num_layers=2, nonlinearity="relu", backend="triton")
    assert isinstance(fused, nn.RNN) and fused.mode == "RNN_RELU"
    assert repr(fused) == repr(nn.RNN(3, 4, num_layers=2, nonlinearity="relu"))[:-1] + ", backend='triton')"
    nn.RNN(3, 4, num_layers=2, nonlinearity="relu").load_state_dict(fused.state_dict())
    with pytest.raises(ValueError, match="Unknown nonlinearity 'gelu'"):
        fusedrnn.RNN(3, 4, nonlinearity="gelu")
    with pytest.raises(ValueError, match=r"RNN: Expected input to be 2D or 3D, got 4D tensor instead"):
        fused(torch.randn(2, 2, 2, 3))
    with pytest.raises(RuntimeError, match="input.size\\(-1\\) must be equal to input_size"):
        fused(torch.randn(2, 2, 5))
    cell = fusedrnn.RNNCell(3, 4, backend="triton")
    cell.nonlinearity = "gelu"
    with pytest.raises(RuntimeError, match="Unknown nonlinearity: gelu"):
        cell(torch.randn(2, 3))
    with pytest.raises(ValueError, match="RNNCell: Expected hidden to be 1D or 2D, got 3D instead"):
        fusedrnn.RNNCell(3, 4, backend="triton")(torch.randn(2, 3), torch.randn(1, 2, 4))


def test_convert_swaps_rnn_and_rnncell_keeping_weights():
    model = nn.Sequential(nn.RNN(3, 4, nonlinearity="relu"), nn.ModuleList([nn.RNNCell(4, 4)]))
    weight = model[0].weight_hh_l0
    fusedrnn.convert(model, backend="triton")
    assert type(model[0]) is fusedrnn.RNN and model[0].mode == "RNN_RELU" and model[0].weight_hh_l0 is weight
    assert type(model[1][0]) is fusedrnn.RNNCell and model[1][0].nonlinearity == "tanh"


def test_auto_runs_torch_for_a_cell_no_gpu_run_has_checked():
    from fusedrnn.strategies import dispatch

    for gpu in ("NVIDIA H200", "Some Future GPU"):
        for mode in MODES:
            assert dispatch.lookup(gpu, "sequence", mode, torch.float32, 64, 512) == "torch"
    # not vacuous: a measured gated cell gets its kernel
    assert dispatch.lookup("NVIDIA H200", "sequence", "LSTM", torch.bfloat16, 64, 512) == "triton-persistent"
