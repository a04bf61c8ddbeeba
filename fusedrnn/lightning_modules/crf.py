"""Old path, kept for the configs, checkpoints and code that use it: the code is in `ner/crf.py`."""

from fusedrnn.lightning_modules.ner.crf import FORBIDDEN, LinearChainCRF  # noqa: F401
