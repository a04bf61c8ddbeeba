"""AdamW and a learning-rate schedule, written once for every model.

Schedules:
  cosine:  linear warm-up over `warmup_steps` optimizer steps, then cosine decay to min_lr_ratio * lr at
           the run's last step (needs a finite run: max_epochs or max_steps).
  plateau: halve the learning rate when the monitored validation metric stops improving for an epoch;
           the choice when the run's length is not known ahead (a max_time budget, say).
  none:    a constant learning rate.
"""

import math

import lightning.pytorch as pl
import torch

LR_SCHEDULES = ("cosine", "plateau", "none")


def check_lr_schedule(name: str) -> None:
    if name not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {name!r}")


def adamw_with_schedule(
    module: pl.LightningModule,
    *,
    lr: float,
    weight_decay: float,
    schedule: str,
    monitor: str,
    mode: str = "min",
    warmup_steps: int = 0,
    min_lr_ratio: float = 0.0,
):
    """The value for `configure_optimizers`: AdamW over the module's parameters and `schedule`, which
    `plateau` drives from the logged metric `monitor` (`mode` "min" or "max")."""
    check_lr_schedule(schedule)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    if schedule == "none":
        return optimizer
    if schedule == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=0.5, patience=1)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": plateau, "monitor": monitor}}
    total = module.trainer.estimated_stepping_batches
    if not math.isfinite(total):
        raise ValueError("lr_schedule 'cosine' needs a finite run: set max_epochs or max_steps")
    warmup = min(warmup_steps, max(int(total) // 10, 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min((step - warmup) / max(total - warmup, 1), 1.0)
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    cosine = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}
