"""What every `fusedrnn MODEL ...` command shares: dispatch between the training subcommands and a
model's own ones (sample, translate), and the options and loading of a checkpoint for the latter."""

import argparse
import sys
from collections.abc import Callable, Sequence

from fusedrnn._backend import BACKENDS
from fusedrnn.cli_errors import OneLineArgumentParser, report

# What LightningCLI runs for every model (its `predict` is not offered: no model has a predict step).
TRAINING_SUBCOMMANDS = ("fit", "validate", "test")


def run_model_command(
    argv: Sequence[str] | None,
    usage: str,
    train: Callable[[list[str]], int],
    prog: str | None = None,
    **own: Callable[[list[str]], int],
) -> int:
    """Usage for no arguments or --help; `own` subcommands by name; fit, validate and test (and options
    before them, such as --config) go to `train` (LightningCLI); any other word is a one-line error."""
    argv = list(sys.argv[1:] if argv is None else argv)
    prog = prog or " ".join(usage.split()[1:3])  # "usage: fusedrnn ner ..." -> "fusedrnn ner"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    if argv[0] in own:
        try:
            return own[argv[0]](argv[1:])
        except SystemExit as stop:  # argparse: --help, or an argument error already reported
            return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    if argv[0].startswith("-") or argv[0] in TRAINING_SUBCOMMANDS:
        return train(argv)
    return report(prog, f"unknown subcommand {argv[0]!r} (choose from {', '.join([*TRAINING_SUBCOMMANDS, *own])})")


def checkpoint_parser(prog: str, description: str, written_by: str) -> argparse.ArgumentParser:
    """A parser with --ckpt_path, --device and --backend, for subcommands that use a trained model."""
    parser = OneLineArgumentParser(prog=prog, description=description)
    parser.add_argument("--ckpt_path", required=True, help=f"a checkpoint written by `{written_by}`")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="fused-layer backend (default: auto, which runs Triton on CUDA and torch on CPU)",
    )
    return parser


def load_for_command(model_class, args: argparse.Namespace, prog: str):
    """The model of args.ckpt_path on args.device, or None after printing why not (a one-line error)."""
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return model_class.from_checkpoint(args.ckpt_path, backend=args.backend, map_location=device)
    except (FileNotFoundError, ValueError) as err:
        report(prog, err)
        return None


def load_with_stdin(model_class, args: argparse.Namespace, prog: str):
    """(the model of args.ckpt_path, stdin as text) for the commands that work through stdin, or None after a
    one-line error (no such checkpoint, or stdin not UTF-8)."""
    model = load_for_command(model_class, args, prog)
    if model is None:
        return None
    try:
        return model, sys.stdin.buffer.read().decode("utf-8")
    except UnicodeDecodeError as err:
        report(prog, f"stdin is not UTF-8 text ({err})")
        return None


def write_stdout(text: str) -> None:
    """`text` to stdout in UTF-8, whatever the locale."""
    sys.stdout.buffer.write(text.encode("utf-8"))
    sys.stdout.flush()
