"""The input projection, and the cells' fused step, in the dtype the recurrence runs in, so that under
autocast a fused module returns the dtypes its torch counterpart returns on the same device.

torch autocasts an RNN only where the op it runs is on autocast's lower-precision list for the device. On
CUDA cuDNN's RNN (nn.LSTM, nn.GRU) and the cell ops (lstm_cell, gru_cell) are, so everything runs in
autocast's dtype, as the fused recurrence does when it gets gx from an autocast F.linear. On the CPU only
oneDNN's LSTM layer is (mkldnn_rnn_layer, which nn.LSTM runs while oneDNN is enabled); nn.GRU and the cells
project in autocast's dtype but carry their states, hence their outputs, in the input's dtype.
"""

import torch
import torch.nn.functional as F


def _torch_autocasts(device_type: str, mode: str, kind: str) -> bool:
    if device_type == "cpu":
        return kind == "sequence" and mode == "LSTM" and torch.backends.mkldnn.is_available() and \
            torch.backends.mkldnn.enabled
    return True


def input_projection(input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, mode: str,
                     kind: str) -> torch.Tensor:
    """gx = input @ weight^T + bias, in autocast's dtype where torch's `mode` module of this `kind`
    ("sequence" or "step") autocasts on input's device, else in input's dtype."""
    gx = F.linear(input, weight, bias)
    if gx.dtype == input.dtype or _torch_autocasts(input.device.type, mode, kind):
        return gx
    return gx.to(input.dtype)


def step_dtype(input: torch.Tensor, mode: str) -> torch.dtype:
    """The dtype a fused cell step runs in and returns: autocast's where torch's cell op autocasts on input's
    device (CUDA), else input's (autocast leaves float64 alone, as it does)."""
    device = input.device.type
    if input.dtype != torch.float64 and torch.is_autocast_enabled(device) and _torch_autocasts(device, mode, "step"):
        return torch.get_autocast_dtype(device)
    return input.dtype
