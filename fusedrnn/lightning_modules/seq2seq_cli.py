"""Old path, kept for the configs, checkpoints and code that use it: the code is in `seq2seq/cli.py`."""

import sys

from fusedrnn.lightning_modules.seq2seq.cli import PROG, USAGE, main, train, translate, translate_parser  # noqa: F401

if __name__ == "__main__":  # `python -m` on the old path
    sys.exit(main())
