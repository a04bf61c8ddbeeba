"""`fusedrnn charlm fit|validate|test|sample`: train and evaluate the character language model, and sample
text from a checkpoint."""

import argparse
import sys
from collections.abc import Sequence

USAGE = """usage: fusedrnn charlm {fit,validate,test,sample} [options]

  fit        train:         fusedrnn charlm fit --config configs/charlm.yaml [--data.path FILE] [--trainer.* ...]
  validate   evaluate:      fusedrnn charlm validate --config configs/charlm.yaml --ckpt_path CKPT
  test       evaluate on the held-out part (tiny-shakespeare's convention: the validation part)
  sample     generate text: fusedrnn charlm sample --ckpt_path CKPT --prime "ROMEO:" --length 500

`fusedrnn charlm SUBCOMMAND --help` lists a subcommand's options."""


def sample_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusedrnn charlm sample", description="Sample text from a CharLM checkpoint.")
    parser.add_argument("--ckpt_path", required=True, help="a checkpoint written by `fusedrnn charlm fit`")
    parser.add_argument("--prime", default="\n", help="text to start from (default: a newline)")
    parser.add_argument("--length", type=int, default=500, help="characters to generate (default: 500)")
    parser.add_argument("--temperature", type=float, default=1.0, help="divides the logits (default: 1.0)")
    parser.add_argument("--top_k", type=int, default=None, help="draw only among the k likeliest characters")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for repeatable samples")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument(
        "--backend",
        choices=("auto", "triton", "torch"),
        default="auto",
        help="fused-layer backend (default: auto, which runs Triton on CUDA and torch on CPU)",
    )
    return parser


def sample(argv: Sequence[str]) -> int:
    import torch

    from fusedrnn.lightning_modules.charlm import CharLM

    args = sample_parser().parse_args(argv)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = CharLM.from_checkpoint(args.ckpt_path, backend=args.backend, map_location=device)
        text = model.generate(args.prime, args.length, args.temperature, args.top_k, args.seed)
    except (FileNotFoundError, ValueError) as err:
        print(f"fusedrnn charlm sample: error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] == "sample":
        return sample(argv[1:])

    from fusedrnn.lightning_modules.charlm import CharLM
    from fusedrnn.lightning_modules.text_data import TextDataModule
    from fusedrnn.lightning_modules.training_cli import Link, run_training_cli

    return run_training_cli(
        CharLM,
        TextDataModule,
        argv,
        links=[Link("data.vocab", "model.vocab", compute=lambda vocab: vocab.chars)],
        prog="fusedrnn charlm",
        description="Character language model on fusedrnn's LSTM/GRU.",
    )
