"""fusedrnn: Triton-fused LSTM and GRU layers, drop-in replacements for the torch.nn modules."""

from fusedrnn.nn import GRU, LSTM, GRUCell, LSTMCell, convert

__version__ = "0.1.0"

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell", "convert", "__version__"]
