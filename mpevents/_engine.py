"""Engine: what a run asks of whatever checks and writes the lines.

Talks to: nothing by itself; it is the contract between the run (``_run``)
and the engines: the local one (``local.supervisor``: reader, worker and
collector processes on this machine) and the Dask one (``dask.engine``: tasks on a
cluster). The run owns everything around an engine (checks, the staging
directory, signals, the dashboard, the summary, the commit) and drives it in
one loop::

    engine.start()
    while (report := engine.poll(TICK_S)) is None:
        ...signals, dashboard...
    engine.stop()

A third engine (Ray, say) is one new module that implements :class:`Engine`.
The retry budget (:class:`RetryBudget`) is counted here for both, and so are
restarts (:class:`Restarts`), so that ``--max-retries`` and the summary mean
the same thing whichever engine ran.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Protocol

import msgspec

from mpevents.core.errors import RunError
from mpevents.core.inputs import InputFile
from mpevents.observe.board import Board
from mpevents.output.report import Report


class Restarts(msgspec.Struct):
    """What was started again during a run (summary.json's ``restarts``)."""

    workers: int = 0
    """Worker processes (local) or Dask workers (dask) that died and were replaced."""
    readers: int = 0
    """Reader processes that died and were replaced (local only)."""
    pipeline: int = 0
    """Restarts of the whole data plane after it stopped moving (local only)."""


class RetryBudget:
    """How often one thing (a span, a file's reader, the data plane, a task)
    is retried: ``--max-retries`` times, for every thing; its next failure
    fails the run."""

    def __init__(self, max_retries: int) -> None:
        self.max_retries = max_retries
        self._failures: dict[Hashable, int] = {}

    def charge(self, key: Hashable, message: str | Callable[[], str]) -> int:
        """Count one failure of ``key``; once it has failed more than
        ``--max-retries`` times, raise :class:`RunError` with ``message`` (or
        what it returns, when describing costs something), its ``{times}``
        replaced by the count."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        if failures > self.max_retries:
            text = message if isinstance(message, str) else message()
            raise RunError(text.replace("{times}", str(failures)))
        return failures


class Engine(Protocol):
    """One run's way of turning the input files into the output, in the staging directory."""

    files: Sequence[InputFile]
    total_bytes: int
    board: Board
    """Counters for the dashboard (and the stages of the summary)."""
    restarts: Restarts
    started: float
    """When it started (time.monotonic()), for rates on the dashboard."""

    def start(self) -> None:
        """Start the processes or connect to the cluster."""

    def poll(self, timeout: float) -> Report | None:
        """Wait at most ``timeout`` seconds for something to happen and deal with
        it (a death, a result); the collector's report once the output is written.

        Raises :class:`RunError` when the run cannot go on."""

    def stop(self) -> None:
        """Stop whatever still runs, at once; safe to call twice, and from a
        signal handler."""

    def busy(self) -> tuple[float, float]:
        """Seconds the average worker and the collector spent working."""

    # for the dashboard
    def queue_depths(self) -> list[tuple[str, float]]:
        """How full the engine's queues are, as shares of their size."""

    def files_taken(self) -> int:
        """How many input files have been started on."""

    def note(self) -> str:
        """A line about the engine for the dashboard ("" for none)."""
