from fusedrnn.nn.cell import FUSED_CELLS, GRUCell, LSTMCell
from fusedrnn.nn.convert import convert
from fusedrnn.nn.rnn import FUSED_LAYERS, GRU, LSTM

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell", "convert", "FUSED_LAYERS", "FUSED_CELLS"]
