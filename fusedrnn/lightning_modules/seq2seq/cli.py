"""`fusedrnn seq2seq fit|validate|test|translate`: train and evaluate the attention encoder-decoder, and
translate lines from stdin with a checkpoint."""

import argparse
import sys
from collections.abc import Sequence

from fusedrnn.lightning_modules.common.model_command import (
    checkpoint_parser,
    load_with_stdin,
    run_model_command,
    write_stdout,
)

PROG = "fusedrnn seq2seq"

USAGE = """usage: fusedrnn seq2seq {fit,validate,test,translate} [options]

  fit        train:      fusedrnn seq2seq fit --config configs/seq2seq.yaml [--data.train_src FILE ...] [--trainer.*]
  validate   evaluate on the validation pair: ... validate --config configs/seq2seq.yaml --ckpt_path CKPT
  test       BLEU on the test pair with beam search: ... test --config configs/seq2seq.yaml --ckpt_path CKPT
  translate  translate stdin, one sentence per line: fusedrnn seq2seq translate --ckpt_path CKPT [--beam 5] < in.txt

validate and test rebuild the vocabularies from the training files, so pass the same data options as for
fit. `fusedrnn seq2seq SUBCOMMAND --help` lists a subcommand's options."""


def translate_parser() -> argparse.ArgumentParser:
    parser = checkpoint_parser(
        PROG + " translate",
        "Translate stdin, one sentence per line, with a Seq2Seq checkpoint; prints one line per line.",
        PROG + " fit",
    )
    parser.add_argument("--beam", type=int, default=5, help="beam size; 1 decodes greedily (default: 5)")
    parser.add_argument("--batch_size", type=int, default=64, help="sentences decoded together (default: 64)")
    return parser


def translate(argv: Sequence[str]) -> int:
    args = translate_parser().parse_args(argv)
    if args.beam < 1 or args.batch_size < 1:
        print("fusedrnn seq2seq translate: error: --beam and --batch_size must be at least 1", file=sys.stderr)
        return 2

    from fusedrnn.lightning_modules.seq2seq.model import Seq2Seq

    loaded = load_with_stdin(Seq2Seq, args, PROG + " translate")
    if loaded is None:
        return 2
    model, text = loaded
    # Newlines only, as the corpus reader splits: one output line per input line, blank lines included.
    lines = [line.rstrip("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    translations = model.translate(lines, beam_size=args.beam, batch_size=args.batch_size)
    write_stdout("".join(t + "\n" for t in translations))
    return 0


def train(argv: list[str]) -> int:
    from fusedrnn.lightning_modules.common.training_cli import Link, run_training_cli
    from fusedrnn.lightning_modules.seq2seq.data import ParallelDataModule
    from fusedrnn.lightning_modules.seq2seq.model import Seq2Seq

    return run_training_cli(
        Seq2Seq,
        ParallelDataModule,
        argv,
        links=[
            Link("data.src_vocab", "model.src_vocab", compute=lambda vocab: vocab.to_text()),
            Link("data.tgt_vocab", "model.tgt_vocab", compute=lambda vocab: vocab.to_text()),
        ],
        prog="fusedrnn seq2seq",
        description="Attention encoder-decoder translation model on fusedrnn's GRU/LSTM.",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_model_command(argv, USAGE, train, translate=translate)


if __name__ == "__main__":
    sys.exit(main())
