"""The baseline people write by hand: a Python loop over nn.LSTMCell / nn.GRUCell steps, one cell per
layer and direction, holding the weights of a torch.nn.LSTM / GRU under the cells' own names."""

import torch
from torch import nn

from fusedrnn.cells import REGISTRY


def cell_step(cell: nn.Module, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """One step with the state as a tuple for both cells (LSTMCell takes and returns (h, c), GRUCell h)."""
    if isinstance(cell, nn.LSTMCell):
        return tuple(cell(x, state))
    return (cell(x, state[0]),)


class CellLoop(nn.Module):
    """Same inputs and outputs as `rnn` (time-major), computed step by step with torch's cells.

    `step` runs one cell step; torch.compile(cell_step) gives the compiled variant.
    """

    def __init__(self, rnn: nn.RNNBase, step=cell_step):
        super().__init__()
        cell_class = REGISTRY[rnn.mode].cell
        self.num_layers = rnn.num_layers
        self.directions = 2 if rnn.bidirectional else 1
        self.step = step
        self.cells = nn.ModuleList()
        self.torch_names = {}  # cell parameter name -> the rnn's name, e.g. cells.1.weight_ih -> weight_ih_l0_reverse
        state = rnn.state_dict()
        factory = dict(device=rnn.weight_ih_l0.device, dtype=rnn.weight_ih_l0.dtype)
        for layer in range(self.num_layers):
            for direction in range(self.directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                input_size = rnn.input_size if layer == 0 else rnn.hidden_size * self.directions
                cell = cell_class(input_size, rnn.hidden_size, bias=rnn.bias, **factory)
                cell.load_state_dict({name: state[name + suffix] for name in cell.state_dict()})
                index = len(self.cells)
                self.cells.append(cell)
                for name, _ in cell.named_parameters():
                    self.torch_names[f"cells.{index}.{name}"] = name + suffix

    def named_torch_parameters(self) -> dict[str, nn.Parameter]:
        """The parameters under torch.nn.LSTM's names, so gradients compare name by name."""
        return {self.torch_names[name]: p for name, p in self.named_parameters()}

    def forward(self, x: torch.Tensor, states: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """x: (T, B, I); states: (h0[, c0]), each (layers * directions, B, H). Returns [y, h_n(, c_n)]."""
        T = x.size(0)
        finals = [[] for _ in states]
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.directions):
                index = layer * self.directions + direction
                state = tuple(s[index] for s in states)
                ys = [None] * T
                for t in reversed(range(T)) if direction else range(T):
                    state = self.step(self.cells[index], layer_input[t], state)
                    ys[t] = state[0]
                outputs.append(torch.stack(ys))
                for acc, s in zip(finals, state):
                    acc.append(s)
            layer_input = torch.cat(outputs, dim=2) if self.directions == 2 else outputs[0]
        return [layer_input, *(torch.stack(f) for f in finals)]
