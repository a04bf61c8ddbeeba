"""PyTorch Lightning models on the fused layers, their data modules, callbacks and the training CLI.

Needs the `lightning` extra (pip install "fusedrnn[lightning]"); `import fusedrnn` alone does not load it.
"""

from fusedrnn.lightning_modules.charlm import CharLM
from fusedrnn.lightning_modules.text_data import CharVocab, TextDataModule

__all__ = ["CharLM", "CharVocab", "TextDataModule"]
