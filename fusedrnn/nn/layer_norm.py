"""The layers' `layer_norm` option: Layer-normalised LSTM, GRU and Elman RNN (Ba, Kiros and Hinton 2016).

With LN(v; gamma, beta) = gamma * (v - mean(v)) / sqrt(var(v) + 1e-5) + beta over the features of one row (eps
as torch's LayerNorm; fusedrnn/cells/layer_norm.py):
- LSTM: gates = LN(x W_ih^T; g_x, b_x) + LN(h W_hh^T; g_h, b_h) + b_ih + b_hh, each LN over all 4H
  pre-activations of the row; c' = f c + i g; h' = o * tanh(LN(c'; g_c, b_c)) (c' itself is carried).
- GRU: gx = LN(x W_ih^T) + b_ih and hg = LN(h W_hh^T) + b_hh, each over 3H, then torch's formulas on them:
  r = sigmoid(gx_r + hg_r), z = sigmoid(gx_z + hg_z), n = tanh(gx_n + r * hg_n), h' = (1 - z) n + z h.
- Elman RNN: h' = act(LN(x W_ih^T) + LN(h W_hh^T) + b_ih + b_hh), over H.

The parameters, per layer and direction, registered only with layer_norm=True (so that other layers' state
dicts are torch's): ln_ih_weight_l{k}{_reverse}, ln_ih_bias_..., ln_hh_weight_..., ln_hh_bias_..., and for an
LSTM ln_c_weight_..., ln_c_bias_...; gamma 1 and beta 0 at initialisation and by reset_parameters. They are not
in torch's _flat_weights (flatten_parameters and all_weights see the plain layer's). A layer with layer_norm is
not a drop-in for the torch layer (it has more parameters and other math): `convert` never sets it, torch's own
implementation cannot run it (backend="torch", and CPU tensors under "auto", run the loop of torch ops in
fusedrnn/nn/torch_loop.py), TorchScript refuses it. Not with proj_size. In the Triton strategies: the input
side is normalised on the host before the time loop (one F.layer_norm over the whole sequence); the recurrent
side and an LSTM's c in the step kernels, with whole-row tiles, hidden_size up to
fusedrnn/strategies/tiles.py's LAYER_NORM_MAX_HIDDEN.
"""

import torch
from torch import Tensor, nn


class LayerNormOption:
    """Mixin for the fused layers: the `layer_norm` keyword (see the top of this file). A torch module turned
    fused by `convert` has it off: the class attribute below."""

    layer_norm: bool = False

    def __init__(self, *args, layer_norm: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(layer_norm, bool):
            raise TypeError(f"layer_norm must be a bool, got {layer_norm!r}")
        self.layer_norm = layer_norm
        if not layer_norm:
            return
        if getattr(self, "proj_size", 0):
            raise ValueError("fusedrnn: layer_norm with proj_size > 0 is not implemented")
        like = self.weight_hh_l0
        for suffix in self._layer_norm_suffixes():
            for name, size in self._layer_norm_shapes().items():
                self.register_parameter(f"{name}_{suffix}", nn.Parameter(like.new_empty(size)))
        self._reset_layer_norm()

    def _layer_norm_shapes(self) -> dict[str, int]:
        """Each parameter's name stem and length: the products' normalisations over gates * H, an LSTM's c's over H."""
        gates = self.weight_hh_l0.shape[0]
        shapes = {"ln_ih_weight": gates, "ln_ih_bias": gates, "ln_hh_weight": gates, "ln_hh_bias": gates}
        if self.mode == "LSTM":
            shapes |= {"ln_c_weight": self.hidden_size, "ln_c_bias": self.hidden_size}
        return shapes

    def _layer_norm_suffixes(self) -> list[str]:
        directions = ("", "_reverse") if self.bidirectional else ("",)
        return [f"l{k}{d}" for k in range(self.num_layers) for d in directions]

    def _reset_layer_norm(self) -> None:
        with torch.no_grad():
            for suffix in self._layer_norm_suffixes():
                for name in self._layer_norm_shapes():
                    getattr(self, f"{name}_{suffix}").fill_(1.0 if "weight" in name else 0.0)

    def reset_parameters(self) -> None:
        super().reset_parameters()  # torch's draws every parameter uniformly, the normalisations' too
        if self.layer_norm:
            self._reset_layer_norm()

    def layer_norm_parameters(self, suffix: str) -> tuple[Tensor, ...] | None:
        """(g_x, b_x, g_h, b_h[, g_c, b_c]) of one layer and direction ("l0", "l1_reverse", ...), or None when off:
        the order the reference steps take (fusedrnn/cells/)."""
        if not self.layer_norm:
            return None
        return tuple(getattr(self, f"{name}_{suffix}") for name in self._layer_norm_shapes())

    def needs_loop(self) -> bool:
        return self.layer_norm or super().needs_loop()

    def extra_repr(self) -> str:
        return super().extra_repr() + (", layer_norm=True" if self.layer_norm else "")

    def __prepare_scriptable__(self) -> nn.Module:
        if self.layer_norm:
            raise RuntimeError(f"torch.jit.script cannot run {type(self).__name__}'s layer_norm (TorchScript runs "
                               "torch's implementation, which has no layer normalisation); use torch.compile or "
                               "torch.export")
        return super().__prepare_scriptable__()
