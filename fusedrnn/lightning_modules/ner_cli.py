"""`fusedrnn ner fit|validate|test --config configs/ner.yaml`: the BiLSTM-CRF named-entity tagger."""

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    from fusedrnn.lightning_modules.conll_data import ConllDataModule
    from fusedrnn.lightning_modules.ner import NERTagger
    from fusedrnn.lightning_modules.training_cli import Link, run_training_cli

    argv = list(sys.argv[1:] if argv is None else argv)
    links = [Link("data.vocabularies", f"model.{name}", compute=lambda v, n=name: v[n]) for name in
             ("words", "chars", "tags", "scheme")]
    return run_training_cli(
        NERTagger, ConllDataModule, argv, links=links, prog="fusedrnn ner",
        description="BiLSTM-CRF named-entity tagger on fusedrnn's LSTM/GRU (CoNLL files).",
    )


if __name__ == "__main__":
    sys.exit(main())
