"""LSTM with proj_size > 0 (h_t = W_hr (o * tanh(c_t))) on the Triton strategies (interpreter), against the
float64 reference, which is itself checked against nn.LSTM(proj_size=...). With a projection every strategy
runs the stepwise pattern (fusedrnn/strategies/driver.py), so the strategies are parametrized only where the
module is built and dispatched; the variants of input run on one."""

import pytest
import torch
from helpers import assert_all_close, canonical, make_input, random_like_module, reference_forward
from torch import nn

import fusedrnn
from fusedrnn import reference
from fusedrnn.ops import recurrence, recurrence_backward_op, recurrence_op
from fusedrnn.strategies import NAMES
from fusedrnn.testing import assert_close

I = 4  # input size


def build(H, P, dtype=torch.float64, backend="triton", **kwargs):
    """A fused LSTM with random weights and its float64 nn.LSTM twin with the same weights."""
    fused = random_like_module(fusedrnn.LSTM(I, H, proj_size=P, backend=backend, dtype=dtype, **kwargs))
    twin = nn.LSTM(I, H, proj_size=P, dtype=torch.float64, **kwargs)
    twin.load_state_dict(fused.state_dict())
    return fused, twin


def draw(module, T, B, with_hx=True, seed=0):
    """x (as the module takes it, padded) and (h0, c0) or None, float64."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((B, T, I) if module.batch_first else (T, B, I), generator=g, dtype=torch.float64)
    if not with_hx:
        return x, None
    LD = module.num_layers * (2 if module.bidirectional else 1)
    h0 = torch.randn(LD, B, module.proj_size, generator=g, dtype=torch.float64)
    c0 = torch.randn(LD, B, module.hidden_size, generator=g, dtype=torch.float64)
    return x, (h0, c0)


def check_against_reference(fused, twin, T, B, dtype, lengths=None, with_hx=True, unbatched=False):
    """Outputs, final states and every gradient (input, h0, c0, all parameters) of the fused module against
    the float64 reference with the same weights, driven by random upstream gradients on all outputs."""
    x64, hx64 = draw(fused, T, B, with_hx)
    if unbatched:
        x64 = x64.squeeze(0 if fused.batch_first else 1)
        hx64 = tuple(s.squeeze(1) for s in hx64) if hx64 is not None else None

    def run(module, forward, dt):
        x = x64.to(dt).requires_grad_()
        hx = tuple(s.to(dt).requires_grad_() for s in hx64) if hx64 is not None else None
        out = canonical(forward(make_input(x, batch_first=fused.batch_first, lengths=lengths), hx), fused.batch_first)
        return out, [x, *(hx or ()), *module.parameters()]

    outputs, wrt = run(fused, fused, dtype)
    g = torch.Generator().manual_seed(1)
    upstream = [torch.randn(o.shape, generator=g, dtype=torch.float64) for o in outputs]
    grads = torch.autograd.grad(outputs, wrt, [u.to(dtype) for u in upstream])
    expected, ref_wrt = run(twin, lambda i, h: reference_forward(twin, i, h), torch.float64)
    ref_grads = torch.autograd.grad(expected, ref_wrt, upstream)
    names = ["input"] + (["h0", "c0"] if with_hx else []) + [n for n, _ in fused.named_parameters()]
    assert "weight_hr_l0" in names
    assert_all_close(outputs, expected, dtype, ["output", "h_n", "c_n"])
    assert_all_close(list(grads), list(ref_grads), dtype, names)


@pytest.mark.parametrize("lengths", [None, [5, 2, 4]])
def test_reference_matches_torch(lengths):
    module = random_like_module(nn.LSTM(I, 7, proj_size=3, num_layers=2, bidirectional=True, dtype=torch.float64))
    x, hx = draw(module, 5, 3)
    inp = make_input(x, lengths=lengths)
    for got, want in zip(canonical(reference_forward(module, inp, hx)), canonical(module(inp, hx))):
        assert_close(got, want)
    assert_close(canonical(reference_forward(module, inp))[0], canonical(module(inp))[0])  # zero initial states


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("backend", NAMES)
def test_every_strategy_matches_reference(backend, dtype):
    """Both directions over a packed unsorted batch with h0 and c0: each row's own last step starts the
    reverse direction, finished rows keep their projected state."""
    fused, twin = build(7, 3, dtype, backend, bidirectional=True)
    check_against_reference(fused, twin, T=5, B=3, dtype=dtype, lengths=[4, 5, 1])


CONFIGS = {
    "batch_first_no_hx": dict(H=5, P=4, T=7, B=3, batch_first=True, with_hx=False),
    "unbatched_bidirectional": dict(H=9, P=3, T=5, B=1, bidirectional=True, unbatched=True),
    "two_layers_bidirectional_packed_no_bias": dict(
        H=6, P=4, T=5, B=3, num_layers=2, bidirectional=True, bias=False, lengths=[2, 5, 3]),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_inputs_match_reference(config):
    c = dict(CONFIGS[config])
    T, B, H, P = c.pop("T"), c.pop("B"), c.pop("H"), c.pop("P")
    run = {k: c.pop(k) for k in ("lengths", "with_hx", "unbatched") if k in c}
    fused, twin = build(H, P, **c)
    check_against_reference(fused, twin, T, B, torch.float64, **run)


def test_inter_layer_dropout_matches_reference_with_same_seed():
    fused, twin = build(5, 3, num_layers=3, bidirectional=True, dropout=0.5)
    x, hx = draw(fused, 5, 3)
    torch.manual_seed(123)
    out = canonical(fused.train()(x, hx))
    torch.manual_seed(123)
    expected = canonical(reference_forward(twin, x, hx, dropout=0.5))
    assert_all_close(out, expected, torch.float64, ["output", "h_n", "c_n"])
    assert not torch.allclose(out[0], canonical(reference_forward(twin, x, hx))[0])


def test_recurrence_gradcheck_with_a_row_of_length_zero():
    """The op level, reverse direction, every input of the recurrence including w_hr; a row of length 0
    keeps h0 and c0."""
    g = torch.Generator().manual_seed(0)
    T, B, H, P = 3, 3, 3, 2

    def leaf(*shape):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * 0.5).requires_grad_()

    gx, w_hh, b_hh, w_hr, h0, c0 = leaf(T, B, 4 * H), leaf(4 * H, P), leaf(4 * H), leaf(P, H), leaf(B, P), leaf(B, H)
    lengths = torch.tensor([3, 0, 2])

    def f(gx, w_hh, b_hh, w_hr, h0, c0):
        return recurrence("LSTM", gx, w_hh, b_hh, (h0, c0), lengths, True, "triton", w_hr=w_hr)

    inputs = (gx, w_hh, b_hh, w_hr, h0, c0)
    y, h_n, c_n = f(*inputs)
    # The reference takes x and W_ih: x = gx, W_ih = identity, no input bias.
    eye = torch.eye(4 * H, dtype=torch.float64)
    ref_y, (ref_h, ref_c) = reference.rnn_direction(
        "LSTM", gx, (h0, c0), (eye, w_hh, torch.zeros_like(b_hh), b_hh, w_hr), lengths, True)
    assert_all_close([y, h_n, c_n], [ref_y, ref_h, ref_c], torch.float64, ["y", "h_n", "c_n"])
    assert torch.equal(h_n[1], h0[1]) and torch.equal(c_n[1], c0[1])
    assert torch.autograd.gradcheck(f, inputs, fast_mode=True)


def test_opcheck():
    """torch's checks of the custom ops with w_hr: schema, fake implementation, autograd registration, AOT."""
    g = torch.Generator().manual_seed(0)
    T, B, H, P = 3, 2, 5, 3

    def draw_leaf(*shape):
        return torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()

    gx, w_hh, b_hh, w_hr = draw_leaf(T, B, 4 * H), draw_leaf(4 * H, P), draw_leaf(4 * H), draw_leaf(P, H)
    h0, c0 = draw_leaf(B, P), draw_leaf(B, H)
    lengths = torch.tensor([3, 2], dtype=torch.int32)
    args = ("LSTM", "triton-persistent", gx, w_hh, b_hh, h0, c0, lengths, True, True, False, w_hr)
    torch.library.opcheck(recurrence_op, args)
    y, h_n, c_n, acts = (t.detach() for t in recurrence_op(*args))
    assert y.shape == (T, B, H) and h_n.shape == (B, H)  # unprojected: recurrence() projects
    dy, dh, dc = torch.randn_like(y), torch.randn_like(h_n), torch.randn_like(c_n)
    grad_args = ("LSTM", "triton", dy, dh, dc, acts, y, w_hh.detach(), h0.detach(), c0.detach(), lengths, True, False,
                 True, w_hr.detach(), True)
    torch.library.opcheck(recurrence_backward_op, grad_args, test_utils=("test_schema", "test_faketensor"))


def test_export_holds_the_op():
    fused, twin = build(5, 3, bidirectional=True)
    x, hx = draw(fused, 4, 2)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = fused

        def forward(self, x, h0, c0):
            out, (h, c) = self.rnn(x, (h0, c0))
            return out, h, c

    program = torch.export.export(Model(), (x, *hx))
    assert program.graph_module.code.count("torch.ops.fusedrnn.recurrence.default(") == 2
    assert_all_close(list(program.module()(x, *hx)), canonical(twin(x, hx)), torch.float64, ["output", "h_n", "c_n"])


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_state_dicts_load_both_ways():
    fused = fusedrnn.LSTM(I, 6, proj_size=2, num_layers=2, bidirectional=True, backend="triton")
    torch_module = nn.LSTM(I, 6, proj_size=2, num_layers=2, bidirectional=True)
    assert [n for n, _ in fused.named_parameters()] == [n for n, _ in torch_module.named_parameters()]
    torch_module.load_state_dict(fused.state_dict())
    assert torch.equal(torch_module.weight_hr_l1_reverse, fused.weight_hr_l1_reverse)
    random_like_module(torch_module, seed=3)
    fused.load_state_dict(torch_module.state_dict())
    x = torch.randn(3, 2, I)
    for got, want in zip(canonical(fused(x)), canonical(torch_module(x))):
        assert_close(got, want)


def test_h0_of_hidden_size_raises_torchs_error():
    fused, twin = build(5, 3)
    x = torch.randn(4, 2, I, dtype=torch.float64)
    hx = (torch.randn(1, 2, 5, dtype=torch.float64), torch.randn(1, 2, 5, dtype=torch.float64))  # h0 needs P = 3
    with pytest.raises(RuntimeError) as expected:
        twin(x, hx)
    with pytest.raises(type(expected.value)) as got:
        fused(x, hx)
    assert str(got.value) == str(expected.value) and "Expected hidden[0] size (1, 2, 3)" in str(got.value)


@pytest.mark.parametrize("proj_size", [5, 6])
def test_proj_size_not_below_hidden_size_is_rejected_as_torch_does(proj_size):
    with pytest.raises(ValueError) as expected:
        nn.LSTM(I, 5, proj_size=proj_size)
    with pytest.raises(ValueError) as got:
        fusedrnn.LSTM(I, 5, proj_size=proj_size, backend="triton")
    assert str(got.value) == str(expected.value)


def test_auto_runs_torch_for_a_projection(monkeypatch):
    """`auto` does not ask its table (which measured no projected LSTM) and runs torch's implementation, even
    where the table would pick a Triton strategy; a Triton backend from FUSEDRNN_BACKEND runs fused."""
    import fusedrnn.nn.rnn as rnn

    calls = []
    real = rnn.fused_rnn_forward
    monkeypatch.setattr(rnn, "resolve", lambda *args: "triton")
    monkeypatch.setattr(rnn, "fused_rnn_forward", lambda *args: calls.append(args[-1]) or real(*args))
    fused, twin = build(5, 3, backend=None)
    x = torch.randn(4, 2, I, dtype=torch.float64)
    monkeypatch.setenv("FUSEDRNN_BACKEND", "auto")
    assert_all_close(canonical(fused(x)), canonical(twin(x)), torch.float64, ["output", "h_n", "c_n"])
    assert calls == []
    monkeypatch.setenv("FUSEDRNN_BACKEND", "triton")
    assert_all_close(canonical(fused(x)), canonical(twin(x)), torch.float64, ["output", "h_n", "c_n"])
    assert calls == ["triton"]


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("onednn", [True, False])
def test_cpu_autocast_gives_torchs_dtypes(onednn, monkeypatch):
    """On the CPU nn.LSTM with projections runs torch's default implementation whatever oneDNN's flag: under
    autocast its output and h_n come from a GEMM in autocast's dtype, c_n stays in the input's."""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", onednn)
    fused, twin = build(5, 3, torch.float32, num_layers=2)
    x, hx = draw(fused, 4, 2)
    twin32 = nn.LSTM(I, 5, proj_size=3, num_layers=2)
    twin32.load_state_dict(fused.state_dict())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = canonical(fused(x.float(), tuple(s.float() for s in hx)))
        expected_dtypes = [o.dtype for o in canonical(twin32(x.float(), tuple(s.float() for s in hx)))]
    assert [o.dtype for o in outputs] == expected_dtypes == [torch.bfloat16, torch.bfloat16, torch.float32]
    assert_all_close(outputs, canonical(twin(x, hx)), torch.bfloat16, ["output", "h_n", "c_n"])
