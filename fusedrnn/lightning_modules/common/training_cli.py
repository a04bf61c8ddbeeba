"""LightningCLI glue shared by the training commands: `fusedrnn MODEL fit|validate|test --config ...`.

Each command names its LightningModule and LightningDataModule classes and the values the model takes
from the data (vocabulary, tag set, ...); everything else (config files, logging of the config, the
throughput and memory callbacks, finishing the W&B run) is the same for all of them.
"""

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from fusedrnn.lightning_modules.common.callbacks import GradNorm, PeakMemory, TokenThroughput


class Link(NamedTuple):
    """A model argument taken from the instantiated data module: `source` ("data.vocab") is read after
    the data module is built, passed through `compute` and given to `target` ("model.vocab")."""

    source: str
    target: str
    compute: Callable | None = None


class LogConfigCallback(SaveConfigCallback):
    """Saves the resolved config to the log folder (Lightning's behaviour) and records it with every
    logger too, so that a W&B run shows the trainer, model and data settings it ran with."""

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        config = self.config.as_dict()
        config.pop("config", None)  # the paths of the config files, not settings
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class TrainingCLI(LightningCLI):
    """LightningCLI with argument links from the data module to the model."""

    def __init__(self, *args, links: Sequence[Link] = (), **kwargs):
        self.links = tuple(links)
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for link in self.links:
            parser.link_arguments(link.source, link.target, compute_fn=link.compute, apply_on="instantiate")


def _finish_wandb(exit_code: int) -> None:
    """Close the W&B run, if one was started, so that its files are complete when this returns (and a
    second command in the same process starts a run of its own)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


def run_training_cli(
    model_class: type[pl.LightningModule],
    datamodule_class: type[pl.LightningDataModule],
    argv: Sequence[str],
    links: Sequence[Link] = (),
    prog: str | None = None,
    description: str | None = None,
) -> int:
    """Parse `argv` (a subcommand: fit, validate or test, then options) and run it. Returns the exit code."""
    # The data modules hold their data in memory, where worker processes gain little, so Lightning's
    # advice about workers is noise. `argv` is sys.argv minus the command names, on purpose.
    quiet = ("does not have many workers", "IterableDataset. has .__len__. defined", "args parameter is intended")
    for message in quiet:
        warnings.filterwarnings("ignore", f".*{message}")
    try:
        TrainingCLI(
            model_class,
            datamodule_class,
            args=list(argv),
            links=links,
            save_config_callback=LogConfigCallback,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [TokenThroughput(), GradNorm(), PeakMemory()]},
            parser_kwargs={"prog": prog, "description": description},
        )
    except SystemExit as stop:  # argument errors and --help
        _finish_wandb(1 if stop.code else 0)
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        _finish_wandb(1)
        raise
    _finish_wandb(0)
    return 0
