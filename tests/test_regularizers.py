"""The regularisers' options of the fused layers (fusedrnn/nn/regularizers.py) against the float64 reference
(fusedrnn/reference.py) with the same masks: weight_drop as the reference run on W_hh * mask, recurrent
dropout as its recurrent_masks, zoneout as its zoneout masks (at evaluation, its rates); a layer with layer_norm
(tests/test_layer_norm.py) with its normalisations' parameters. The masks are redrawn
from the seed in the documented order."""

import pickle
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import fusedrnn
from fusedrnn import reference
from fusedrnn.cells import MODES, REGISTRY
from fusedrnn.nn.rnn import FUSED_LAYERS
from fusedrnn.ops import recurrence
from fusedrnn.strategies import NAMES
from tests.helpers import assert_all_close, random_like_module, recurrence_leaves

P = 0.4
LAYERS, HIDDEN = 2, 6


def fused_layer(mode: str, backend: str, **regularisers) -> nn.RNNBase:
    """A 2-layer bidirectional fused layer with random weights, in training."""
    torch.manual_seed(0)
    layer = FUSED_LAYERS[mode](4, HIDDEN, num_layers=LAYERS, bidirectional=True, backend=backend,
                               **REGISTRY[mode].options, **regularisers)
    return random_like_module(layer)


def masks_drawn(layer: nn.RNNBase, batch: int, seed: int, steps: int) -> tuple[dict, list, list]:
    """The masks a training forward under `seed` draws, in the documented order: per layer and direction,
    the W_hh mask (weight_drop), then the recurrent mask (recurrent_dropout), then the zoneout masks (drawn on
    the layer's device, returned on the CPU). At evaluation: none, and zoneout's rates."""
    device = layer.weight_hh_l0.device
    torch.manual_seed(seed)
    weight_masks, recurrent_masks, zoneout = {}, [], []
    rates = torch.tensor(layer.zoneout_rates(), dtype=torch.float64)
    for k in range(LAYERS):
        recurrent_masks.append([])
        zoneout.append([])
        for suffix in (f"l{k}", f"l{k}_reverse"):
            name = f"weight_hh_{suffix}"
            if layer.weight_drop and layer.training:
                weight_masks[name] = F.dropout(torch.ones_like(getattr(layer, name)), layer.weight_drop).cpu()
            recurrent_masks[-1].append(F.dropout(torch.ones(batch, HIDDEN, device=device), layer.recurrent_dropout).cpu()
                                       if layer.recurrent_dropout and layer.training else None)
            if not rates.any():
                zoneout[-1].append(None)
            elif layer.training:
                draw = torch.rand(len(rates), steps, batch, HIDDEN, device=device)
                zoneout[-1].append((draw < rates.to(device).view(-1, 1, 1, 1)).cpu())
            else:
                zoneout[-1].append(rates)
    return weight_masks, recurrent_masks, zoneout


def check_against_reference(layer: nn.RNNBase, seed: int = 7, T: int = 5, lengths=(5, 2, 4)) -> None:
    """A packed forward of `layer` (on its device; in training unless it is at evaluation) with h0, and the
    gradients of every input and parameter, against the float64 reference on the same masks (on the CPU)."""
    mode = layer.mode
    device = layer.weight_hh_l0.device
    n_states = REGISTRY[mode].states
    B = len(lengths)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, 4, generator=g).to(device).requires_grad_()
    h0 = [torch.randn(2 * LAYERS, B, HIDDEN, generator=g).to(device).requires_grad_() for _ in range(n_states)]
    lengths = torch.tensor(lengths)

    torch.manual_seed(seed)
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
    out, finals = layer(packed, tuple(h0) if n_states == 2 else h0[0])
    y = pad_packed_sequence(out)[0]
    finals = list(finals) if n_states == 2 else [finals]

    weight_masks, recurrent_masks, zoneout = masks_drawn(layer, B, seed, T)
    params = {name: p.detach().cpu().double().requires_grad_() for name, p in layer.named_parameters()}
    masked = {name: p * (weight_masks[name] != 0) / (1 - layer.weight_drop) if name in weight_masks else p
              for name, p in params.items()}
    weights = [[tuple(masked[f"{w}_l{k}{s}"] for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                for s in ("", "_reverse")] for k in range(LAYERS)]
    x64 = x.detach().cpu().double().requires_grad_()
    h64 = [h.detach().cpu().double().requires_grad_() for h in h0]
    # The layer runs the packed rows sorted by length: its mask's row i is the sorted row i's.
    rmasks = [[m[packed.unsorted_indices.cpu()].double() if m is not None else None for m in per_layer]
              for per_layer in recurrent_masks]
    unsorted = packed.unsorted_indices.cpu()
    zoneout = [[z[:, :, unsorted] if z is not None and z.dim() == 4 else z for z in per_layer] for per_layer in zoneout]
    norms = None
    if getattr(layer, "layer_norm", False):  # fusedrnn/nn/layer_norm.py's parameters, in the reference's order
        norms = [[tuple(params[f"{stem}_l{k}{s}"] for stem in layer._layer_norm_shapes()) for s in ("", "_reverse")]
                 for k in range(LAYERS)]
    expected_y, expected_finals = reference.rnn(mode, x64, tuple(h64), weights, True, lengths,
                                                recurrent_masks=rmasks, zoneout=zoneout, layer_norm=norms)

    upstream = [torch.randn(t.shape, generator=g).to(device) for t in (y, *finals)]
    names = list(params)
    grads = torch.autograd.grad([y, *finals], [x, *h0, *layer.parameters()], upstream)
    expected_grads = torch.autograd.grad([expected_y, *expected_finals], [x64, *h64, *params.values()],
                                         [u.cpu().double() for u in upstream])
    labels = ["output", *(f"final{k}" for k in range(n_states)), "dx", *(f"dh0[{k}]" for k in range(n_states)),
              *names]
    assert_all_close([y, *finals, *grads], [expected_y, *expected_finals, *expected_grads], torch.float32, labels)
    # A W_hh element the mask dropped gets no gradient from this forward, and some are dropped.
    for name, mask in weight_masks.items():
        assert 0 < int((mask == 0).sum()) < mask.numel()
        assert bool((grads[1 + n_states + names.index(name)].cpu()[mask == 0] == 0).all()), name


@pytest.mark.parametrize("backend", [*NAMES, "torch"])
@pytest.mark.parametrize("mode", MODES)
def test_weight_drop_and_recurrent_dropout_against_the_reference(mode, backend):
    check_against_reference(fused_layer(mode, backend, weight_drop=P, recurrent_dropout=P))


@pytest.mark.parametrize("option", ["weight_drop", "recurrent_dropout"])
def test_each_regulariser_alone(option):
    check_against_reference(fused_layer("GRU", "triton-fusedstep", **{option: P}))


@pytest.mark.parametrize("strategy", NAMES)
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_recurrent_mask_gradcheck(strategy, mode):
    """The masked recurrence's backward against its own forward (float64), reverse with lengths."""
    B, H = 3, 3
    gx, w_hh, b_hh, initial, g = recurrence_leaves(mode, 3, B, H, seed=2)
    mask = (torch.rand(B, H, generator=g) > P).double() / (1 - P)
    lengths = torch.tensor([3, 1, 2])

    def f(gx, w_hh, b_hh, *initial):
        return recurrence(mode, gx, w_hh, b_hh, initial, lengths, True, strategy, recurrent_mask=mask)

    assert torch.autograd.gradcheck(f, (gx, w_hh, b_hh, *initial), fast_mode=True)


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_new_masks_each_forward_and_none_at_eval(backend):
    layer = fused_layer("LSTM", backend, weight_drop=P, recurrent_dropout=P)
    plain = nn.LSTM(4, HIDDEN, num_layers=LAYERS, bidirectional=True)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(4, 2, 4)
    first, second = layer(x)[0], layer(x)[0]
    assert not torch.allclose(first, second)  # new masks per forward
    layer.eval()
    assert_all_close([layer(x)[0]], [plain(x)[0]], torch.float32, ["eval output"])


def test_weight_drop_leaves_parameters_state_dict_and_flat_weights_alone():
    layer = fused_layer("GRU", "torch", weight_drop=P)
    before = dict(layer.named_parameters())
    flat = list(layer._flat_weights)
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(torch.randn(3, 2, 4))[0].sum().backward()
    assert dict(layer.named_parameters()) == before  # the Parameter objects, not copies
    assert all(a is b for a, b in zip(layer._flat_weights, flat))
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in state.items()) and layer.state_dict().keys() == \
        state.keys()
    layer.flatten_parameters()
    restored = pickle.loads(pickle.dumps(layer))
    assert restored.weight_drop == P and "weight_drop=0.4" in repr(restored)


def test_options_through_convert_and_their_errors():
    model = nn.Sequential(nn.LSTM(4, 6), nn.GRUCell(6, 6), nn.GRU(6, 6))
    converted = fusedrnn.convert(model, weight_drop=0.25, recurrent_dropout=0.1, zoneout=0.2)
    assert isinstance(converted[0], fusedrnn.LSTM)
    assert (converted[0].weight_drop, converted[0].recurrent_dropout, converted[0].zoneout) == (0.25, 0.1, 0.2)
    assert (converted[2].weight_drop, converted[2].recurrent_dropout, converted[2].zoneout) == (0.25, 0.1, 0.2)
    assert getattr(converted[1], "weight_drop", 0.0) == 0.0  # the cells take none
    fresh = fusedrnn.convert(nn.GRU(4, 6))
    assert fresh.weight_drop == fresh.recurrent_dropout == fresh.zoneout == 0.0  # off unless asked
    with pytest.raises(ValueError, match="zoneout must be a rate"):
        fusedrnn.convert(nn.GRU(4, 6), zoneout=(0.1, 0.2))  # a pair is an LSTM's
    with pytest.raises(ValueError, match="recurrent_dropout with proj_size"):
        fusedrnn.convert(nn.LSTM(4, 6, proj_size=3), recurrent_dropout=0.2)
    for option in ("weight_drop", "recurrent_dropout"):
        for bad in (-0.1, 1.5, "0.3", True):
            with pytest.raises(ValueError, match=f"{option} should be a number in range"):
                fusedrnn.LSTM(4, 6, **{option: bad})
        with pytest.raises(RuntimeError, match=option):
            torch.jit.script(fusedrnn.GRU(4, 6, **{option: 0.2}))
    with pytest.raises(ValueError, match="weight_drop should be a number in range"):
        fusedrnn.convert(nn.LSTM(4, 6), weight_drop=2)
    with pytest.raises(ValueError, match="recurrent_dropout with proj_size"):
        fusedrnn.LSTM(4, 6, proj_size=3, recurrent_dropout=0.2)
    torch.jit.script(fusedrnn.GRU(4, 6))  # without them, scripting still gives torch's implementation


# ---- Zoneout ------------------------------------------------------------------------------------------------
Z = 0.3
ZONEOUT = {"LSTM": (0.3, 0.5)}  # an LSTM's h and c at their own rates; the other cells' h at Z


@pytest.mark.parametrize("backend", [*NAMES, "torch"])
@pytest.mark.parametrize("mode", MODES)
def test_zoneout_against_the_reference(mode, backend):
    """Training: every output and gradient against the reference on the same masks (packed, bidirectional)."""
    check_against_reference(fused_layer(mode, backend, zoneout=ZONEOUT.get(mode, Z)))


# One Triton strategy per cell (rotated; every strategy runs in training) and torch's backend.
EVAL_CASES = [(mode, NAMES[i % len(NAMES)]) for i, mode in enumerate(MODES)] + [(mode, "torch") for mode in MODES]


@pytest.mark.parametrize("mode, backend", EVAL_CASES)
def test_zoneout_at_evaluation_is_the_expectation(mode, backend):
    """Evaluation: state = z * previous + (1 - z) * new, every output and gradient."""
    layer = fused_layer(mode, backend, zoneout=ZONEOUT.get(mode, Z)).eval()
    check_against_reference(layer)
    plain = FUSED_LAYERS[mode](4, HIDDEN, num_layers=LAYERS, bidirectional=True, backend=backend,
                               **REGISTRY[mode].options)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(3, 2, 4)
    assert not torch.allclose(layer(x)[0], plain.eval()(x)[0])  # not the plain cell at evaluation


def test_all_regularisers_together():
    check_against_reference(fused_layer("LSTM", "triton-persistent", weight_drop=P, recurrent_dropout=P, zoneout=Z))
    check_against_reference(fused_layer("GRU", "torch", weight_drop=P, recurrent_dropout=P, zoneout=Z))


@pytest.mark.parametrize("strategy", NAMES)
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN_TANH"])
def test_zoneout_gradcheck(strategy, mode):
    """The zoned recurrence's backward against its own forward (float64), reverse with lengths: with masks
    (training), and with the rates (evaluation) for the LSTM in one strategy."""
    T, B, H = 3, 3, 3
    gx, w_hh, b_hh, initial, g = recurrence_leaves(mode, T, B, H, seed=3)
    masks = torch.rand(len(initial), T, B, H, generator=g) < 0.5
    lengths = torch.tensor([3, 1, 2])
    forms = [masks]
    if (mode, strategy) == ("LSTM", "triton-persistent"):
        forms.append(torch.tensor([0.3, 0.6], dtype=torch.float64))
    for zoneout in forms:
        def f(gx, w_hh, b_hh, *initial, zoneout=zoneout):
            return recurrence(mode, gx, w_hh, b_hh, initial, lengths, True, strategy, zoneout=zoneout)

        assert torch.autograd.gradcheck(f, (gx, w_hh, b_hh, *initial), fast_mode=True)


def test_zoneout_masks_new_each_forward_and_repeatable_under_a_seed():
    layer = fused_layer("GRU", "triton-fusedstep", zoneout=Z)
    x = torch.randn(4, 2, 4)
    torch.manual_seed(5)
    first, second = layer(x)[0], layer(x)[0]
    assert not torch.allclose(first, second)  # new masks per forward
    torch.manual_seed(5)
    assert torch.equal(layer(x)[0], first)


def test_zoneout_off_changes_nothing():
    """zoneout 0 (or (0, 0)) is the plain layer, bit for bit, in every mode; masks that keep nothing give the
    plain recurrence's numbers bit for bit."""
    x = torch.randn(3, 2, 4, requires_grad=True)
    for mode, off in (("LSTM", (0, 0)), ("GRU", 0.0)):
        layer = fused_layer(mode, "triton-fusedstep", zoneout=off)
        assert layer.zoneout == 0.0 and "zoneout" not in repr(layer) and not layer.needs_loop()
        plain = fused_layer(mode, "triton-fusedstep")
        got, want = layer(x)[0], plain(x)[0]
        assert torch.equal(got, want)
        assert torch.equal(*(torch.autograd.grad(y.sum(), x)[0] for y in (got, want)))
    g = torch.Generator().manual_seed(4)
    gx = torch.randn(3, 2, 4 * 5, generator=g)
    w_hh, h0 = torch.randn(4 * 5, 5, generator=g), torch.randn(2, 5, generator=g)
    plain = recurrence("LSTM", gx, w_hh, None, (h0, h0), strategy="triton-persistent")
    kept_nothing = recurrence("LSTM", gx, w_hh, None, (h0, h0), strategy="triton-persistent",
                              zoneout=torch.zeros(2, 3, 2, 5, dtype=torch.bool))
    assert all(torch.equal(a, b) for a, b in zip(plain, kept_nothing))


def test_zoneout_option_and_its_errors():
    assert fusedrnn.LSTM(4, 6, zoneout=(0.1, 0.5)).zoneout_rates() == (0.1, 0.5)
    assert fusedrnn.LSTM(4, 6, zoneout=0.2).zoneout_rates() == (0.2, 0.2)
    assert "zoneout=0.2" in repr(fusedrnn.GRU(4, 6, zoneout=0.2))
    for bad in (-0.1, 1.5, "0.3", True, (0.1, 2.0)):
        with pytest.raises(ValueError, match="zoneout should be a number in range"):
            fusedrnn.LSTM(4, 6, zoneout=bad)
    for layer, bad in ((fusedrnn.GRU, (0.1, 0.2)), (fusedrnn.LSTM, (0.1, 0.2, 0.3))):
        with pytest.raises(ValueError, match="zoneout must be a rate"):
            layer(4, 6, zoneout=bad)
    with pytest.raises(ValueError, match="zoneout with proj_size"):
        fusedrnn.LSTM(4, 6, proj_size=3, zoneout=0.2)
    with pytest.raises(RuntimeError, match="zoneout"):
        torch.jit.script(fusedrnn.GRU(4, 6, zoneout=0.2))
    gx, w_hh = torch.randn(3, 2, 6), torch.randn(6, 2)
    for bad in (torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 3, dtype=torch.bool), torch.tensor([0.1, 0.2])):
        with pytest.raises(ValueError, match="zoneout"):
            recurrence("GRU", gx, w_hh, None, (None,), zoneout=bad)


def test_auto_says_when_a_gpu_layer_runs_the_torch_loop(monkeypatch):
    """auto on an accelerator whose table picks torch's implementation runs recurrent_dropout, zoneout and
    layer_norm as the loop of torch ops, and warns that it is slow; no warning on the CPU (auto's documented
    choice there), for an explicit backend="torch", or for a forward torch's RNN runs itself."""
    calls = []
    monkeypatch.setattr("fusedrnn.nn.rnn.fused_rnn_forward", lambda rnn, x, hx, strategy: calls.append(strategy))
    meta = torch.empty(5, 3, 4, device="meta")  # stands for a GPU tensor: not the CPU, and auto picks torch there
    for options in ({"recurrent_dropout": P}, {"zoneout": 0.1}, {"layer_norm": True}):
        layer = fusedrnn.GRU(4, HIDDEN, backend="auto", **options)
        with pytest.warns(UserWarning, match="runs here as a loop of torch ops"):
            layer(meta)
        assert calls.pop() == "torch"
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fusedrnn.GRU(4, HIDDEN, backend="torch", **options)(meta)
            assert calls.pop() == "torch"
            layer(torch.randn(5, 3, 4))
            assert calls.pop() == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fusedrnn.GRU(4, HIDDEN, backend="auto", recurrent_dropout=P).eval()(torch.randn(5, 3, 4))
    assert calls == []  # at evaluation recurrent dropout is off: torch's own GRU ran


def test_auto_keeps_regularised_layers_off_kernels_no_gpu_run_checked(monkeypatch):
    """Where auto's table picks a Triton strategy (measured on plain layers), a layer with recurrent_dropout,
    zoneout or layer_norm still runs torch's loop until a GPU run has checked those kernels (and says so); a plain
    layer and an explicit backend run the kernels; once checked, auto runs them too."""
    from fusedrnn.strategies import dispatch

    calls = []
    monkeypatch.setattr("fusedrnn.nn.rnn.fused_rnn_forward", lambda rnn, x, hx, strategy: calls.append(strategy))
    monkeypatch.setattr("fusedrnn.nn.rnn.resolve", lambda choice, *a: "triton-persistent" if choice == "auto" else choice)
    meta = torch.empty(5, 3, 4, device="meta")  # stands for a GPU tensor whose table picks the persistent strategy
    for options in ({"recurrent_dropout": P}, {"zoneout": 0.1}, {"layer_norm": True}):
        with pytest.warns(UserWarning, match="no GPU run has yet checked these options"):
            fusedrnn.GRU(4, HIDDEN, backend="auto", **options)(meta)
        assert calls.pop() == "torch"
        fusedrnn.GRU(4, HIDDEN, backend="triton-fusedstep", **options)(meta)
        assert calls.pop() == "triton-fusedstep"
        monkeypatch.setattr(dispatch, "REGULARISED_KERNELS_CHECKED_ON_GPU", True)
        fusedrnn.GRU(4, HIDDEN, backend="auto", **options)(meta)
        assert calls.pop() == "triton-persistent"
        monkeypatch.setattr(dispatch, "REGULARISED_KERNELS_CHECKED_ON_GPU", False)
    fusedrnn.GRU(4, HIDDEN, backend="auto", weight_drop=P)(meta)  # DropConnect changes no kernel
    assert calls.pop() == "triton-persistent"
