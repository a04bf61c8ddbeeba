"""The `fusedrnn` console command: `fusedrnn bench ...`, and the training commands of the Lightning models."""

import sys

from fusedrnn.cli_errors import report

COMMANDS = {
    "bench": ("fusedrnn.bench", "speed, memory and gradient-error benchmarks against cuDNN and plain PyTorch"),
    "charlm": ("fusedrnn.lightning_modules.charlm.cli", "character language model: fit, validate, test, sample"),
    "ner": ("fusedrnn.lightning_modules.ner.cli", "BiLSTM-CRF named-entity tagger: fit, validate, test"),
    "seq2seq": ("fusedrnn.lightning_modules.seq2seq.cli", "attention encoder-decoder: fit, validate, test, translate"),
    "study": ("fusedrnn.studies", "runnable studies: gradient-flow (vanishing and exploding gradients)"),
}


def usage() -> str:
    lines = [f"  {name:<10} {about}" for name, (_, about) in COMMANDS.items()]
    return ("usage: fusedrnn [--version] COMMAND [ARGS]\n\ncommands:\n" + "\n".join(lines)
            + "\n\n`fusedrnn COMMAND --help` lists a command's options; FUSEDRNN_DEBUG=1 shows tracebacks of errors.")


def version() -> str:
    from fusedrnn import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        print(f"fusedrnn {version()}")
        return 0
    if argv[0] not in COMMANDS:
        what = "option" if argv[0].startswith("-") else "command"
        return report("fusedrnn", f"unknown {what} {argv[0]!r} (choose from {', '.join(COMMANDS)}; "
                      "or --help, --version)")
    import importlib

    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
