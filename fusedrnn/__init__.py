"""fusedrnn: Triton-fused LSTM, GRU and Elman RNN layers and cells, drop-in replacements for the torch.nn modules."""

from fusedrnn.gradient_flow import record_gradient_flow
from fusedrnn.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, convert

__version__ = "0.1.0"

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "convert", "record_gradient_flow", "__version__"]
