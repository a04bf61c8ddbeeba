"""`fusedrnn charlm fit|validate|test|sample`: train and evaluate the character language model, and sample
text from a checkpoint."""

import argparse
import sys
from collections.abc import Sequence

from fusedrnn.lightning_modules.common.model_command import checkpoint_parser, load_for_command, run_model_command

PROG = "fusedrnn charlm"

USAGE = """usage: fusedrnn charlm {fit,validate,test,sample} [options]

  fit        train:         fusedrnn charlm fit --config configs/charlm.yaml [--data.path FILE] [--trainer.* ...]
  validate   evaluate:      fusedrnn charlm validate --config configs/charlm.yaml --ckpt_path CKPT
  test       evaluate on the held-out part (tiny-shakespeare's convention: the validation part)
  sample     generate text: fusedrnn charlm sample --ckpt_path CKPT --prime "ROMEO:" --length 500

`fusedrnn charlm SUBCOMMAND --help` lists a subcommand's options."""


def sample_parser() -> argparse.ArgumentParser:
    parser = checkpoint_parser(PROG + " sample", "Sample text from a CharLM checkpoint.", PROG + " fit")
    parser.add_argument("--prime", default="\n", help="text to start from (default: a newline)")
    parser.add_argument("--length", type=int, default=500, help="characters to generate (default: 500)")
    parser.add_argument("--temperature", type=float, default=1.0, help="divides the logits (default: 1.0)")
    parser.add_argument("--top_k", type=int, default=None, help="draw only among the k likeliest characters")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for repeatable samples")
    return parser


def sample(argv: Sequence[str]) -> int:
    from fusedrnn.lightning_modules.charlm.model import CharLM

    args = sample_parser().parse_args(argv)
    model = load_for_command(CharLM, args, PROG + " sample")
    if model is None:
        return 2
    try:
        text = model.generate(args.prime, args.length, args.temperature, args.top_k, args.seed)
    except ValueError as err:
        print(f"{PROG} sample: error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


def train(argv: list[str]) -> int:
    from fusedrnn.lightning_modules.charlm.data import TextDataModule
    from fusedrnn.lightning_modules.charlm.model import CharLM
    from fusedrnn.lightning_modules.common.training_cli import Link, run_training_cli

    return run_training_cli(
        CharLM,
        TextDataModule,
        argv,
        links=[Link("data.vocab", "model.vocab", compute=lambda vocab: vocab.chars)],
        prog=PROG,
        description="Character language model on fusedrnn's LSTM/GRU.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_model_command(argv, USAGE, train, sample=sample)



if __name__ == "__main__":
    sys.exit(main())
