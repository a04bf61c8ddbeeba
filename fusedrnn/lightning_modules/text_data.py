"""Old path, kept for the configs, checkpoints and code that use it: the code is in `charlm/data.py`."""

from fusedrnn.lightning_modules.charlm.data import (  # noqa: F401
    TINY_SHAKESPEARE_URL,
    CharVocab,
    ContiguousBatches,
    TextDataModule,
    download,
    read_text,
)
