"""Drop-in `LSTM`, `GRU` and `RNN`: subclasses of the torch modules whose forward runs the fused kernels.

Being subclasses, they keep torch's constructor checks, parameter names and shapes (state dicts load
both ways), `isinstance(m, nn.LSTM)`, `flatten_parameters`, `all_weights`, `reset_parameters` and repr.

Being subclasses, they also meet Dynamo's refusal of nn.LSTM/GRU/RNN: torch.compile graph-breaks on them unless
`torch._dynamo.config.allow_rnn` is set (torch.export sets it itself). With it, Dynamo inlines the forward
below, each direction of each layer one `fusedrnn::recurrence` op (fusedrnn/ops.py). fusedrnn leaves the
flag to the user: it also changes how Dynamo treats torch's own RNN modules.
"""

import warnings

from torch import nn
from torch.nn.utils.rnn import PackedSequence

from fusedrnn._backend import (
    STEPWISE,
    TRITON_BACKENDS,
    default_backend,
    interpreter_enabled,
    regularised_kernels_checked,
    resolve,
)
from fusedrnn.gradient_flow import check_clip
from fusedrnn.nn.backend_option import BackendOption
from fusedrnn.nn.layer_norm import LayerNormOption
from fusedrnn.nn.regularizers import Regularizers
from fusedrnn.nn.stack import fused_rnn_forward

# torch's RNNs cannot run these options; the fused kernels run them, but no GPU run has checked them there yet
# (auto's table, fusedrnn/strategies/dispatch.py, measured plain layers), so auto keeps to the correct and slow
# loop and says so (once per call site, warnings' default).
TORCH_LOOP_UNDER_AUTO = (
    "fusedrnn: recurrent_dropout, zoneout or layer_norm under backend='auto' runs here as a loop of torch ops over "
    "time, many times slower than a fused layer: no GPU run has yet checked these options in the fused kernels, so "
    "auto does not pick them. backend='triton-fusedstep' (or 'triton-persistent', 'triton') runs them fused "
    "(tested under Triton's interpreter)."
)


class FusedRNNMixin(LayerNormOption, Regularizers, BackendOption):
    """Routes forward to the fused kernels or to torch's own forward, by backend and device. Takes the
    regularisers' options (fusedrnn/nn/regularizers.py), `layer_norm` (fusedrnn/nn/layer_norm.py) and
    `recurrent_grad_clip` (None, ("value", v) or
    ("norm", v): fusedrnn/gradient_flow.py)."""

    backend: str | None

    def __init__(self, *args, recurrent_grad_clip: tuple[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.recurrent_grad_clip = check_clip(recurrent_grad_clip) if recurrent_grad_clip is not None else None

    def extra_repr(self) -> str:
        clip = getattr(self, "recurrent_grad_clip", None)
        return super().extra_repr() + (f", recurrent_grad_clip={clip!r}" if clip is not None else "")

    def __prepare_scriptable__(self):
        if getattr(self, "recurrent_grad_clip", None) is not None:
            raise RuntimeError("TorchScript runs torch's implementation, which cannot clip the gradient through "
                               "time: set recurrent_grad_clip=None before scripting")
        plain = super().__prepare_scriptable__()
        plain.__dict__.pop("recurrent_grad_clip", None)
        plain.__dict__.pop("_gradient_flow", None)
        return plain

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            data, batch = input.data, int(input.batch_sizes[0])
        else:
            data = input
            batch = input.size(0 if self.batch_first else 1) if input.dim() == 3 else 1
        in_kernel = getattr(self, "recurrent_grad_clip", None) is not None or getattr(self, "_gradient_flow", None)
        if in_kernel:
            return fused_rnn_forward(self, input, hx, self._kernel_backend(data, batch))
        if self.proj_size and (self.backend or default_backend()) == "auto":
            # auto's table and autotuner measured no projected LSTM: torch's implementation (cuDNN) runs.
            implementation = "torch"
        else:
            implementation = resolve(self.backend, data, self.mode, "sequence", batch, self.hidden_size)
        auto = (self.backend or default_backend()) == "auto"
        if auto and self.needs_loop() and not regularised_kernels_checked():
            implementation = "torch"  # the table measured plain layers; these kernels are not GPU-checked yet
        if implementation != "torch" or self.needs_loop():
            if implementation == "torch" and data.device.type != "cpu" and auto:
                warnings.warn(TORCH_LOOP_UNDER_AUTO, stacklevel=2)
            return fused_rnn_forward(self, input, hx, implementation)
        return self.torch_forward(super().forward, input, hx)

    def _kernel_backend(self, data, batch: int) -> str:
        """The Triton strategy for a forward whose backward records or clips the gradient through time, which
        only the fused kernels do: the one asked for, or with "auto" the one auto picks, else stepwise."""
        what = "clipping (recurrent_grad_clip)" if self.recurrent_grad_clip else "recording (record_gradient_flow)"
        if self.proj_size:
            raise ValueError(f"gradient {what} is not implemented with a projection (proj_size > 0)")
        choice = self.backend or default_backend()
        if choice == "torch":
            raise ValueError(f"gradient {what} runs in the fused kernels, which backend='torch' does not use: "
                             f"choose a Triton backend ({', '.join(TRITON_BACKENDS)}) or 'auto'")
        if choice == "auto":
            if data.device.type != "cuda" and not interpreter_enabled():
                raise RuntimeError(f"gradient {what} runs in the fused kernels, which run on CUDA; on the CPU "
                                   "only in Triton's interpreter (TRITON_INTERPRET=1 set before importing triton)")
            implementation = resolve("auto", data, self.mode, "sequence", batch, self.hidden_size)
            return implementation if implementation != "torch" else STEPWISE
        return resolve(choice, data, self.mode, "sequence")


class LSTM(FusedRNNMixin, nn.LSTM):
    """`torch.nn.LSTM` with fused Triton kernels on CUDA.

    Same arguments as `torch.nn.LSTM` plus `backend`: "auto" (on CUDA what the committed GPU benchmarks
    measured fastest for this GPU, cell, dtype and size, see fusedrnn/strategies/dispatch.py; torch on the
    CPU), a Triton strategy ("triton-persistent": one launch for all steps; "triton-fusedstep": the
    recurrent GEMM inside each step's kernel; "triton": a cuBLAS GEMM and a fused kernel per step) or
    "torch"; None (default) reads the environment variable FUSEDRNN_BACKEND, else "auto". Regularisers cuDNN
    has not, off by default (fusedrnn/nn/regularizers.py): `weight_drop` (DropConnect on W_hh in training),
    `recurrent_dropout` (one mask per sequence on the h that enters the recurrent product) and `zoneout` (per
    step, units keep their previous h, and c, at random in training; the expectation at evaluation).

    proj_size > 0 (h_t = W_hr (o * tanh(c_t))) runs fused in every Triton strategy, each then as the
    stepwise one (cuBLAS GEMMs for the recurrent product and the projection around the fused step kernel);
    "auto" runs torch's implementation for it.

        >>> lstm = fusedrnn.LSTM(32, 64, num_layers=2, bidirectional=True).cuda()
        >>> output, (h_n, c_n) = lstm(x)
    """


class GRU(FusedRNNMixin, nn.GRU):
    """`torch.nn.GRU` with fused Triton kernels on CUDA; arguments as `torch.nn.GRU` plus `backend`
    (see `fusedrnn.LSTM`).

        >>> gru = fusedrnn.GRU(32, 64, batch_first=True).cuda()
        >>> output, h_n = gru(x)
    """


class RNN(FusedRNNMixin, nn.RNN):
    """`torch.nn.RNN` (Elman, nonlinearity "tanh" or "relu") with fused Triton kernels on CUDA; arguments
    as `torch.nn.RNN` plus `backend` (see `fusedrnn.LSTM`).

        >>> rnn = fusedrnn.RNN(32, 64, nonlinearity="relu").cuda()
        >>> output, h_n = rnn(x)
    """


FUSED_LAYERS = {"LSTM": LSTM, "GRU": GRU, "RNN_TANH": RNN, "RNN_RELU": RNN}  # torch's mode -> fused layer class
