"""`fusedrnn ner fit|validate|test --config configs/ner.yaml`: the BiLSTM-CRF named-entity tagger, and
`fusedrnn ner tag` to tag stdin with a checkpoint (ner/tagging.py)."""

import sys
from collections.abc import Sequence

from fusedrnn.cli_errors import UserError, report_error
from fusedrnn.lightning_modules.common.model_command import (
    checkpoint_parser,
    load_with_stdin,
    run_model_command,
    write_stdout,
)

PROG = "fusedrnn ner"

USAGE = """usage: fusedrnn ner {fit,validate,test,tag} [options]

  fit        train: fusedrnn ner fit --config configs/ner.yaml --data.train_path F --data.val_path F [--data.test_path]
  validate   evaluate on the validation file: ... validate --config configs/ner.yaml [data options] --ckpt_path C
  test       span F1 and a token confusion table on the test file: ... test [same options] --ckpt_path C
  tag        tag stdin: fusedrnn ner tag --ckpt_path C [--format text|conll] < in.txt (one sentence per line,
             or CoNLL columns, which a model trained on feature columns needs); prints CoNLL columns

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


def tag(argv: Sequence[str]) -> int:
    parser = checkpoint_parser(PROG + " tag", "Tag stdin with an NERTagger checkpoint; prints one token per line "
                               "with its predicted tag, a blank line after each sentence.", PROG + " fit")
    parser.add_argument("--format", choices=("text", "conll"), default="text",
                        help="text: a sentence per line, a blank line between documents; conll: the training "
                             "files' columns (default: text)")
    parser.add_argument("--batch_size", type=int, default=32, help="sentences tagged together (default: 32)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error("--batch_size must be at least 1")

    from fusedrnn.lightning_modules.ner import tagging
    from fusedrnn.lightning_modules.ner.model import NERTagger

    loaded = load_with_stdin(NERTagger, args, PROG + " tag")
    if loaded is None:
        return 2
    model, text = loaded
    conll = args.format == "conll"
    try:
        untagged = tagging.read_untagged(text, conll)
        data = tagging.data_for(model, model.saved_data_options)
        tagging.check_columns(data, untagged, conll)
    except UserError as err:
        return report_error(PROG + " tag", err)
    predicted = tagging.predict(model, data, untagged.sentences, args.batch_size)
    write_stdout(tagging.conll_lines(untagged, predicted))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_model_command(argv, USAGE, train, tag=tag)


if __name__ == "__main__":
    sys.exit(main())
