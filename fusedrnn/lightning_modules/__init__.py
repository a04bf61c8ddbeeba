"""PyTorch Lightning models on the fused layers, their data modules, callbacks and the training CLI.

Needs the `lightning` extra (pip install "fusedrnn[lightning]"); `import fusedrnn` alone does not load it.

One package per model, each with its network as a plain `nn.Module` (net.py), a thin LightningModule
around it (model.py: steps, metrics, optimizer), its data (data.py) and its `fusedrnn MODEL` command
(cli.py); `common/` holds what they share:

    charlm/   CharLMNet, CharLM, CharVocab and TextDataModule
    ner/      NERNet, NERTagger, ConllDataModule and NERVocab; crf, span_f1, tag_schemes
    seq2seq/  Seq2SeqNet, Search (greedy and beam search), Seq2Seq, ParallelDataModule and Seq2SeqVocab
    common/   Vocab (every vocabulary above is one, naming its special tokens), NetWrapper (the base of
              the LightningModules), training_cli, model_command, optim, callbacks, checkpoints, wandb_logger

Old paths keep working, because configs, saved configs and checkpoints (Lightning records class paths)
name them: the packages charlm, ner and seq2seq took the place of the modules of those names and export
their names, and every other old module (charlm_cli, text_data, ner_cli, conll_data, crf, span_f1,
tag_schemes, seq2seq_cli, parallel_data, training_cli, optim, callbacks, checkpoints, model_command,
wandb_logger) is a shim that re-exports its names from the new place (the CLI shims also run under
`python -m`). New code should import from the packages. Checkpoints written before the networks moved
into `net` still load: see common/wrapper.py.
"""

from fusedrnn.lightning_modules.charlm import CharLM, CharLMNet, CharVocab, TextDataModule
from fusedrnn.lightning_modules.common.vocab import Vocab
from fusedrnn.lightning_modules.ner import ConllDataModule, LinearChainCRF, NERNet, NERTagger, SpanF1
from fusedrnn.lightning_modules.seq2seq import ParallelDataModule, Seq2Seq, Seq2SeqNet

__all__ = [
    "CharLM", "CharLMNet", "CharVocab", "TextDataModule", "NERTagger", "NERNet", "ConllDataModule",
    "LinearChainCRF", "SpanF1", "Seq2Seq", "Seq2SeqNet", "ParallelDataModule", "Vocab",
]
