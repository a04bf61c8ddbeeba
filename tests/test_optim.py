"""The optimizer and learning-rate schedules that every Lightning model shares."""

from types import SimpleNamespace

import pytest
import torch

from fusedrnn.lightning_modules.common.optim import adamw_with_schedule


def test_shared_optimizer_helper_builds_each_schedule():
    """optim.adamw_with_schedule: plateau follows the monitored metric in its direction, cosine warms up
    then decays to min_lr_ratio * lr at the last step, none is a bare AdamW; a bad name is a ValueError."""
    module = torch.nn.Linear(2, 2)
    module.trainer = SimpleNamespace(estimated_stepping_batches=100)
    common = dict(lr=1.0, weight_decay=0.0, monitor="val/f1")
    assert isinstance(adamw_with_schedule(module, schedule="none", **common), torch.optim.AdamW)
    plateau = adamw_with_schedule(module, schedule="plateau", mode="max", **common)["lr_scheduler"]
    assert plateau["monitor"] == "val/f1" and plateau["scheduler"].mode == "max"
    cosine = adamw_with_schedule(module, schedule="cosine", warmup_steps=10, min_lr_ratio=0.1, **common)
    optimizer, scheduler = cosine["optimizer"], cosine["lr_scheduler"]["scheduler"]
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] > lrs[50] > lrs[99] >= 0.1 and optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="lr_schedule"):
        adamw_with_schedule(module, schedule="linear", **common)
