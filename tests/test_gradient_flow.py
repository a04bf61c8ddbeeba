"""Gradient flow through time (fusedrnn/gradient_flow.py): the norms of dL/dh_t and dL/dc_t that the backward
kernels record, and the clipping of dL/dh_t inside the backward recurrence, for every cell and strategy,
against a float64 plain loop (fusedrnn.reference) whose autograd hooks on each step's states record the same
norms and clip the same gradient."""

import pytest
import torch
import torch.nn.functional as F
from helpers import random_like_module
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fusedrnn
from fusedrnn import reference
from fusedrnn.cells import MODES, REGISTRY
from fusedrnn.gradient_flow import check_clip
from fusedrnn.nn import FUSED_LAYERS
from fusedrnn.strategies import NAMES
from fusedrnn.testing import assert_close

T, B, I, H = 5, 3, 4, 13
MASK_SEED = 11
LENGTHS = [5, 2, 4]  # unsorted: the packed batch runs sorted, the records come back in this order


def layer(mode, backend, num_layers=1, bidirectional=True, dtype=torch.float64, **options):
    module = FUSED_LAYERS[mode](I, H, num_layers=num_layers, bidirectional=bidirectional, backend=backend,
                                **REGISTRY[mode].options, **options)
    return random_like_module(module.to(dtype))


def clipped(grad, clip):
    """The reference clipping of one row's dL/dh_t (fusedrnn/gradient_flow.py)."""
    if clip is None:
        return grad
    mode, threshold = clip
    if mode == "value":
        return grad.clamp(-threshold, threshold)
    norm = grad.norm()
    return grad * (threshold / norm if norm > threshold else 1.0)


def reference_run(module, x, h0, lengths, upstream, clip=None, recurrent_masks=None, zoneout=None):
    """Gradients of sum(output * u) + sum(states * u) by the float64 plain loop, and the recorded norms:
    {(layer, direction): (hidden (T, B), cell (T, B) or None)}, from hooks on every step's states."""
    weights = [[tuple(w.detach().double().requires_grad_() for w in d) for d in k]
               for k in reference.module_weights(module)]
    leaves = [x.detach().double().requires_grad_(), *(s.detach().double().requires_grad_() for s in h0)]
    norms = {}

    def hook(k, d, b, t, states):
        hidden, cell = norms.setdefault((k, d), (torch.zeros(T, B, dtype=torch.float64),
                                                 torch.zeros(T, B, dtype=torch.float64)))

        def on_h(grad):
            hidden[t, b] = grad.norm()
            return clipped(grad, clip)

        def on_c(grad):
            cell[t, b] = grad.norm()

        states[0].register_hook(on_h)
        if len(states) > 1:
            states[1].register_hook(on_c)

    y, finals = reference.rnn(module.mode, leaves[0], tuple(leaves[1:]), weights, module.bidirectional,
                              torch.tensor(lengths) if lengths else None, step_hook=hook,
                              recurrent_masks=recurrent_masks, zoneout=zoneout)
    outputs = [y, *finals]
    params = [w for k in weights for d in k for w in d]
    grads = torch.autograd.grad(outputs, leaves + params, upstream)
    if len(h0) == 1:
        norms = {key: (hidden, None) for key, (hidden, _) in norms.items()}
    return grads, norms


def fused_run(module, x, h0, lengths, upstream, record=True):
    """The same by the fused module (packed when lengths are given): gradients and the recorded norms."""
    x = x.detach().clone().requires_grad_()
    h0 = tuple(s.detach().clone().requires_grad_() for s in h0)
    hx = h0 if len(h0) > 1 else h0[0]
    inputs = pack_padded_sequence(x, torch.tensor(lengths), enforce_sorted=False) if lengths else x
    with fusedrnn.record_gradient_flow(module) if record else _nothing() as flow:
        torch.manual_seed(MASK_SEED)  # the masks of a regularised module in training
        output, states = module(inputs, hx)
        y = pad_packed_sequence(output, total_length=T)[0] if lengths else output
        outputs = [y, *(states if isinstance(states, tuple) else (states,))]
        grads = torch.autograd.grad(outputs, [x, *h0, *module.parameters()], upstream)
    return grads, flow


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return None


def draw_inputs(module, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    D = 2 if module.bidirectional else 1
    x = torch.randn(T, B, I, generator=g, dtype=torch.float64).to(dtype)
    h0 = tuple(torch.randn(module.num_layers * D, B, H, generator=g, dtype=torch.float64).to(dtype)
               for _ in range(REGISTRY[module.mode].states))
    upstream = [torch.randn(T, B, D * H, generator=g, dtype=torch.float64).to(dtype)]
    upstream += [torch.randn(s.shape, generator=g, dtype=torch.float64).to(dtype) for s in h0]
    return x, h0, upstream


def caller_rows(lengths):
    """Index that puts the rows of a batch run as the module runs it (a packed batch sorted by length) back in
    the caller's order."""
    order = torch.sort(torch.tensor(lengths), descending=True, stable=True).indices if lengths else torch.arange(B)
    unsorted = torch.empty_like(order)
    unsorted[order] = torch.arange(B)
    return unsorted


def recurrent_masks(module, lengths):
    """The recurrent-dropout masks the module drew in fused_run (fusedrnn/nn/regularizers.py's order), each
    row's in the caller's order, or None."""
    if not module.recurrent_dropout:
        return None
    torch.manual_seed(MASK_SEED)
    D = 2 if module.bidirectional else 1
    rows = caller_rows(lengths)
    return [[F.dropout(torch.ones(B, H), module.recurrent_dropout)[rows].double() for _ in range(D)]
            for _ in range(module.num_layers)]


def zoneout_masks(module, lengths):
    """The zoneout masks that a module with zoneout alone (no other regulariser) drew in fused_run, each row's in
    the caller's order, or None."""
    if not module.zoning():
        return None
    torch.manual_seed(MASK_SEED)
    D = 2 if module.bidirectional else 1
    rows = caller_rows(lengths)
    rates = torch.tensor(module.zoneout_rates(), dtype=torch.float64)
    return [[(torch.rand(len(rates), T, B, H) < rates.view(-1, 1, 1, 1))[:, :, rows] for _ in range(D)]
            for _ in range(module.num_layers)]


def check(module, lengths, dtype=torch.float64, clip=None):
    x, h0, upstream = draw_inputs(module, dtype)
    grads, flow = fused_run(module, x, h0, lengths, upstream)
    padded_upstream = [u.double() for u in upstream]
    if lengths:  # a packed output has no padding to take gradients from
        mask = torch.arange(T)[:, None] < torch.tensor(lengths)[None, :]
        padded_upstream[0] = padded_upstream[0] * mask[..., None]
    ref_grads, ref_norms = reference_run(module, x, h0, lengths, padded_upstream, clip,
                                         recurrent_masks(module, lengths), zoneout_masks(module, lengths))
    names = ["x", *(f"state0_{i}" for i in range(len(h0))), *(n for n, _ in module.named_parameters())]
    for got, want, name in zip(grads, ref_grads, names, strict=True):
        assert_close(got, want, dtype, name=name)
    D = 2 if module.bidirectional else 1
    assert len(flow.records) == module.num_layers * D
    for (k, d), (hidden, cell) in ref_norms.items():
        record = flow.get(layer=k, direction=d)
        assert_close(record.hidden, hidden, dtype, name=f"||dL/dh_t|| layer {k} direction {d}")
        if cell is not None:
            assert_close(record.cell, cell, dtype, name=f"||dL/dc_t|| layer {k} direction {d}")
        else:
            assert record.cell is None
    return ref_grads


@pytest.mark.parametrize("backend", NAMES)
@pytest.mark.parametrize("mode", MODES)
def test_recorded_norms_match_reference(mode, backend):
    """Every cell and strategy, both directions, a packed batch of unsorted lengths."""
    check(layer(mode, backend), LENGTHS)


@pytest.mark.parametrize("mode, backend", [("LSTM", "triton"), ("GRU", "triton-persistent")])
def test_recorded_norms_two_layers_padded(mode, backend):
    """Two bidirectional layers: the upper layer's gradient reaches the lower one's h_t through y_t."""
    check(layer(mode, backend, num_layers=2), None)


def test_recorded_norms_float32():
    check(layer("LSTM", "triton-fusedstep", dtype=torch.float32), LENGTHS, dtype=torch.float32)


CLIPS = [
    ("LSTM", "triton", ("value", 0.3)), ("GRU", "triton-fusedstep", ("value", 0.3)),
    ("RNN_TANH", "triton-persistent", ("value", 0.3)), ("RNN_RELU", "triton", ("norm", 1.5)),
    ("LSTM", "triton-persistent", ("norm", 1.5)), ("GRU", "triton-fusedstep", ("norm", 1.5)),
]


@pytest.mark.parametrize("mode, backend, clip", CLIPS)
def test_clipping_matches_reference(mode, backend, clip):
    """Every gradient (input, initial states, all weights and biases) and the recorded (pre-clip) norms."""
    module = layer(mode, backend, recurrent_grad_clip=clip)
    clipped_grads = check(module, LENGTHS, clip=clip)
    # The threshold bites: without clipping the reference's gradients differ.
    x, h0, upstream = draw_inputs(module, torch.float64)
    mask = (torch.arange(T)[:, None] < torch.tensor(LENGTHS)[None, :])[..., None]
    plain, _ = reference_run(module, x, h0, LENGTHS, [upstream[0] * mask, *upstream[1:]])
    assert any(not torch.allclose(a, b) for a, b in zip(clipped_grads, plain))


@pytest.mark.parametrize("clip", [None, ("norm", 0.05)])
@pytest.mark.parametrize("backend", NAMES)
def test_recording_and_clipping_with_recurrent_dropout(backend, clip):
    """With recurrent dropout's mask in training, the norms of what reaches h_t (masked through the
    recurrence) and the clipped gradients still match the reference run on the same masks."""
    module = layer("GRU", backend, recurrent_dropout=0.4, recurrent_grad_clip=clip).train()
    check(module, LENGTHS, clip=clip)


@pytest.mark.parametrize("mode, backend, clip", [("LSTM", "triton-persistent", None), ("GRU", "triton", ("value", 0.3))])
def test_recording_and_clipping_with_zoneout(mode, backend, clip):
    """With zoneout's masks in training, the norms of dL/dh_t and dL/dc_t of the zoned states (an LSTM's c_t
    then reaches h_t through nothing) and the clipped gradients match the reference run on the same masks."""
    check(layer(mode, backend, zoneout=0.4, recurrent_grad_clip=clip).train(), LENGTHS, clip=clip)


@pytest.mark.parametrize("backend", NAMES)
def test_recording_changes_no_gradient(backend):
    """Recording is observation only: the gradients are bit-identical with it on and off."""
    module = layer("GRU", backend, dtype=torch.float32)
    x, h0, upstream = draw_inputs(module, torch.float32)
    on, flow = fused_run(module, x, h0, LENGTHS, upstream)
    off, _ = fused_run(module, x, h0, LENGTHS, upstream, record=False)
    assert len(flow.records) == 2
    for a, b in zip(on, off, strict=True):
        assert torch.equal(a, b)
    assert getattr(module, "_gradient_flow", None) is None  # the block's end switched it off


def test_off_by_default():
    module = fusedrnn.LSTM(I, H)
    assert module.recurrent_grad_clip is None
    assert "recurrent_grad_clip" not in repr(module)
    assert module.state_dict().keys() == torch.nn.LSTM(I, H).state_dict().keys()
    clipping = fusedrnn.GRU(I, H, recurrent_grad_clip=("norm", 2))
    assert clipping.recurrent_grad_clip == ("norm", 2.0)
    assert "recurrent_grad_clip=('norm', 2.0)" in repr(clipping)


def test_profile_by_distance_from_the_loss():
    module = layer("RNN_TANH", "triton", bidirectional=True)
    x, h0, upstream = draw_inputs(module, torch.float64)
    _, flow = fused_run(module, x, h0, LENGTHS, upstream)
    forward, backward = flow.get(direction=0), flow.get(direction=1)
    # Row 1 has 2 steps: forward direction, distance 0 is its time 1; reverse direction, its time 0.
    assert forward.distance()[:, 1].tolist() == [1, 0, -1, -1, -1]
    assert backward.distance()[:, 1].tolist() == [0, 1, -1, -1, -1]
    profile = forward.profile()
    rows_at_0 = torch.tensor([forward.hidden[4, 0], forward.hidden[1, 1], forward.hidden[3, 2]])
    assert torch.isclose(profile[0], rows_at_0.mean())
    assert torch.isclose(profile[4], forward.hidden[0, 0])  # only row 0 is 5 steps long
    assert (forward.hidden[2:, 1] == 0).all()  # outside row 1's length


def test_refusals():
    for bad in [("clip", 1.0), ("value", 0), ("norm", float("inf")), 1.0, ("value",)]:
        with pytest.raises(ValueError, match="recurrent_grad_clip"):
            check_clip(bad)
    x = torch.randn(T, B, I)
    with pytest.raises(ValueError, match="backend='torch'"):
        fusedrnn.LSTM(I, H, backend="torch", recurrent_grad_clip=("value", 1.0))(x)
    with pytest.raises(ValueError, match="projection"):
        fusedrnn.LSTM(I, H, proj_size=5, backend="triton", recurrent_grad_clip=("value", 1.0))(x)
    with pytest.raises(ValueError, match="no fused RNN layer"):
        fusedrnn.record_gradient_flow(torch.nn.LSTM(I, H))
    model = fusedrnn.GRU(I, H, backend="torch")
    with pytest.raises(ValueError, match="backend='torch'"), fusedrnn.record_gradient_flow(model):
        model(x)


def test_recording_is_refused_under_torch_compile():
    """Dynamo cannot deliver the norms from a compiled backward: recording there raises instead of recording
    nothing."""
    module = layer("GRU", "triton", bidirectional=False, dtype=torch.float32)
    compiled = torch.compile(module, backend="eager", fullgraph=True)
    x = torch.randn(T, B, I)
    with torch._dynamo.config.patch(allow_rnn=True), fusedrnn.record_gradient_flow(module):
        with pytest.raises(Exception, match="record_gradient_flow does not work under torch.compile"):
            compiled(x)
