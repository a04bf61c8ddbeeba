"""Old path, kept for the configs, checkpoints and code that use it: the code is in `common/checkpoints.py`."""

from fusedrnn.lightning_modules.common.checkpoints import load_model  # noqa: F401
