"""Old path, kept for the configs, checkpoints and code that use it: the code is in `common/optim.py`."""

from fusedrnn.lightning_modules.common.optim import LR_SCHEDULES, adamw_with_schedule, check_lr_schedule  # noqa: F401
