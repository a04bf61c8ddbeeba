"""The recurrent cells, one file each, and the registry keyed by torch's `mode`.

A cell file holds the cell's float64 reference step, its Triton step bodies (forward and backward, one
tile of one time step; the strategies in `fusedrnn.strategies` run them over time) and its `Cell` spec.
Everything that enumerates cells (convert, the reference, the benchmark, the tests) reads `REGISTRY`.
Adding a cell is one file here plus one line in `REGISTRY`.

The cell files define Triton kernels, and Triton decides at definition time whether a kernel runs in its
interpreter (TRITON_INTERPRET), so they are imported on first use (`cell(mode)`), not with fusedrnn.
What the modules need before that (the torch classes, the number of states) is in the registry line,
which torch.compile also reads while tracing (it does not trace importlib).
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class Cell:
    """What a cell gives the strategies, the modules and the reference."""

    mode: str  # torch's mode string: nn.LSTM(...).mode == "LSTM"
    gates: int  # gate blocks of H in the input and recurrent projections (LSTM 4, GRU 3)
    saved_blocks: int  # blocks of H the forward saves per time step for the backward
    recurrent_grad_is_input_grad: bool  # the recurrent pre-activation's gradient equals gx's (LSTM)
    reference_step: Callable  # (x, states, w_ih, w_hh, b_ih=None, b_hh=None) -> new states, any dtype
    forward_step: Any  # Triton: one tile of one forward step (signature in fusedrnn.strategies.kernels)
    backward_step: Any  # Triton: one tile of one backward step

    @property
    def states(self) -> int:
        return REGISTRY[self.mode].states

    @property
    def has_cell_state(self) -> bool:
        return self.states == 2


@dataclass(frozen=True)
class Registered:
    module: str  # the file that defines `CELL`
    layer: type[nn.RNNBase]  # the torch classes the fused modules replace
    cell: type[nn.RNNCellBase]
    states: int  # state tensors carried between steps (LSTM: h, c; GRU: h)


REGISTRY: dict[str, Registered] = {
    "LSTM": Registered("fusedrnn.cells.lstm", nn.LSTM, nn.LSTMCell, states=2),
    "GRU": Registered("fusedrnn.cells.gru", nn.GRU, nn.GRUCell, states=1),
}
MODES = tuple(REGISTRY)


def cell(mode: str) -> Cell:
    """The cell for torch's `mode` ("LSTM", "GRU"), its Triton code imported on first use."""
    if mode not in REGISTRY:
        raise ValueError(f"fusedrnn has no fused cell for mode {mode!r}; it has {', '.join(MODES)}")
    return importlib.import_module(REGISTRY[mode].module).CELL
