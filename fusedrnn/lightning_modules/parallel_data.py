"""Old path, kept for the configs, checkpoints and code that use it: the code is in `seq2seq/data.py`."""

from fusedrnn.lightning_modules.seq2seq.data import (  # noqa: F401
    BOS,
    EOS,
    PAD,
    SPECIALS,
    UNK,
    Examples,
    LengthBatches,
    ParallelDataModule,
    detokenize,
    read_lines,
    read_parallel,
    tokenize,
)
from fusedrnn.lightning_modules.seq2seq.data import Seq2SeqVocab as Vocab  # noqa: F401  (the old class name)
