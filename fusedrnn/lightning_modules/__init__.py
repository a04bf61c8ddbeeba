"""PyTorch Lightning models on the fused layers, their data modules, callbacks and the training CLI.

Needs the `lightning` extra (pip install "fusedrnn[lightning]"); `import fusedrnn` alone does not load it.
"""

from fusedrnn.lightning_modules.charlm import CharLM, CharVocab, TextDataModule
from fusedrnn.lightning_modules.ner import NERTagger
from fusedrnn.lightning_modules.ner.crf import LinearChainCRF
from fusedrnn.lightning_modules.ner.data import ConllDataModule
from fusedrnn.lightning_modules.ner.span_f1 import SpanF1
from fusedrnn.lightning_modules.parallel_data import ParallelDataModule
from fusedrnn.lightning_modules.seq2seq import Seq2Seq

__all__ = [
    "CharLM", "CharVocab", "TextDataModule", "NERTagger", "ConllDataModule", "LinearChainCRF", "SpanF1",
    "Seq2Seq", "ParallelDataModule",
]
