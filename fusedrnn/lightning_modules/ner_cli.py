"""Old path, kept for the configs, checkpoints and code that use it: the code is in `ner/cli.py`."""

import sys

from fusedrnn.lightning_modules.ner.cli import USAGE, main, train  # noqa: F401

if __name__ == "__main__":  # `python -m` on the old path
    sys.exit(main())
