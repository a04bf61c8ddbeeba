from fusedrnn.nn.cell import GRUCell, LSTMCell
from fusedrnn.nn.convert import convert
from fusedrnn.nn.rnn import GRU, LSTM

__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell", "convert"]
