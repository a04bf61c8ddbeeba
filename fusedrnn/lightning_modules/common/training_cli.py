"""LightningCLI glue shared by the training commands: `fusedrnn MODEL fit|validate|test --config ...`.

Each command names its LightningModule and LightningDataModule classes and the values the model takes
from the data (vocabulary, tag set, ...); everything else (config files, logging of the config, the
throughput and memory callbacks, finishing the W&B run) is the same for all of them.

A user's mistake (an unknown option, a missing, empty or malformed data file, a bad setting) ends the
command with one line, `fusedrnn MODEL SUBCOMMAND: error: ...`, and exit status 2; FUSEDRNN_DEBUG=1 shows
the traceback instead (fusedrnn.cli_errors).
"""

import sys
import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from fusedrnn.cli_errors import FILE_ERRORS, USAGE_ERROR, UserError, report, report_error
from fusedrnn.lightning_modules.common.callbacks import GradNorm, PeakMemory, TokenThroughput
from fusedrnn.lightning_modules.common.gradient_flow import GradientFlowPlot  # noqa: F401  (--trainer.callbacks+=GradientFlowPlot)
from fusedrnn.lightning_modules.common.model_command import TRAINING_SUBCOMMANDS


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


class OneLineParser(LightningArgumentParser):
    """LightningCLI's parser, except that an error is one line, `PROG: error: ...`, without the usage."""

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:  # a parser used inside another one: the outer one reports
            return super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        report(parser.prog.replace(" [options]", ""), message)
        self.exit(USAGE_ERROR)


def _as_user_errors(method: Callable) -> Callable:
    """`method` with its ValueErrors (bad data, bad settings) raised as UserError."""

    def wrapped(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except UserError:
            raise
        except ValueError as err:
            raise UserError(str(err)) from err

    return wrapped


class TrainingCLI(LightningCLI):
    """LightningCLI with argument links from the data module to the model, one-line argument errors, and
    fit, validate and test only (no model has a predict step)."""

    def __init__(self, *args, links: Sequence[Link] = (), **kwargs):
        self.links = tuple(links)
        super().__init__(*args, parser_class=OneLineParser, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name in TRAINING_SUBCOMMANDS}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        for link in self.links:
            parser.link_arguments(link.source, link.target, compute_fn=link.compute, apply_on="instantiate")

    def instantiate_classes(self) -> None:
        """As LightningCLI's, with what the settings and data files get wrong as UserError: a ValueError
        while the classes are built (the model and data modules check their arguments, the data modules
        read the training data for the vocabularies), a missing optional package, and a ValueError from the
        data module's setup (which reads the other files)."""
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except (ValueError, ModuleNotFoundError) as err:
            raise UserError(str(err)) from err
        if self.datamodule is not None:
            self.datamodule.setup = _as_user_errors(self.datamodule.setup)


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
    except (UserError, *FILE_ERRORS) as err:
        _finish_wandb(1)
        subcommand = next((a for a in argv if a in TRAINING_SUBCOMMANDS), "")
        return report_error(f"{prog or 'fusedrnn'} {subcommand}".strip(), err)
    except BaseException:
        _finish_wandb(1)
        raise
    _finish_wandb(0)
    return 0
