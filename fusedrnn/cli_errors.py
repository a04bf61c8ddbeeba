"""How the `fusedrnn` commands report a user's mistake: one line, `fusedrnn CMD: error: ...`, exit status 2.

A missing, empty or malformed file, an unknown option or subcommand: the user needs the message, not the
stack. Set FUSEDRNN_DEBUG=1 to get the traceback instead (the exception propagates).
"""

import argparse
import os
import sys
from typing import NoReturn

DEBUG_ENV = "FUSEDRNN_DEBUG"
USAGE_ERROR = 2

# Errors that mean "the input is wrong", not "the program is wrong": the missing or unreadable file.
FILE_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError)


class UserError(ValueError):
    """A problem with what the user gave (a file's content, an option's value): reported as one line."""


def debug() -> bool:
    """Whether FUSEDRNN_DEBUG asks for tracebacks (any value but "", "0", "false", "no")."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


def one_line(message: object) -> str:
    """The message with its line breaks and runs of spaces folded into single spaces."""
    return " ".join(str(message).split())


def report(prog: str, message: object) -> int:
    """Print `PROG: error: MESSAGE` on one stderr line; returns the exit status (2)."""
    print(f"{prog}: error: {one_line(message)}", file=sys.stderr)
    return USAGE_ERROR


def report_error(prog: str, error: BaseException) -> int:
    """`report` for a caught exception, or raise it again when FUSEDRNN_DEBUG is set."""
    if debug():
        raise error
    return report(prog, error)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse, except that an error is one line (`PROG: error: ...`) without the usage."""

    def error(self, message: str) -> NoReturn:
        report(self.prog, message)
        sys.exit(USAGE_ERROR)
