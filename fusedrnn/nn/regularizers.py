"""The regularisers cuDNN cannot run, as options of the fused layers; off by default, so that a fused layer
with none of them set is the drop-in it replaces.

weight_drop (DropConnect on the recurrent weights, as in AWD-LSTM): in training, each forward draws one
mask per element of every W_hh (weight_hh_l{k}{_reverse}) and runs every step of every row with
dropout(W_hh, p) (kept elements scaled by 1 / (1 - p)); at eval the weights are used as they are. The
parameters themselves are never replaced, so state dicts, `flatten_parameters`, optimizers and `convert`
see the plain layer; the gradient reaches weight_hh through the mask.

recurrent_dropout (variational recurrent dropout, Gal and Ghahramani 2016): in training, each forward
draws one mask m (B, H) per layer and direction, kept elements scaled by 1 / (1 - p), and every step's
recurrent product reads h_{t-1} * m instead of h_{t-1} (the first step's h0 * m too); the rest of the
cell (a GRU's z * h_{t-1}, the states carried, the outputs) sees h itself. Inside the fused kernels in
every Triton strategy; on torch's backend (CPU tensors under "auto"), a loop of torch ops
(fusedrnn/nn/torch_loop.py), since torch's RNN implementations cannot run it. Not with proj_size.

The masks come from torch's generator on the input's device, per layer and per direction in order: the
W_hh mask (weight_drop), then the recurrent mask (recurrent_dropout); torch.manual_seed makes a forward
repeatable.
"""

import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def check_probability(name: str, p) -> float:
    """torch's rule and message for a dropout probability."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"{name} should be a number in range [0, 1] representing the probability of an element "
                         f"being zeroed, but got {p!r}")
    return float(p)


class Regularizers:
    """Mixin for the fused layers: the `weight_drop` and `recurrent_dropout` keywords (see the top of this
    file). A torch module turned fused by `convert` has none set: the class attributes below are its values."""

    weight_drop: float = 0.0
    recurrent_dropout: float = 0.0

    def __init__(self, *args, weight_drop: float = 0.0, recurrent_dropout: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.weight_drop = check_probability("weight_drop", weight_drop)
        self.recurrent_dropout = check_probability("recurrent_dropout", recurrent_dropout)
        self._check_recurrent_dropout()

    def _check_recurrent_dropout(self) -> None:
        if self.recurrent_dropout and getattr(self, "proj_size", 0):
            raise ValueError("fusedrnn: recurrent_dropout with proj_size > 0 is not implemented")

    def extra_repr(self) -> str:
        s = super().extra_repr()
        for name in ("weight_drop", "recurrent_dropout"):
            s += f", {name}={getattr(self, name)}" if getattr(self, name) else ""
        return s

    def regularizing(self) -> bool:
        """Whether a regulariser changes this forward (they act in training only)."""
        return self.training and (self.weight_drop > 0 or self.recurrent_dropout > 0)

    def needs_loop(self) -> bool:
        """Whether torch's backend must run this forward as a loop of torch ops (torch's RNN cannot)."""
        return self.training and self.recurrent_dropout > 0

    def recurrent_mask(self, batch: int, hidden: int, device: torch.device) -> Tensor | None:
        """A new recurrent-dropout mask (batch, hidden), float32, in training; None otherwise."""
        if not (self.training and self.recurrent_dropout > 0):
            return None
        self._check_recurrent_dropout()
        return F.dropout(torch.ones(batch, hidden, device=device), self.recurrent_dropout, training=True)

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
        for name in ("weight_drop", "recurrent_dropout"):
            if getattr(self, name):
                raise RuntimeError(f"torch.jit.script cannot run {type(self).__name__}'s {name} (TorchScript runs "
                                   "torch's implementation, which has not this regulariser); script a model without "
                                   "it, or use torch.compile or torch.export")
        return super().__prepare_scriptable__()
