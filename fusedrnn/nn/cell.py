"""Drop-in `LSTMCell`, `GRUCell` and `RNNCell`: one fused step in one Triton launch
(fusedrnn/strategies/single_step.py)."""

import torch
from torch import nn

from fusedrnn._backend import resolve
from fusedrnn.cells import REGISTRY
from fusedrnn.nn.autocast import step_dtype
from fusedrnn.nn.backend_option import BackendOption
from fusedrnn.nn.checks import check_devices_and_dtypes
from fusedrnn.ops import cell_step


class FusedCellMixin(BackendOption):
    """Routes forward to the fused kernel or to torch's own, by backend and device. Every Triton backend runs
    the same one-launch step: the strategies differ only in how a sequence's time loop runs."""

    backend: str | None
    mode: str

    def forward(self, input, hx=None):
        batch = input.size(0) if input.dim() == 2 else 1
        implementation = resolve(self.backend, input, self.mode, "step", batch, self.hidden_size)
        if implementation == "torch":
            return super().forward(input, hx)
        n_states = REGISTRY[self.mode].states
        has_cell_state = n_states == 2
        states = (tuple(hx) if has_cell_state else (hx,)) if hx is not None else None
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        for k, state in enumerate(states or ()):
            if state.dim() not in (1, 2):
                what = f"hx[{k}]" if has_cell_state else "hidden"
                raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {state.dim()}D instead")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
            states = tuple(s.unsqueeze(0) for s in states) if states is not None else None
        self._check_sizes(input, states or ())
        check_devices_and_dtypes(input, states or (), self.weight_ih)

        dtype = step_dtype(input, self.mode)
        # As nn.LSTMCell/GRUCell (cuBLAS): float32 products may use TF32 only when torch's matmul flag allows it.
        final = cell_step(self.mode, input.to(dtype), states, self.weight_ih, self.weight_hh, self.bias_ih,
                          self.bias_hh, allow_tf32=torch.backends.cuda.matmul.allow_tf32)
        if not batched:
            final = [s.squeeze(0) for s in final]
        return tuple(final) if has_cell_state else final[0]

    def _check_sizes(self, input, states) -> None:
        # torch's messages for the same mistakes (raised there by the C++ cell).
        if input.size(1) != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.size(1)} expected {self.input_size}")
        for k, state in enumerate(states):
            if state.size(0) != input.size(0):
                raise RuntimeError(
                    f"Input batch size {input.size(0)} doesn't match hidden{k} batch size {state.size(0)}"
                )
            if state.size(1) != self.hidden_size:
                raise RuntimeError(
                    f"hidden{k} has inconsistent hidden_size: got {state.size(1)}, expected {self.hidden_size}"
                )


class LSTMCell(FusedCellMixin, nn.LSTMCell):
    """`torch.nn.LSTMCell` with a fused Triton step on CUDA; arguments as torch's plus `backend`
    (see `fusedrnn.LSTM`).

        >>> cell = fusedrnn.LSTMCell(32, 64).cuda()
        >>> h, c = cell(x, (h, c))
    """

    mode = "LSTM"


class GRUCell(FusedCellMixin, nn.GRUCell):
    """`torch.nn.GRUCell` with a fused Triton step on CUDA; arguments as torch's plus `backend`.

        >>> cell = fusedrnn.GRUCell(32, 64).cuda()
        >>> h = cell(x, h)
    """

    mode = "GRU"


class RNNCell(FusedCellMixin, nn.RNNCell):
    """`torch.nn.RNNCell` (nonlinearity "tanh" or "relu") with a fused Triton step on CUDA; arguments as
    torch's plus `backend`.

        >>> cell = fusedrnn.RNNCell(32, 64, nonlinearity="relu").cuda()
        >>> h = cell(x, h)
    """

    @property
    def mode(self) -> str:
        """torch's mode string for this nonlinearity, as nn.RNN names it (nn.RNNCell has none)."""
        if self.nonlinearity not in ("tanh", "relu"):
            raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")  # torch's error, raised at forward
        return f"RNN_{self.nonlinearity.upper()}"


FUSED_CELLS = {"LSTM": LSTMCell, "GRU": GRUCell, "RNN_TANH": RNNCell, "RNN_RELU": RNNCell}  # mode -> fused cell class
