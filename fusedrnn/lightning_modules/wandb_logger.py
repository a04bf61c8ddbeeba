"""Old path, kept for the configs, checkpoints and code that use it: the code is in `common/wandb_logger.py`."""

from fusedrnn.lightning_modules.common.wandb_logger import (  # noqa: F401
    MISSING_WANDB,
    WandbLogger,
    wandb_login_configured,
)
