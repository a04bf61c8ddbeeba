"""Gradient flow through time: the norms of dL/dh_t (and dL/dc_t) at every step, recorded by the backward
kernels, and clipping of dL/dh_t inside the backward recurrence.

What is recorded, per layer, direction, batch row and time step t (the row's own times: a packed or
variable-length row has steps 0..L-1 only):
- ||dL/dh_t||: the 2-norm over the hidden units of the total gradient reaching the layer's hidden state
  after step t, from every path: y_t (the output, hence the layers above and the loss), h_n when t is the
  row's last step, and the steps after t through the recurrence. It is exactly `h_t.grad` of a plain loop
  that keeps h_t (`retain_grad`) and the norm the kernels see before clipping it.
- ||dL/dc_t|| for an LSTM: likewise for the cell state c_t (through h_t, whose gradient is clipped first,
  and c_{t+1}).
Norms are per batch row ((T, B), zero outside a row's length); `FlowRecord.profile` averages them over the
rows by distance from the end of the row's backward pass.

    >>> with fusedrnn.record_gradient_flow(model) as flow:
    ...     loss = criterion(model(x), target)
    ...     loss.backward()
    >>> record = flow.get(layer=0)             # the layer's latest forward
    >>> record.hidden                           # (T, B) ||dL/dh_t||, time-major
    >>> record.profile()                        # (T,) mean norm at 0, 1, 2, ... steps from the loss end

Recording costs nothing when off: the kernels are compiled without it (a compile-time flag). On, each step's
programs store one partial sum of squares per row and tile, and a sum over that small buffer after the
loop gives the norms: no extra pass over the sequence. It runs in the fused kernels, so it needs a Triton
backend (with `backend="auto"` the modules run the stepwise strategy where auto would pick torch's
implementation; on CPU tensors that is Triton's interpreter, TRITON_INTERPRET=1). It is refused under
torch.compile and with an LSTM projection (proj_size > 0).

Clipping (`fusedrnn.LSTM(..., recurrent_grad_clip=("value", 1.0))` or `("norm", 1.0)`; GRU and RNN alike):
at every step the backward clips dL/dh_t, the same total gradient as above, before it goes on into the
step's gates and, through them, to the earlier steps, the weights and the input: by value, each element
to [-v, v]; by norm, each row's vector scaled by min(1, v / ||dL/dh_t||). The gradient the module hands to
h0 (the initial state) is not clipped, nor is dL/dc_t. "value" runs inside every strategy's kernel;
"norm" needs each row's norm over all its tiles before the step, so every strategy then runs the stepwise
pattern with the per-row factors computed by a host op between the step launches (as an LSTM projection).
`fusedrnn.reference` with `step_hook` is the float64 reference of both (tests/test_gradient_flow.py).
"""

import itertools
import math
import weakref
from dataclasses import dataclass

import torch
from torch import nn

CLIP_MODES = ("value", "norm")


def check_clip(recurrent_grad_clip) -> tuple[str, float]:
    """("value" or "norm", threshold > 0) from a module's recurrent_grad_clip, or a ValueError."""
    try:
        mode, threshold = recurrent_grad_clip
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(f"recurrent_grad_clip must be None or (mode, threshold) with mode in {CLIP_MODES}, "
                         f"got {recurrent_grad_clip!r}") from None
    if mode not in CLIP_MODES or not (threshold > 0 and math.isfinite(threshold)):
        raise ValueError(f"recurrent_grad_clip must be None or (mode, threshold) with mode in {CLIP_MODES} and a "
                         f"finite threshold > 0, got {recurrent_grad_clip!r}")
    return mode, threshold


@dataclass
class FlowRecord:
    """The gradient norms of one forward of one layer and direction, after its backward."""

    module: str  # the fused module's name in the recorded model ("" for the model itself)
    layer: int
    direction: int  # 0 forward, 1 reverse
    hidden: torch.Tensor  # (T, B) ||dL/dh_t|| per row and time, zero outside the row's length
    cell: torch.Tensor | None  # (T, B) ||dL/dc_t|| for an LSTM, else None
    lengths: torch.Tensor  # (B,) each row's length

    def distance(self) -> torch.Tensor:
        """(T, B) backward steps between the row's first backward step and time t (0 at the row's last time
        in the forward direction, at time 0 in the reverse one); -1 outside the row's length."""
        T = self.hidden.shape[0]
        t = torch.arange(T).unsqueeze(1)
        lengths = self.lengths.unsqueeze(0)
        steps = t if self.direction else lengths - 1 - t
        return torch.where(t < lengths, steps, -1)

    def profile(self, quantity: str = "hidden") -> torch.Tensor:
        """(T,) the mean norm over the rows at each distance from the end of the backward pass (see
        `distance`), for rows long enough to have it (NaN where none is)."""
        norms = (self.hidden if quantity == "hidden" else self.cell).double().cpu()
        distance = self.distance()
        inside = distance >= 0
        index = distance.clamp(min=0)
        total = torch.zeros(norms.shape[0], dtype=torch.float64).index_add_(0, index[inside], norms[inside])
        count = torch.zeros(norms.shape[0], dtype=torch.float64).index_add_(
            0, index[inside], torch.ones_like(norms[inside]))
        return total / count


_ids = itertools.count(1)
_open: dict[int, tuple] = {}  # flow id -> (recorder (weak), module name, layer, direction, lengths, row order)


def deliver(flow_id: int, flow: torch.Tensor) -> None:
    """Called by the recurrence's backward (fusedrnn/ops.py) with its (states, T, B) norms."""
    entry = _open.pop(flow_id, None)
    recorder = entry[0]() if entry is not None else None
    if recorder is None:
        return  # its record_gradient_flow block has ended
    _, module, layer, direction, lengths, row_order = entry
    if row_order is not None:  # back to the caller's row order (a packed batch runs sorted by length)
        flow = flow.index_select(2, row_order.to(flow.device))
        lengths = lengths.index_select(0, row_order)
    flow = flow.detach()
    recorder.records.append(FlowRecord(module, layer, direction, flow[0], flow[1] if len(flow) > 1 else None,
                                       lengths))


class GradientFlow:
    """Records the gradient norms through time of every fused RNN layer (fusedrnn.LSTM, GRU, RNN) in a model
    while its block is open; see the top of this file. `records` lists them in the order their backward ran."""

    def __init__(self, model: nn.Module):
        from fusedrnn.nn.rnn import FusedRNNMixin

        self.layers = [(name, m) for name, m in model.named_modules() if isinstance(m, FusedRNNMixin)]
        if not self.layers:
            raise ValueError(f"{type(model).__name__} holds no fused RNN layer (fusedrnn.LSTM, GRU, RNN) whose "
                             "gradient flow could be recorded; fusedrnn.convert(model) swaps torch's in")
        self.records: list[FlowRecord] = []

    def __enter__(self) -> "GradientFlow":
        for name, module in self.layers:
            if getattr(module, "_gradient_flow", None) is not None:
                raise RuntimeError(f"the gradient flow of {name or 'the model'} is already being recorded")
            module._gradient_flow = (self, name)
        return self

    def __exit__(self, *exc) -> None:
        for _, module in self.layers:
            module._gradient_flow = None
        for flow_id in [i for i, entry in _open.items() if entry[0]() is self]:
            del _open[flow_id]  # forwards whose backward did not run inside the block

    def open(self, module: str, layer: int, direction: int, lengths: torch.Tensor,
             row_order: torch.Tensor | None) -> int:
        """A flow id for one forward of a layer and direction (fusedrnn/nn/stack.py)."""
        flow_id = next(_ids)
        _open[flow_id] = (weakref.ref(self), module, layer, direction, lengths.cpu().long(), row_order)
        return flow_id

    def get(self, module: str = "", layer: int = 0, direction: int = 0) -> FlowRecord:
        """The latest record of a layer and direction of the fused module named `module`."""
        for record in reversed(self.records):
            if (record.module, record.layer, record.direction) == (module, layer, direction):
                return record
        names = sorted({(r.module, r.layer, r.direction) for r in self.records})
        raise KeyError(f"no gradient flow recorded for module {module!r}, layer {layer}, direction {direction}; "
                       f"recorded (module, layer, direction): {names}")


def record_gradient_flow(model: nn.Module) -> GradientFlow:
    """A context manager that records, in every fused RNN layer of `model`, the norms of dL/dh_t (and dL/dc_t)
    at every step of each backward run inside it; see fusedrnn/gradient_flow.py."""
    return GradientFlow(model)
