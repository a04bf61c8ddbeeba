"""PyTorch Lightning models on the fused layers, their data modules, callbacks and the training CLI.

Needs the `lightning` extra (pip install "fusedrnn[lightning]"); `import fusedrnn` alone does not load it.
"""

from fusedrnn.lightning_modules.charlm import CharLM, CharVocab, TextDataModule
from fusedrnn.lightning_modules.conll_data import ConllDataModule
from fusedrnn.lightning_modules.crf import LinearChainCRF
from fusedrnn.lightning_modules.ner import NERTagger
from fusedrnn.lightning_modules.parallel_data import ParallelDataModule
from fusedrnn.lightning_modules.seq2seq import Seq2Seq
from fusedrnn.lightning_modules.span_f1 import SpanF1

__all__ = [
    "CharLM", "CharVocab", "TextDataModule", "NERTagger", "ConllDataModule", "LinearChainCRF", "SpanF1",
    "Seq2Seq", "ParallelDataModule",
]
