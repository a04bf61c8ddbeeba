"""Old path, kept for the configs, checkpoints and code that use it: the code is in `ner/data.py`."""

from fusedrnn.lightning_modules.ner.data import (  # noqa: F401
    CASINGS,
    PAD,
    UNK,
    ConllDataModule,
    DocumentBatches,
    Sentence,
    TaggedBatch,
    casing,
    collate,
    read_conll,
    tag_list,
)
from fusedrnn.lightning_modules.ner.data import NERVocab as Vocabulary  # noqa: F401  (the old class name)
