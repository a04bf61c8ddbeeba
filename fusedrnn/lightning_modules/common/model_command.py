"""What every `fusedrnn MODEL ...` command shares: dispatch between the training subcommands and a
model's own ones (sample, translate), and the options and loading of a checkpoint for the latter."""

import argparse
import sys
from collections.abc import Callable, Sequence

from fusedrnn._backend import BACKENDS


def run_model_command(
    argv: Sequence[str] | None, usage: str, train: Callable[[list[str]], int], **own: Callable[[list[str]], int]
) -> int:
    """Usage for no arguments or --help; `own` subcommands by name; anything else goes to `train`
    (fit, validate, test through LightningCLI)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    if argv[0] in own:
        return own[argv[0]](argv[1:])
    return train(argv)


def checkpoint_parser(prog: str, description: str, written_by: str) -> argparse.ArgumentParser:
    """A parser with --ckpt_path, --device and --backend, for subcommands that use a trained model."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
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
        print(f"{prog}: error: {err}", file=sys.stderr)
        return None
