"""The regularisers cuDNN cannot run, as options of the fused layers; off by default, so that a fused layer
with none of them set is the drop-in it replaces.

weight_drop (DropConnect on the recurrent weights, as in AWD-LSTM): in training, each forward draws one
mask per element of every W_hh (weight_hh_l{k}{_reverse}) and runs every step of every row with
dropout(W_hh, p) (kept elements scaled by 1 / (1 - p)); at eval the weights are used as they are. The
parameters themselves are never replaced, so state dicts, `flatten_parameters`, optimizers and `convert`
see the plain layer; the gradient reaches weight_hh through the mask.
"""

import warnings

import torch.nn.functional as F
from torch import Tensor, nn


def check_probability(name: str, p) -> float:
    """torch's rule and message for a dropout probability."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"{name} should be a number in range [0, 1] representing the probability of an element "
                         f"being zeroed, but got {p!r}")
    return float(p)


class Regularizers:
    """Mixin for the fused layers: the `weight_drop` keyword (see the top of this file). A torch module turned
    fused by `convert` has none set: the class attributes below are its values."""

    weight_drop: float = 0.0

    def __init__(self, *args, weight_drop: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_drop = check_probability("weight_drop", weight_drop)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s + (f", weight_drop={self.weight_drop}" if self.weight_drop else "")

    def regularizing(self) -> bool:
        """Whether a regulariser changes this forward (they act in training only)."""
        return self.training and self.weight_drop > 0

    def recurrent_weight(self, w_hh: Tensor) -> Tensor:
        """The W_hh this forward runs with: DropConnect's mask on it in training, itself otherwise."""
        return F.dropout(w_hh, self.weight_drop, training=True) if self.regularizing() else w_hh

    def torch_forward(self, forward, input, hx):
        """torch's own forward (`forward`, the torch class's) with the regularisers applied to its weights."""
        if not self.regularizing():
            return forward(input, hx)
        # torch's forward runs the tensors in _flat_weights (it rebuilds the list only when a parameter
        # attribute was replaced): the dropped ones stand in for this call, the parameters stay.
        plain = self._flat_weights
        self._flat_weights = [self.recurrent_weight(w) if name.startswith("weight_hh") else w
                              for name, w in zip(self._flat_weights_names, plain)]
        try:
            with warnings.catch_warnings():
                # Dropped weights are not the flattened buffer cuDNN prefers; torch would warn on every call.
                warnings.filterwarnings("ignore", message="RNN module weights are not part of single contiguous")
                return forward(input, hx)
        finally:
            self._flat_weights = plain

    def __prepare_scriptable__(self) -> nn.Module:
        if self.weight_drop:
            raise RuntimeError(f"torch.jit.script cannot run {type(self).__name__}'s weight_drop (TorchScript runs "
                               "torch's implementation, which has no DropConnect); script a model without it, or use "
                               "torch.compile or torch.export")
        return super().__prepare_scriptable__()
