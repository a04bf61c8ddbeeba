"""The named-entity tagger: `NERNet` (the network), `NERTagger` (its LightningModule, with the CRF of
crf.py and the span F1 of span_f1.py), the CoNLL data (`ConllDataModule`, `NERVocab`), the tagging
schemes (tag_schemes.py), tagging new text with a checkpoint (tagging.py) and the `fusedrnn ner` command
(`cli`).

This package took the place of the module `ner.py`; its names stay importable from here.
"""

from fusedrnn.lightning_modules.ner.crf import LinearChainCRF
from fusedrnn.lightning_modules.ner.data import ConllDataModule, NERVocab
from fusedrnn.lightning_modules.ner.model import UNK_ID, NERTagger, confusion_table
from fusedrnn.lightning_modules.ner.net import NERNet, other_occurrences_mean
from fusedrnn.lightning_modules.ner.span_f1 import SpanF1

__all__ = [
    "NERNet", "NERTagger", "ConllDataModule", "NERVocab", "LinearChainCRF", "SpanF1", "other_occurrences_mean",
    "confusion_table", "UNK_ID",
]
