"""Old path, kept for the configs, checkpoints and code that use it: the code is in `charlm/cli.py`."""

import sys

from fusedrnn.lightning_modules.charlm.cli import PROG, USAGE, main, sample, sample_parser, train  # noqa: F401

if __name__ == "__main__":  # `python -m` on the old path
    sys.exit(main())
