"""The exceptions that end a run, each with the exit code it maps to.

Every failure a user can cause or meet is one of these, raised with a message
that fits on one line; ``_cli.py`` prints it and exits with its code.
"""

from __future__ import annotations

from typing import ClassVar

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class MpeventsError(Exception):
    """Base class: a one-line message and an exit code."""

    exit_code: ClassVar[int] = EXIT_FAILURE


class UsageError(MpeventsError):
    """Bad command line or bad input (missing directory, unreadable file...)."""

    exit_code = EXIT_USAGE


class RunError(MpeventsError):
    """Something failed during the run; the previous output is untouched."""

    exit_code = EXIT_FAILURE


class Interrupted(MpeventsError):
    """SIGINT or SIGTERM arrived; the run was stopped and cleaned up."""

    def __init__(self, signum: int) -> None:
        import signal

        name = signal.Signals(signum).name
        super().__init__(f"interrupted by {name}; previous output left as it was")
        self.signum = signum

    @property
    def code(self) -> int:
        return 128 + self.signum
