"""The `fusedrnn` console command: `fusedrnn bench ...`, and the training commands of the Lightning models."""

import sys

COMMANDS = {
    "bench": ("fusedrnn.bench", "speed, memory and gradient-error benchmarks against cuDNN and plain PyTorch"),
    "charlm": ("fusedrnn.lightning_modules.charlm.cli", "character language model: fit, validate, test, sample"),
    "ner": ("fusedrnn.lightning_modules.ner.cli", "BiLSTM-CRF named-entity tagger: fit, validate, test"),
    "seq2seq": ("fusedrnn.lightning_modules.seq2seq.cli", "attention encoder-decoder: fit, validate, test, translate"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = [f"  {name:<10} {about}" for name, (_, about) in COMMANDS.items()]
        print("usage: fusedrnn COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines))
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    import importlib

    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
