"""Old path, kept for the configs, checkpoints and code that use it: the code is in `common/model_command.py`."""

from fusedrnn.lightning_modules.common.model_command import (  # noqa: F401
    checkpoint_parser,
    load_for_command,
    run_model_command,
)
