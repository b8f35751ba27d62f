"""Trace: a timeline of the run, every process on one screen (``--trace``).

Owns the events and their file: each process keeps its own events in a list
(a span is one tuple, a few hundred nanoseconds to record) and appends them,
as JSON lines, to ``trace-<pid>.jsonl`` in ``--profile-dir`` every
FLUSH_EVENTS events and when it ends. At the end of the run main merges the
parts into ``trace.json``, Chrome's trace event format, which Perfetto
(ui.perfetto.dev), chrome://tracing and VizTracer's ``vizviewer`` open: one
track per process, named by its title (``worker 2``), one span per chunk and
per wait, instants for deaths and restarts. A process killed mid-run loses
only the events it had not flushed; a line cut short is skipped.

Timestamps come from CLOCK_MONOTONIC, which every process of one machine
shares, so the tracks line up. A Dask task's times come from its own machine's
wall clock; main places them on its own clock.

Talks to: every process of the run, through :func:`tracer` (a no-op unless
``--trace``); the run, which merges the parts (:func:`merge`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Final

import msgspec

FLUSH_EVENTS: Final = 10_000
"""Events kept before they are appended to the process's part: about a
megabyte, written in one go."""
PART_PREFIX: Final = "trace-"
TRACE_NAME: Final = "trace.json"
_ENCODER: Final = msgspec.json.Encoder()


def now_ns() -> int:
    return time.monotonic_ns()


class Tracer:
    """One process's events; see the module docstring."""

    def __init__(self, directory: Path, title: str, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self._path = directory / f"{PART_PREFIX}{self.pid}.jsonl"
        self._events: list[dict[str, Any]] = [
            {"ph": "M", "name": "process_name", "pid": self.pid, "tid": 0, "args": {"name": title}}
        ]

    def span(self, name: str, start_ns: int, end_ns: int, tid: int = 0, pid: int | None = None, **args: Any) -> None:
        """Something that took from ``start_ns`` to ``end_ns`` (now_ns() values),
        on this process's track or on track ``pid``."""
        event = {"ph": "X", "name": name, "pid": self.pid if pid is None else pid, "tid": tid, "ts": start_ns / 1000}
        event["dur"] = max(0, end_ns - start_ns) / 1000
        if args:
            event["args"] = args
        self._add(event)

    def instant(self, name: str, **args: Any) -> None:
        event = {"ph": "i", "s": "p", "name": name, "pid": self.pid, "tid": 0, "ts": now_ns() / 1000}
        if args:
            event["args"] = args
        self._add(event)

    def track(self, pid: int, title: str) -> None:
        """Name another track (a Dask worker's, whose spans main records)."""
        self._add({"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": title}})

    def _add(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        if len(self._events) >= FLUSH_EVENTS:
            self.flush()

    def flush(self) -> None:
        if not self._events:
            return
        with open(self._path, "ab") as part:
            part.write(b"".join(_ENCODER.encode(event) + b"\n" for event in self._events))
        self._events = []


class _Off:
    """The tracer of a run without --trace: records nothing, costs a call."""

    def span(self, name: str, start_ns: int, end_ns: int, tid: int = 0, pid: int | None = None, **args: Any) -> None:
        pass

    def instant(self, name: str, **args: Any) -> None:
        pass

    def track(self, pid: int, title: str) -> None:
        pass

    def flush(self) -> None:
        pass


_tracer: Tracer | _Off = _Off()


def tracer() -> Tracer | _Off:
    """This process's tracer."""
    return _tracer


def start(directory: Path, title: str) -> None:
    """Trace this process into ``directory`` from now on."""
    global _tracer  # noqa: PLW0603  # one tracer per process, set once at its start
    directory.mkdir(parents=True, exist_ok=True)
    _tracer = Tracer(directory, title)


def stop() -> None:
    global _tracer  # noqa: PLW0603
    _tracer.flush()
    _tracer = _Off()


def clear(directory: Path) -> None:
    """Remove an earlier run's parts and trace."""
    if directory.is_dir():
        for path in directory.glob(f"{PART_PREFIX}*"):
            path.unlink()


def merge(directory: Path) -> Path:
    """Merge every process's part into ``trace.json``; the parts go. A line cut
    short (a process killed while appending) is skipped."""
    events: list[Any] = []
    for part in sorted(directory.glob(f"{PART_PREFIX}*.jsonl")):
        for line in part.read_bytes().splitlines():  # written as bytes, read as bytes
            try:
                events.append(msgspec.json.decode(line))
            except msgspec.DecodeError:
                continue
        part.unlink()
    target = directory / TRACE_NAME
    target.write_bytes(_ENCODER.encode({"traceEvents": events, "displayTimeUnit": "ms"}) + b"\n")
    return target
