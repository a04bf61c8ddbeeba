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

zoneout (Krueger et al. 2016), `zoneout=z` (h, and an LSTM's c, at rate z) or, for an LSTM,
`zoneout=(z_h, z_c)`: in training, at every step each unit of each row keeps its previous value with
probability z instead of taking the cell's new one: h_t = d_t * h_{t-1} + (1 - d_t) * h~_t with d_t ~
Bernoulli(z_h) drawn per (t, row, unit), h~_t the cell's ordinary update from h_{t-1} (and likewise
c_t = e_t * c_{t-1} + (1 - e_t) * c~_t at rate z_c, with h~_t = o * tanh(c~_t) the candidate's, as in the
paper). The outputs y_t and the states carried and returned are the zoned ones. At evaluation it is the
paper's expectation, h_t = z_h * h_{t-1} + (1 - z_h) * h~_t (and c alike), not the plain cell: a layer with
zoneout never runs as the torch module it replaces, in training or eval. Inside the fused kernels of every
Triton strategy (a per-step mix in the step bodies, its gradient split in the backward's); on torch's
backend a loop of torch ops, as recurrent_dropout. Not with proj_size.

The masks come from torch's generator on the input's device, per layer and per direction in order: the
W_hh mask (weight_drop), then the recurrent mask (recurrent_dropout), then the zoneout masks (one
torch.rand of shape (states, T, B, H), kept where below the rate; [0] for h, [1] for an LSTM's c; time t is
each row's own time, the index of y_t, in both directions; in a packed batch, rows sorted by length);
torch.manual_seed makes a forward repeatable.
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


def check_zoneout(zoneout, mode: str) -> float | tuple[float, float]:
    """A layer's zoneout option: a rate, or for an LSTM (z_h, z_c); each by torch's dropout probability rule."""
    if isinstance(zoneout, (tuple, list)):
        if mode != "LSTM" or len(zoneout) != 2:
            raise ValueError(f"zoneout must be a rate, or (rate of h, rate of c) for an LSTM; got {zoneout!r} for "
                             f"mode {mode}")
        rates = tuple(check_probability("zoneout", z) for z in zoneout)
        return rates if any(rates) else 0.0  # off, as the default
    return check_probability("zoneout", zoneout)


class Regularizers:
    """Mixin for the fused layers: the `weight_drop`, `recurrent_dropout` and `zoneout` keywords (see the top
    of this file). A torch module turned fused by `convert` has none set: the class attributes below are its
    values."""

    weight_drop: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: float | tuple[float, float] = 0.0

    def __init__(self, *args, weight_drop: float = 0.0, recurrent_dropout: float = 0.0,
                 zoneout: float | tuple[float, float] = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.set_regularizers(weight_drop=weight_drop, recurrent_dropout=recurrent_dropout, zoneout=zoneout)

    def set_regularizers(self, **options) -> None:
        """Sets the regularisers named (weight_drop, recurrent_dropout, zoneout), each checked as the
        constructor checks it; the others keep their values."""
        checks = dict(weight_drop=lambda p: check_probability("weight_drop", p),
                      recurrent_dropout=lambda p: check_probability("recurrent_dropout", p),
                      zoneout=lambda z: check_zoneout(z, self.mode))
        for name, value in options.items():
            if name not in checks:
                raise TypeError(f"unknown regulariser {name!r}; the layers take {', '.join(checks)}")
            setattr(self, name, checks[name](value))
        self._check_projection()

    def _check_projection(self) -> None:
        if getattr(self, "proj_size", 0):
            for name, on in (("recurrent_dropout", self.recurrent_dropout > 0), ("zoneout", self.zoning())):
                if on:
                    raise ValueError(f"fusedrnn: {name} with proj_size > 0 is not implemented")

    def zoneout_rates(self) -> tuple[float, ...]:
        """Zoneout's rate per state (h, and an LSTM's c)."""
        if isinstance(self.zoneout, tuple):
            return self.zoneout
        return (self.zoneout,) * (2 if self.mode == "LSTM" else 1)

    def zoning(self) -> bool:
        """Whether zoneout changes this forward (in training and at evaluation: see the top of this file)."""
        return any(z > 0 for z in self.zoneout_rates())

    def extra_repr(self) -> str:
        s = super().extra_repr()
        for name in ("weight_drop", "recurrent_dropout", "zoneout"):
            s += f", {name}={getattr(self, name)}" if getattr(self, name) else ""
        return s

    def dropping_weights(self) -> bool:
        """Whether this forward runs on DropConnect'ed W_hh (weight_drop, in training)."""
        return self.training and self.weight_drop > 0

    def needs_loop(self) -> bool:
        """Whether torch's backend must run this forward as a loop of torch ops (torch's RNN cannot)."""
        return (self.training and self.recurrent_dropout > 0) or self.zoning()

    def recurrent_mask(self, batch: int, hidden: int, device: torch.device) -> Tensor | None:
        """A new recurrent-dropout mask (batch, hidden), float32, in training; None otherwise."""
        if not (self.training and self.recurrent_dropout > 0):
            return None
        self._check_projection()
        return F.dropout(torch.ones(batch, hidden, device=device), self.recurrent_dropout, training=True)

    def zoneout_masks(self, steps: int, batch: int, hidden: int, device: torch.device) -> Tensor | None:
        """Zoneout for one direction's forward: new (states, steps, batch, hidden) bool masks in training (True
        keeps the previous value), the (states,) float64 rates at evaluation, None when off."""
        if not self.zoning():
            return None
        self._check_projection()
        rates = torch.tensor(self.zoneout_rates(), dtype=torch.float64, device=device)
        if not self.training:
            return rates
        return torch.rand(len(rates), steps, batch, hidden, device=device) < rates.view(-1, 1, 1, 1)

    def recurrent_weight(self, w_hh: Tensor) -> Tensor:
        """The W_hh this forward runs with: DropConnect's mask on it in training, itself otherwise."""
        return F.dropout(w_hh, self.weight_drop, training=True) if self.dropping_weights() else w_hh

    def torch_forward(self, forward, input, hx):
        """torch's own forward (`forward`, the torch class's) with the regularisers applied to its weights."""
        if not self.dropping_weights():  # the only regulariser torch's forward can run
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
        for name in ("weight_drop", "recurrent_dropout", "zoneout"):
            if getattr(self, name):
                raise RuntimeError(f"torch.jit.script cannot run {type(self).__name__}'s {name} (TorchScript runs "
                                   "torch's implementation, which has not this regulariser); script a model without "
                                   "it, or use torch.compile or torch.export")
        return super().__prepare_scriptable__()
