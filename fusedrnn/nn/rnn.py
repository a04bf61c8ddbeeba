"""Drop-in `LSTM`, `GRU` and `RNN`: subclasses of the torch modules whose forward runs the fused kernels.

Being subclasses, they keep torch's constructor checks, parameter names and shapes (state dicts load
both ways), `isinstance(m, nn.LSTM)`, `flatten_parameters`, `all_weights`, `reset_parameters` and repr.

Being subclasses, they also meet Dynamo's refusal of nn.LSTM/GRU/RNN: torch.compile graph-breaks on them unless
`torch._dynamo.config.allow_rnn` is set (torch.export sets it itself). With it, Dynamo inlines the forward
below, each direction of each layer one `fusedrnn::recurrence` op (fusedrnn/ops.py). fusedrnn leaves the
flag to the user: it also changes how Dynamo treats torch's own RNN modules.
"""

from torch import nn
from torch.nn.utils.rnn import PackedSequence

from fusedrnn._backend import default_backend, resolve
from fusedrnn.nn.backend_option import BackendOption
from fusedrnn.nn.regularizers import Regularizers
from fusedrnn.nn.stack import fused_rnn_forward


class FusedRNNMixin(Regularizers, BackendOption):
    """Routes forward to the fused kernels or to torch's own forward, by backend and device; takes the
    regularisers' options (fusedrnn/nn/regularizers.py)."""

    backend: str | None

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence):
            data, batch = input.data, int(input.batch_sizes[0])
        else:
            data = input
            batch = input.size(0 if self.batch_first else 1) if input.dim() == 3 else 1
        if self.proj_size and (self.backend or default_backend()) == "auto":
            # auto's table and autotuner measured no projected LSTM: torch's implementation (cuDNN) runs.
            implementation = "torch"
        else:
            implementation = resolve(self.backend, data, self.mode, "sequence", batch, self.hidden_size)
        if implementation != "torch" or self.needs_loop():
            return fused_rnn_forward(self, input, hx, implementation)
        return self.torch_forward(super().forward, input, hx)


class LSTM(FusedRNNMixin, nn.LSTM):
    """`torch.nn.LSTM` with fused Triton kernels on CUDA.

    Same arguments as `torch.nn.LSTM` plus `backend`: "auto" (on CUDA what the committed GPU benchmarks
    measured fastest for this GPU, cell, dtype and size, see fusedrnn/strategies/dispatch.py; torch on the
    CPU), a Triton strategy ("triton-persistent": one launch for all steps; "triton-fusedstep": the
    recurrent GEMM inside each step's kernel; "triton": a cuBLAS GEMM and a fused kernel per step) or
    "torch"; None (default) reads the environment variable FUSEDRNN_BACKEND, else "auto". Regularisers cuDNN
    has not, off by default (fusedrnn/nn/regularizers.py): `weight_drop` (DropConnect on W_hh in training) and
    `recurrent_dropout` (one mask per sequence on the h that enters the recurrent product).

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
