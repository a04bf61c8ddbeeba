"""Old path, kept for the configs, checkpoints and code that use it: the code is in `common/callbacks.py`."""

from fusedrnn.lightning_modules.common.callbacks import (  # noqa: F401
    GradNorm,
    PeakMemory,
    TextSampleTable,
    TokenThroughput,
)
