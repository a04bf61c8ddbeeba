"""The recurrent cells, one file each, and the registry keyed by torch's `mode`.

A cell file holds the cell's reference step in plain torch (`reference_update`, given the input side that
`input_preactivations` computes for every cell), its pointwise arithmetic (Triton, on pre-activation
tiles), its Triton step bodies (forward and backward, one tile of one time step, around that arithmetic;
the strategies in `fusedrnn.strategies` run them over time) and its `Cell` specs,
`CELLS` (by mode: one file may serve several modes, as the Elman cell serves tanh and relu).
Everything that enumerates cells (convert, the reference, the benchmark, the tests) reads `REGISTRY`.
Adding a cell is one file here plus one line in `REGISTRY`.

The cell files define Triton kernels, and Triton decides at definition time whether a kernel runs in its
interpreter (TRITON_INTERPRET), so they are imported on first use (`cell(mode)`), not with fusedrnn.
What the modules need before that (the torch classes, the number of states) is in the registry line,
which torch.compile also reads while tracing (it does not trace importlib).
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Cell:
    """What a cell gives the strategies, the modules and the reference."""

    mode: str  # torch's mode string: nn.LSTM(...).mode == "LSTM"
    gates: int  # gate blocks of H in the input and recurrent projections (LSTM 4, GRU 3)
    saved_blocks: int  # blocks of H the forward saves per time step for the backward
    recurrent_grad_is_input_grad: bool  # the recurrent pre-activation's gradient equals gx's (LSTM, Elman)
    # (gx, states, w_hh, b_ih=None, b_hh=None, recurrent=None, layer_norm=None) -> new states, any dtype: one
    # step in plain torch given the input pre-activations gx = input_preactivations(x, w_ih, layer_norm)
    reference_update: Callable
    forward_step: Any  # Triton: one tile of one forward step (signature in fusedrnn.strategies.kernels)
    backward_step: Any  # Triton: one tile of one backward step
    # Triton: the cell's arithmetic on one tile, which the step bodies above and the one-launch cell step
    # (fusedrnn/strategies/single_step.py) share; signatures in that file.
    pointwise_forward: Any
    pointwise_backward: Any
    variant: int = 0  # passed to the step bodies as VARIANT, for a file serving several modes (Elman: relu)
    zoneout_saved_blocks: int | None = None  # blocks saved per step with zoneout on, if not saved_blocks

    def reference_step(self, x, states, w_ih, w_hh, b_ih=None, b_hh=None, recurrent=None, layer_norm=None):
        """One step in plain torch, any dtype. x: (B, I); states: the cell's, each (B, H); recurrent: what the
        recurrent product reads instead of h (recurrent dropout's h * m), if given; layer_norm: the
        normalisations' parameters (g_x, b_x, g_h, b_h[, g_c, b_c]), if given. Returns the new states."""
        return self.reference_update(input_preactivations(x, w_ih, layer_norm), states, w_hh, b_ih, b_hh,
                                     recurrent=recurrent, layer_norm=layer_norm)

    def saved(self, zoneout: bool) -> int:
        """Blocks of H the forward saves per time step, with zoneout on or off."""
        return self.zoneout_saved_blocks if zoneout and self.zoneout_saved_blocks is not None else self.saved_blocks

    @property
    def states(self) -> int:
        return REGISTRY[self.mode].states

    @property
    def has_cell_state(self) -> bool:
        return self.states == 2


@dataclass(frozen=True)
class Registered:
    module: str  # the file whose `CELLS` holds this mode's Cell
    layer: type[nn.RNNBase]  # the torch classes the fused modules replace
    cell: type[nn.RNNCellBase]
    states: int  # state tensors carried between steps (LSTM: h, c; GRU, Elman: h)
    options: dict = field(default_factory=dict)  # what the torch classes need to run this mode

    @property
    def name(self) -> str:
        """The torch class's name, as users know the cell ("RNN" for both Elman modes)."""
        return self.layer.__name__


REGISTRY: dict[str, Registered] = {
    "LSTM": Registered("fusedrnn.cells.lstm", nn.LSTM, nn.LSTMCell, states=2),
    "GRU": Registered("fusedrnn.cells.gru", nn.GRU, nn.GRUCell, states=1),
    "RNN_TANH": Registered("fusedrnn.cells.elman", nn.RNN, nn.RNNCell, states=1, options={"nonlinearity": "tanh"}),
    "RNN_RELU": Registered("fusedrnn.cells.elman", nn.RNN, nn.RNNCell, states=1, options={"nonlinearity": "relu"}),
}
MODES = tuple(REGISTRY)


def input_preactivations(x, w_ih, layer_norm=None):
    """The input side of every cell's step: x W_ih^T (no bias), layer-normalised over its gate blocks with
    layer_norm's first two parameters when given. For a whole sequence at once (T, B, I) as for a step."""
    gx = x @ w_ih.t()
    if layer_norm is None:
        return gx
    from fusedrnn.cells.layer_norm import layer_norm as normalise  # a Triton file: imported on first use

    return normalise(gx, *layer_norm[0:2])


def cell(mode: str) -> Cell:
    """The cell for torch's `mode` ("LSTM", "GRU", "RNN_TANH", "RNN_RELU"), its Triton code imported on
    first use."""
    if mode not in REGISTRY:
        raise ValueError(f"fusedrnn has no fused cell for mode {mode!r}; it has {', '.join(MODES)}")
    return importlib.import_module(REGISTRY[mode].module).CELLS[mode]
