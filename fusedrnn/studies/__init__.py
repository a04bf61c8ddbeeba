"""Runnable studies: `fusedrnn study NAME [options]` (or `python -m fusedrnn.studies.NAME`)."""

import importlib
import sys

from fusedrnn.cli_errors import report

STUDIES = {
    "gradient-flow": ("fusedrnn.studies.gradient_flow",
                      "vanishing and exploding gradients: RNN, LSTM and GRU on the adding problem"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: fusedrnn study NAME [options]\n\nstudies:\n"
              + "\n".join(f"  {name:<14} {about}" for name, (_, about) in STUDIES.items()))
        return 0 if argv else 2
    if argv[0] not in STUDIES:
        return report("fusedrnn study", f"unknown study {argv[0]!r} (choose from {', '.join(STUDIES)})")
    return importlib.import_module(STUDIES[argv[0]][0]).main(argv[1:]) or 0
