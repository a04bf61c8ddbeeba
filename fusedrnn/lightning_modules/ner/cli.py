"""`fusedrnn ner fit|validate|test --config configs/ner.yaml`: the BiLSTM-CRF named-entity tagger."""

import sys
from collections.abc import Sequence

from fusedrnn.lightning_modules.common.model_command import run_model_command

USAGE = """usage: fusedrnn ner {fit,validate,test} [options]

  fit        train: fusedrnn ner fit --config configs/ner.yaml --data.train_path F --data.val_path F [--data.test_path]
  validate   evaluate on the validation file: ... validate --config configs/ner.yaml [data options] --ckpt_path C
  test       span F1 and a token confusion table on the test file: ... test [same options] --ckpt_path C

The vocabularies come from the training file, so validate and test take the same data options as fit.
`fusedrnn ner SUBCOMMAND --help` lists a subcommand's options."""


def train(argv: list[str]) -> int:
    from fusedrnn.lightning_modules.common.training_cli import Link, run_training_cli
    from fusedrnn.lightning_modules.ner.data import ConllDataModule
    from fusedrnn.lightning_modules.ner.model import NERTagger

    links = [
        Link("data.vocabularies", f"model.{name}", compute=lambda v, n=name: v[n])
        for name in ("words", "chars", "tags", "features", "scheme")
    ]
    return run_training_cli(
        NERTagger, ConllDataModule, argv, links=links, prog="fusedrnn ner",
        description="BiLSTM-CRF named-entity tagger on fusedrnn's LSTM/GRU (CoNLL files).",
    )


def main(argv: Sequence[str] | None = None) -> int:
    return run_model_command(argv, USAGE, train)


if __name__ == "__main__":
    sys.exit(main())
