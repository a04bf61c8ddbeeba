"""The regularisers' options of the fused layers (fusedrnn/nn/regularizers.py) against torch's own layers with
the regulariser written out: weight_drop is torch's layer run on dropout(W_hh) with the same mask."""

import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import fusedrnn
from fusedrnn.cells import MODES, REGISTRY
from fusedrnn.nn.rnn import FUSED_LAYERS
from fusedrnn.strategies import NAMES
from tests.helpers import assert_all_close, random_like_module

P = 0.4


def layer_pair(mode: str, backend: str, weight_drop: float = P):
    """A fused layer (2 layers, bidirectional) and a float64 torch twin with the same weights."""
    entry = REGISTRY[mode]
    options = dict(num_layers=2, bidirectional=True, **entry.options)
    torch.manual_seed(0)
    fused = FUSED_LAYERS[mode](4, 6, backend=backend, weight_drop=weight_drop, **options)
    random_like_module(fused)
    plain = entry.layer(4, 6, **options).double()
    plain.load_state_dict(fused.state_dict())
    return fused, plain


def masks_drawn(fused: nn.RNNBase, seed: int) -> dict[str, torch.Tensor]:
    """The masks a forward under `seed` draws: one dropout per W_hh, in the layers' order, as it runs."""
    torch.manual_seed(seed)
    names = [name for name in fused._flat_weights_names if name.startswith("weight_hh")]
    return {name: F.dropout(torch.ones_like(getattr(fused, name)), P) for name in names}


def dropped_reference(plain: nn.RNNBase, masks: dict, x, h0):
    """torch's layer in float64 on the dropped weights (differentiable in the parameters): (output, finals)."""
    params = dict(plain.named_parameters())
    weights = {name: p * (masks[name] != 0).double() / (1 - P) if name in masks else p for name, p in params.items()}
    out, finals = torch.func.functional_call(plain, weights, (x, h0))
    return out, finals


@pytest.mark.parametrize("backend", [*NAMES, "torch"])
@pytest.mark.parametrize("mode", MODES)
def test_weight_drop_is_torch_on_the_dropped_weights(mode, backend):
    fused, plain = layer_pair(mode, backend)
    n_states = REGISTRY[mode].states
    T, B = 5, 3
    g = torch.Generator().manual_seed(1)
    x = torch.randn(T, B, 4, generator=g, requires_grad=True)
    h0 = tuple(torch.randn(4, B, 6, generator=g, requires_grad=True) for _ in range(n_states))
    lengths = torch.tensor([5, 2, 4])
    packed = pack_padded_sequence(x, lengths, enforce_sorted=False)

    torch.manual_seed(7)
    out, finals = fused(packed, h0 if n_states == 2 else h0[0])
    finals = tuple(finals) if n_states == 2 else (finals,)
    masks = masks_drawn(fused, 7)
    x64 = x.detach().double().requires_grad_()
    h64 = tuple(h.detach().double().requires_grad_() for h in h0)
    packed64 = pack_padded_sequence(x64, lengths, enforce_sorted=False)
    expected, expected_finals = dropped_reference(plain, masks, packed64, h64 if n_states == 2 else h64[0])
    expected_finals = tuple(expected_finals) if n_states == 2 else (expected_finals,)

    upstream = [torch.randn(o.shape, generator=g) for o in (out.data, *finals)]
    names = [name for name, _ in fused.named_parameters()]
    grads = torch.autograd.grad([out.data, *finals], [x, *h0, *fused.parameters()], upstream)
    expected_grads = torch.autograd.grad([expected.data, *expected_finals], [x64, *h64, *plain.parameters()],
                                         [u.double() for u in upstream])
    labels = ["output", *(f"state{k}" for k in range(n_states)), "dx", *(f"dh0[{k}]" for k in range(n_states)), *names]
    assert_all_close([out.data, *finals, *grads], [expected.data, *expected_finals, *expected_grads],
                     torch.float32, labels)
    # A W_hh element the mask dropped gets no gradient from this forward, and some are dropped.
    for name, mask in masks.items():
        assert 0 < int((mask == 0).sum()) < mask.numel()
        assert bool((grads[1 + n_states + names.index(name)][mask == 0] == 0).all()), name


@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_weight_drop_draws_a_new_mask_each_forward_and_none_at_eval(backend):
    fused, plain = layer_pair("LSTM", backend)
    x = torch.randn(4, 2, 4)
    first, second = fused(x)[0], fused(x)[0]
    assert not torch.allclose(first, second)  # a new mask per forward
    fused.eval()
    expected = plain(x.double())[0]
    assert_all_close([fused(x)[0]], [expected], torch.float32, ["eval output"])


def test_weight_drop_leaves_parameters_state_dict_and_flat_weights_alone():
    fused, _ = layer_pair("GRU", "torch")
    before = {name: p for name, p in fused.named_parameters()}
    flat = list(fused._flat_weights)
    state = {k: v.clone() for k, v in fused.state_dict().items()}
    fused(torch.randn(3, 2, 4))[0].sum().backward()
    assert dict(fused.named_parameters()) == before  # the Parameter objects, not copies
    assert all(a is b for a, b in zip(fused._flat_weights, flat))
    assert fused.state_dict().keys() == state.keys()
    assert all(torch.equal(fused.state_dict()[k], v) for k, v in state.items())
    fused.flatten_parameters()
    restored = pickle.loads(pickle.dumps(fused))
    assert restored.weight_drop == P and "weight_drop=0.4" in repr(restored)


def test_weight_drop_through_convert_and_its_errors():
    model = nn.Sequential(nn.LSTM(4, 6), nn.GRUCell(6, 6))
    converted = fusedrnn.convert(model, weight_drop=0.25)
    assert isinstance(converted[0], fusedrnn.LSTM) and converted[0].weight_drop == 0.25
    assert not hasattr(converted[1], "weight_drop") or converted[1].weight_drop == 0.0
    assert fusedrnn.convert(nn.GRU(4, 6)).weight_drop == 0.0  # off unless asked
    for bad in (-0.1, 1.5, "0.3", True):
        with pytest.raises(ValueError, match="weight_drop should be a number in range"):
            fusedrnn.LSTM(4, 6, weight_drop=bad)
        with pytest.raises(ValueError, match="weight_drop should be a number in range"):
            fusedrnn.convert(nn.LSTM(4, 6), weight_drop=bad)
    with pytest.raises(RuntimeError, match="weight_drop"):
        torch.jit.script(fusedrnn.GRU(4, 6, weight_drop=0.2))
    torch.jit.script(fusedrnn.GRU(4, 6))  # without it, scripting still gives torch's implementation
