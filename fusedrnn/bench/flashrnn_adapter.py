"""FlashRNN (the `flashrnn` package) behind torch.nn.LSTM's parameters and calling convention.

FlashRNN takes the input projection per gate, Wx: (B, T, gates, heads, D), a recurrent matrix
R: (gates, heads, D, previous D), one bias b: (gates, heads, D) and states (S, B, 1, heads, D), and
returns every state at every step, (S, B, T, heads, D), plus the last. Its LSTM gate order (i, f, z, o)
is torch's (i, f, g, o), so torch's weights map with reshapes only: one head, R[g, 0] = W_hh[g*H:(g+1)*H],
b = b_ih + b_hh. Gradients reach torch's parameters through those reshapes by autograd. A mapping
mistake would not flatter anyone: it fails the grad check and the run reports no speed for it.
"""

import importlib
import importlib.util

import torch
import torch.nn.functional as F
from torch import nn


def flashrnn_function():
    """FlashRNN's entry point, or None when the package is not installed."""
    if importlib.util.find_spec("flashrnn") is None:
        return None
    module = importlib.import_module("flashrnn.flashrnn")
    return module.flashrnn


class FlashRNNLSTM(nn.Module):
    """A single-layer, unidirectional LSTM run by FlashRNN's fused CUDA kernel."""

    def __init__(self, rnn: nn.LSTM, backend: str = "cuda_fused"):
        super().__init__()
        for name, value in rnn.state_dict().items():
            self.register_parameter(name, nn.Parameter(value.detach().clone()))
        self.hidden_size = rnn.hidden_size
        self.backend = backend
        self.kernel = flashrnn_function()

    def forward(self, x: torch.Tensor, states: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        """x: (T, B, I); states: (h0, c0), each (1, B, H). Returns [y, h_n, c_n] as torch.nn.LSTM does."""
        T, B, _ = x.shape
        H = self.hidden_size
        gates = 4
        wx = F.linear(x, self.weight_ih_l0).view(T, B, gates, 1, H).transpose(0, 1)
        recurrent = self.weight_hh_l0.view(gates, 1, H, H)
        bias = (self.bias_ih_l0 + self.bias_hh_l0).view(gates, 1, H)
        h0, c0 = states
        initial = torch.stack((h0[0], c0[0])).view(2, B, 1, 1, H)
        dtype = str(x.dtype).removeprefix("torch.")
        every_state, last = self.kernel(
            wx.contiguous(), recurrent, bias, states=initial, function="lstm", backend=self.backend, dtype=dtype
        )
        y = every_state[0, :, :, 0].transpose(0, 1)
        return [y, last[0, :, 0, 0].unsqueeze(0), last[1, :, 0, 0].unsqueeze(0)]
