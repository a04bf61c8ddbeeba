"""Old path, kept for the configs, checkpoints and code that use it: the code is in `ner/span_f1.py`."""

from fusedrnn.lightning_modules.ner.span_f1 import SpanF1  # noqa: F401
