"""The character language model: `CharLMNet` (the network), `CharLM` (its LightningModule), the text data
(`CharVocab`, `TextDataModule`) and the `fusedrnn charlm` command (`cli`).

This package took the place of the module `charlm.py`; its names stay importable from here.
"""

from fusedrnn.lightning_modules.charlm.data import CharVocab, TextDataModule
from fusedrnn.lightning_modules.charlm.model import LN2, CharLM, loss_metrics
from fusedrnn.lightning_modules.charlm.net import CharLMNet

__all__ = ["CharLM", "CharLMNet", "CharVocab", "TextDataModule", "loss_metrics", "LN2"]
