"""The layers' layer_norm option (fusedrnn/nn/layer_norm.py) against the float64 reference (fusedrnn/reference.py,
the cells' reference steps with their written-out normalisation): every output and every gradient, the
normalisations' parameters' included, drawn away from 1 and 0; in every cell and backend, packed with unsorted
lengths, 2 layers bidirectional (tests/test_regularizers.py's check)."""

import pytest
import torch
from torch import nn

import fusedrnn
from fusedrnn.cells import MODES, REGISTRY, cell
from fusedrnn.ops import recurrence
from fusedrnn.strategies import NAMES
from fusedrnn.strategies.tiles import LAYER_NORM_MAX_HIDDEN
from tests.helpers import recurrence_leaves
from tests.test_regularizers import HIDDEN, LAYERS, P, Z, check_against_reference, fused_layer


def normed_layer(mode: str, backend: str, **options) -> nn.RNNBase:
    """fused_layer with layer_norm on, its gammas around 1 (random, as every other parameter)."""
    layer = fused_layer(mode, backend, layer_norm=True, **options)
    with torch.no_grad():
        for name, p in layer.named_parameters():
            if name.startswith("ln_") and "_weight_" in name:
                p.add_(1.0)
    return layer


@pytest.mark.parametrize("backend", [*NAMES, "torch"])
@pytest.mark.parametrize("mode", MODES)
def test_layer_norm_against_the_reference(mode, backend):
    check_against_reference(normed_layer(mode, backend))


@pytest.mark.parametrize("mode, backend", [("LSTM", "triton-persistent"), ("GRU", "torch"), ("RNN_RELU", "triton")])
def test_layer_norm_at_evaluation(mode, backend):
    """Not a regulariser: the same normalised cell at evaluation."""
    check_against_reference(normed_layer(mode, backend).eval())


def test_layer_norm_with_every_regulariser():
    check_against_reference(normed_layer("LSTM", "triton-fusedstep", weight_drop=P, recurrent_dropout=P,
                                         zoneout=(0.3, 0.5)))
    check_against_reference(normed_layer("RNN_TANH", "triton-persistent", recurrent_dropout=P, zoneout=Z))
    check_against_reference(normed_layer("GRU", "torch", weight_drop=P, recurrent_dropout=P, zoneout=Z))


# The LSTM (the most code: its c's normalisation too) in every strategy; the GRU and the Elman cell in one each
# (every strategy runs them against the reference above).
GRADCHECK_CASES = [("LSTM", strategy) for strategy in NAMES] + [("GRU", NAMES[2 % len(NAMES)]),
                                                                ("RNN_TANH", NAMES[0])]


@pytest.mark.parametrize("mode, strategy", GRADCHECK_CASES)
def test_layer_norm_gradcheck(mode, strategy):
    """The normalised recurrence's backward against its own forward (float64), reverse with lengths, its
    parameters differentiated too."""
    H = 3
    gx, w_hh, b_hh, initial, g = recurrence_leaves(mode, 2, 2, H, seed=2)
    width = (cell(mode).gates + 2 * (len(initial) == 2)) * H  # gamma_h, and an LSTM's gamma_c and beta_c
    norms = (1 + 0.5 * torch.randn(width, generator=g, dtype=torch.float64)).requires_grad_()
    lengths = torch.tensor([1, 2])

    def f(gx, w_hh, b_hh, norms, *initial):
        return recurrence(mode, gx, w_hh, b_hh, initial, lengths, True, strategy, layer_norm=norms)

    assert torch.autograd.gradcheck(f, (gx, w_hh, b_hh, norms, *initial), fast_mode=True)


def test_layer_norm_off_changes_nothing():
    """Off (the default), a layer is the plain one: torch's state dict, flat weights, outputs bit for bit."""
    x = torch.randn(3, 2, 4, requires_grad=True)
    for mode in ("LSTM", "GRU"):
        layer = fused_layer(mode, "triton-fusedstep", layer_norm=False)
        plain = fused_layer(mode, "triton-fusedstep")
        torch_layer = REGISTRY[mode].layer(4, HIDDEN, num_layers=LAYERS, bidirectional=True)
        assert not layer.layer_norm and "layer_norm" not in repr(layer) and not layer.needs_loop()
        assert layer.state_dict().keys() == torch_layer.state_dict().keys()
        assert layer._flat_weights_names == torch_layer._flat_weights_names
        got, want = layer(x)[0], plain(x)[0]
        assert torch.equal(got, want)
        assert torch.equal(*(torch.autograd.grad(y.sum(), x)[0] for y in (got, want)))
    assert not fusedrnn.convert(nn.LSTM(4, 6)).layer_norm  # convert never sets it


def test_layer_norm_parameters_state_dict_and_flat_weights():
    layer = fusedrnn.LSTM(4, 6, num_layers=2, bidirectional=True, layer_norm=True)
    torch_layer = nn.LSTM(4, 6, num_layers=2, bidirectional=True)
    extra = set(layer.state_dict()) - set(torch_layer.state_dict())
    stems = ("ln_ih_weight", "ln_ih_bias", "ln_hh_weight", "ln_hh_bias", "ln_c_weight", "ln_c_bias")
    assert extra == {f"{stem}_l{k}{d}" for stem in stems for k in (0, 1) for d in ("", "_reverse")}
    assert layer.ln_hh_weight_l1_reverse.shape == (24,) and layer.ln_c_bias_l0.shape == (6,)
    assert layer._flat_weights_names == torch_layer._flat_weights_names  # the normalisations are not in them
    assert len(layer.all_weights) == 4 and all(len(w) == 4 for w in layer.all_weights)
    layer.flatten_parameters()
    layer.reset_parameters()  # torch's draws every parameter: the normalisations go back to 1 and 0
    assert all(bool((p == (1.0 if "weight" in n else 0.0)).all()) for n, p in layer.named_parameters()
               if n.startswith("ln_"))
    assert "ln_hh_weight_l0" in dict(fusedrnn.GRU(4, 6, layer_norm=True).named_parameters())
    assert "ln_c_weight_l0" not in dict(fusedrnn.RNN(4, 6, layer_norm=True).named_parameters())
    assert "layer_norm=True" in repr(layer)
    with pytest.raises(RuntimeError, match="Unexpected key"):  # not a drop-in for the torch layer
        torch_layer.load_state_dict(layer.state_dict())


def test_layer_norm_errors():
    with pytest.raises(ValueError, match="layer_norm with proj_size"):
        fusedrnn.LSTM(4, 6, proj_size=3, layer_norm=True)
    with pytest.raises(TypeError, match="layer_norm must be a bool"):
        fusedrnn.GRU(4, 6, layer_norm=1)
    with pytest.raises(RuntimeError, match="layer_norm"):
        torch.jit.script(fusedrnn.GRU(4, 6, layer_norm=True))
    H = LAYER_NORM_MAX_HIDDEN + 1
    wide = fusedrnn.RNN(2, H, layer_norm=True, backend="triton-fusedstep")
    with pytest.raises(ValueError, match=f"hidden_size {LAYER_NORM_MAX_HIDDEN}"):
        wide(torch.randn(1, 1, 2))
    gx, w_hh, b_hh = torch.randn(2, 1, 6), torch.randn(6, 2), torch.randn(6)
    with pytest.raises(ValueError, match="layer_norm must be gamma_h concatenated"):
        recurrence("GRU", gx, w_hh, b_hh, (None,), layer_norm=torch.ones(5))
    with pytest.raises(ValueError, match="pass b_hh"):
        recurrence("GRU", gx, w_hh, None, (None,), layer_norm=torch.ones(6))
