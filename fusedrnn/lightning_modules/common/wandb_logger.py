"""Lightning's WandbLogger, offline unless the user can log online, and with a clear message without wandb."""

import netrc
import os
from urllib.parse import urlparse

from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

MISSING_WANDB = (
    "the config logs to Weights & Biases, but wandb is not installed: pip install wandb, "
    "or pass --trainer.logger false (or a CSVLogger) to train without it"
)


def wandb_login_configured() -> bool:
    """Whether an API key is at hand: WANDB_API_KEY, or the netrc entry that `wandb login` writes."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbLogger(LightningWandbLogger):
    """`lightning.pytorch.loggers.WandbLogger` with `offline=None` by default, meaning: online when the
    environment variable WANDB_MODE says so or an API key is configured (`wandb login`), offline otherwise.
    WANDB_MODE, when set, always wins (online, offline, disabled). `wandb sync DIR` uploads an offline run.
    Other arguments are Lightning's; `save_dir` holds the `wandb/` run folders.
    """

    def __init__(self, *args, offline: bool | None = None, **kwargs):
        try:
            import wandb  # noqa: F401
        except ImportError:
            raise ModuleNotFoundError(MISSING_WANDB) from None
        env_mode = os.environ.get("WANDB_MODE") or None
        if offline is None:
            offline = env_mode == "offline" if env_mode else not wandb_login_configured()
        if offline and kwargs.get("log_model"):
            raise ValueError("log_model uploads checkpoints, which an offline run cannot: set offline false")
        if kwargs.get("mode") is None:  # a config may pass mode: null explicitly
            # Given to wandb.init for this run alone: wandb reads WANDB_MODE once per process (a run
            # started earlier in the process would fix it), and Lightning's `offline` would set
            # WANDB_MODE for the whole process.
            kwargs["mode"] = "offline" if offline else env_mode
        super().__init__(*args, **kwargs)
