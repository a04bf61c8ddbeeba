"""fusedrnn.LSTM / GRU with the Triton backends (interpreter) against the float64 reference and torch.nn."""

import pytest
import torch
from helpers import GATED_MODES, assert_all_close, canonical, make_input, random_like_module, reference_forward
from torch import nn

import fusedrnn
from fusedrnn._backend import TRITON_BACKENDS
from fusedrnn.testing import assert_close

CONFIGS = {
    "base": dict(input_size=5, hidden_size=37, T=7, B=3),
    "input_size_1_no_hx": dict(input_size=1, hidden_size=37, T=7, B=3, with_hx=False),
    "two_layers_bidirectional_batch_first": dict(
        input_size=5, hidden_size=6, T=7, B=3, num_layers=2, bidirectional=True, batch_first=True
    ),
    "no_bias": dict(input_size=5, hidden_size=6, T=4, B=2, bias=False),
    "unbatched_bidirectional": dict(input_size=5, hidden_size=6, T=7, B=1, bidirectional=True, unbatched=True),
    "packed_unsorted_bidirectional_two_layers": dict(
        input_size=5, hidden_size=6, T=7, B=3, num_layers=2, bidirectional=True, lengths=[3, 7, 5]
    ),
    "packed_sorted": dict(input_size=5, hidden_size=6, T=7, B=3, lengths=[7, 5, 2], enforce_sorted=True),
    "packed_batch_first_no_hx": dict(
        input_size=5, hidden_size=6, T=5, B=4, lengths=[2, 5, 5, 1], batch_first=True, with_hx=False,
        bidirectional=True,
    ),
    "packed_full_lengths": dict(input_size=5, hidden_size=6, T=4, B=2, lengths=[4, 4], bidirectional=True),
}


def build(
    mode, dtype, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, bidirectional=False,
    backend="triton",
):
    kwargs = dict(num_layers=num_layers, bias=bias, batch_first=batch_first, bidirectional=bidirectional)
    fused = getattr(fusedrnn, mode)(input_size, hidden_size, backend=backend, dtype=dtype, **kwargs)
    random_like_module(fused)
    twin = getattr(nn, mode)(input_size, hidden_size, dtype=torch.float64, **kwargs)
    twin.load_state_dict(fused.state_dict())
    return fused, twin


def draw_inputs(mode, module, T, B, dtype, batch_first, unbatched, with_hx, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (B, T, module.input_size) if batch_first else (T, B, module.input_size)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    hx = None
    if with_hx:
        D = 2 if module.bidirectional else 1
        state_shape = (module.num_layers * D, module.hidden_size) if unbatched else (module.num_layers * D, B, module.hidden_size)
        states = [torch.randn(state_shape, generator=g, dtype=torch.float64) for _ in range(2 if mode == "LSTM" else 1)]
        hx = tuple(states) if mode == "LSTM" else states[0]
    return x, hx


def leaf(t, dtype):
    if t is None:
        return None
    if isinstance(t, tuple):
        return tuple(leaf(s, dtype) for s in t)
    return t.detach().to(dtype).requires_grad_()


def state_leaves(hx):
    return [] if hx is None else list(hx) if isinstance(hx, tuple) else [hx]


# The layer/direction/packing plumbing is the same for every strategy and dtype, whose kernels
# test_recurrence.py checks in full: every configuration for the persistent strategy in float32, the
# hardest one in float64 for every strategy.
CASES = [("triton-persistent", torch.float32, config) for config in CONFIGS]
CASES += [(backend, torch.float64, "packed_unsorted_bidirectional_two_layers") for backend in TRITON_BACKENDS]


@pytest.mark.parametrize("mode", GATED_MODES)
@pytest.mark.parametrize("backend, dtype, config", CASES)
def test_module_matches_reference_and_torch(backend, mode, dtype, config):
    c = dict(CONFIGS[config])
    T, B = c.pop("T"), c.pop("B")
    with_hx, unbatched = c.pop("with_hx", True), c.pop("unbatched", False)
    lengths, enforce_sorted = c.pop("lengths", None), c.pop("enforce_sorted", False)
    fused, twin = build(mode, dtype, **c, backend=backend)
    x64, hx64 = draw_inputs(mode, fused, T, B, dtype, fused.batch_first, unbatched, with_hx)

    def run(module, dt):
        x, hx = leaf(x64, dt), leaf(hx64, dt)
        if unbatched:
            x = leaf(x64.squeeze(0 if fused.batch_first else 1), dt)
        inp = make_input(x, batch_first=fused.batch_first, lengths=lengths, enforce_sorted=enforce_sorted)
        return x, hx, inp

    x, hx, inp = run(fused, dtype)
    outputs = canonical(fused(inp, hx), fused.batch_first)
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outputs]
    wrt = [x, *state_leaves(hx), *fused.parameters()]
    grads = torch.autograd.grad(outputs, wrt, [u.to(dtype) for u in upstream])

    names = ["output", "h_n", "c_n"][: len(outputs)]
    grad_names = ["input"] + [f"hx[{k}]" for k in range(len(state_leaves(hx)))] + [n for n, _ in fused.named_parameters()]
    for expected_fn in (lambda i, h: reference_forward(twin, i, h), twin):
        rx, rhx, rinp = run(twin, torch.float64)
        expected = canonical(expected_fn(rinp, rhx), fused.batch_first)
        ref_wrt = [rx, *state_leaves(rhx), *twin.parameters()]
        ref_grads = torch.autograd.grad(expected, ref_wrt, upstream)
        assert_all_close(outputs, expected, dtype, names)
        assert_all_close(list(grads), list(ref_grads), dtype, grad_names)


@pytest.mark.parametrize("mode", GATED_MODES)
def test_float16(mode):
    fused, twin = build(mode, torch.float16, 5, 37, bidirectional=True)
    x64, hx64 = draw_inputs(mode, fused, 7, 3, torch.float16, False, False, True)
    x = leaf(x64, torch.float16)
    out = canonical(fused(x, leaf(hx64, torch.float16)))
    expected = canonical(reference_forward(twin, x.detach().double(), hx64))
    assert all(o.dtype == torch.float16 for o in out)
    assert_all_close(out, expected, torch.float16, ["output", "h_n", "c_n"][: len(out)])
    out[0].float().sum().backward()
    assert x.grad is not None and x.grad.dtype == torch.float16 and bool(x.grad.isfinite().all())


@pytest.mark.parametrize("mode", GATED_MODES)
def test_inter_layer_dropout_matches_reference_with_same_seed(mode):
    fused, twin = build(mode, torch.float64, 4, 5, num_layers=3, bidirectional=True)
    fused.dropout = twin.dropout = 0.5
    x64, hx64 = draw_inputs(mode, fused, 6, 3, torch.float64, False, False, True)
    torch.manual_seed(123)
    out = canonical(fused.train()(x64, hx64))
    torch.manual_seed(123)
    expected = canonical(reference_forward(twin, x64, hx64, dropout=0.5))
    assert_all_close(out, expected, torch.float64, ["output", "h_n", "c_n"][: len(out)])
    # In eval mode there is no dropout: the output is the reference without it.
    out_eval = canonical(fused.eval()(x64, hx64))
    assert_all_close(out_eval, canonical(reference_forward(twin, x64, hx64)), torch.float64, ["o", "h", "c"][: len(out)])
    assert not torch.allclose(out_eval[0], out[0])


@pytest.mark.parametrize("mode", GATED_MODES)
def test_module_gradcheck_packed_bidirectional(mode):
    fused, _ = build(mode, torch.float64, 2, 3, num_layers=2, bidirectional=True)
    x = torch.randn(4, 3, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 3, 3, dtype=torch.float64, requires_grad=True)

    def f(x, h0, c0):
        inp = make_input(x, lengths=[2, 4, 3])
        out, states = fused(inp, (h0, c0) if mode == "LSTM" else h0)
        return (out.data, *(states if mode == "LSTM" else (states,)))

    assert torch.autograd.gradcheck(f, (x, h0, c0), fast_mode=True)


@pytest.mark.parametrize("mode", GATED_MODES)
def test_drop_in_surface(mode):
    fused = getattr(fusedrnn, mode)(3, 4, num_layers=2, bidirectional=True)
    torch_module = getattr(nn, mode)(3, 4, num_layers=2, bidirectional=True)
    assert isinstance(fused, getattr(nn, mode))
    assert repr(fused) == repr(torch_module)
    assert repr(getattr(fusedrnn, mode)(3, 4, backend="triton")) == f"{mode}(3, 4, backend='triton')"
    assert [n for n, _ in fused.named_parameters()] == [n for n, _ in torch_module.named_parameters()]
    torch_module.load_state_dict(fused.state_dict())
    fused.load_state_dict(torch_module.state_dict())
    assert len(fused.all_weights) == 4
    fused.flatten_parameters()
    x = torch.randn(5, 2, 3)
    for got, want in zip(canonical(fused(x)), canonical(torch_module(x))):
        assert_close(got, want)
    before = fused.weight_hh_l0.clone()
    fused.reset_parameters()
    assert not torch.equal(before, fused.weight_hh_l0)


@pytest.mark.parametrize("mode", GATED_MODES)
def test_empty_batch(mode):
    fused = getattr(fusedrnn, mode)(3, 4, backend="triton")
    out, _ = fused(torch.randn(5, 0, 3))
    assert out.shape == (5, 0, 4)


@pytest.mark.parametrize("mode", GATED_MODES)
def test_nan_in_nan_out(mode):
    fused = getattr(fusedrnn, mode)(3, 4, backend="triton")
    x = torch.randn(5, 2, 3)
    x[2, 0, 1] = float("nan")
    out, _ = fused(x)
    assert bool(out[2:, 0].isnan().all()) and bool(out[:2].isfinite().all()) and bool(out[:, 1].isfinite().all())
