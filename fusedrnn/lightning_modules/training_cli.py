"""Old path, kept for the configs, checkpoints and code that use it: the code is in `common/training_cli.py`."""

from fusedrnn.lightning_modules.common.training_cli import (  # noqa: F401
    Link,
    LogConfigCallback,
    TrainingCLI,
    run_training_cli,
)
