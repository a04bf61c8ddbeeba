from fusedrnn.nn.cell import FUSED_CELLS, GRUCell, LSTMCell, RNNCell
from fusedrnn.nn.convert import convert
from fusedrnn.nn.rnn import FUSED_LAYERS, GRU, LSTM, RNN

__all__ = ["LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell", "convert", "FUSED_LAYERS", "FUSED_CELLS"]
