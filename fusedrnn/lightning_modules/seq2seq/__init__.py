"""The translation model: `Seq2SeqNet` (the network), `Search` (greedy and beam search over it), `Seq2Seq`
(its LightningModule), the parallel data (`ParallelDataModule`, `Seq2SeqVocab`) and the `fusedrnn
seq2seq` command (`cli`).

This package took the place of the module `seq2seq.py`; its names stay importable from here.
"""

from fusedrnn.lightning_modules.seq2seq.data import ParallelDataModule, Seq2SeqVocab
from fusedrnn.lightning_modules.seq2seq.model import Seq2Seq
from fusedrnn.lightning_modules.seq2seq.net import Attention, Memory, Seq2SeqNet, State
from fusedrnn.lightning_modules.seq2seq.search import Search

__all__ = ["Seq2Seq", "Seq2SeqNet", "Search", "ParallelDataModule", "Seq2SeqVocab", "Attention", "Memory", "State"]
