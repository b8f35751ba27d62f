"""Follow: keep reading what is new, one committed ``--incremental`` batch at a time (``--follow``).

Owns the loop: a first batch, then a look at the input directory every
``--interval`` (a listing: names, inodes, sizes and times; no file is
opened while nothing changes, so an idle follower costs a listing a
second), and a batch whenever it changed, or when a batch left a last line
unfinished and ``--settle`` has passed since (that line may now count). Each
batch is one incremental run (``_run.run``): it reads what the output has
not read, under the ``--settle`` rule, and commits it. A SIGINT or SIGTERM
between batches ends the loop at once; during one, the batch finishes and
commits first; either way the exit is 0. A second signal during a batch
kills it outright (what it appended is cut back by the next run). A batch
that fails (a file rotated while it was read) commits nothing and is tried
again at the next look, FAILURES times in a row at most.

Each batch prints one line (unless ``--quiet``): what it read, the rate, the
lag (bytes of the input not read yet) and when it committed; on a terminal
(without ``--no-progress``) that line is redrawn instead, its lag at every look
(``observe.dashboard``).

Talks to: the command line (``_cli``), the run, the input directory (a
listing), the dashboard.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Final

from mpevents._config import Config
from mpevents._run import run
from mpevents._summary import Summary, ThisRun
from mpevents.core.compression import compression_of
from mpevents.core.errors import EXIT_OK, RunError, UsageError
from mpevents.core.inputs import InputFile
from mpevents.observe.dashboard import FollowDashboard, FollowView, follow_line

FAILURES: Final = 10
"""Batches in a row that may fail (an input file replaced while it was read,
as a rotation does) before the follower gives up (exit 1)."""
log = logging.getLogger("mpevents")

NAP_S: Final = 0.25
"""The longest sleep between looks at a signal: a follower ends within this
of a signal between batches, at four wake-ups a second."""

Listing = dict[str, tuple[int, int, int]]
"""The input files by name: inode, size, mtime_ns."""


def listing(config: Config) -> Listing:
    """What the input directory holds now, of the files the patterns match."""
    found: Listing = {}
    try:
        entries = list(os.scandir(config.input_dir))
    except OSError:
        return found
    for entry in entries:
        if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in config.patterns):
            try:
                stat = entry.stat()
            except OSError:  # gone meanwhile
                continue
            found[entry.name] = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    return found


def lag(now: Listing, summary: Summary | None) -> int:
    """The bytes of the input not read yet: of each plain file, what lies past
    what its stream consumed; a compressed file not read yet, whole."""
    consumed = {name: entry.bytes for name, entry in summary.files.items()} if summary is not None else {}
    total = 0
    for name, (_, size, _) in now.items():
        if name in consumed:
            total += max(0, size - consumed[name]) if compression_of(name) is None else 0
        else:
            total += size
    return total


def follow(config: Config, files: Sequence[InputFile] | None = None) -> int:
    """The --follow loop; the exit code (0 once a signal ends it)."""
    stop: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    dashboard = FollowDashboard() if config.progress == "auto" and sys.stdout.isatty() else None
    try:
        batches = failures = 0
        shown: FollowView | None = None
        last: Summary | None = None
        pending, settle_at = True, None
        seen: Listing = {}
        while not stop:
            if pending:
                seen = listing(config)  # before the batch: what changes after it makes the next one
                started = time.monotonic()
                try:
                    summary = run(config, None, files, finish=stop)
                except (RunError, UsageError) as exc:
                    # An input rotated under a batch, or while it was listed: nothing was
                    # committed, the next batch reads it. Bad usage shows in the first.
                    failures += 1
                    if failures > FAILURES or (isinstance(exc, UsageError) and not batches):
                        raise
                    log.warning("batch failed (%s); trying again", exc)
                    pending, seen = False, {}
                    continue
                failures = 0
                files = None  # listed again for every batch after the first
                if summary is not None:
                    batches += 1
                    seconds = time.monotonic() - started
                    this = summary.this_run
                    lines = this.totals.lines if isinstance(this, ThisRun) else summary.totals.lines
                    shown = FollowView(
                        batches, lines, lines / seconds if seconds > 0 else 0.0, lag(listing(config), summary),
                        time.time(), summary.totals.lines,
                    )  # fmt: skip
                    last = summary
                    if dashboard is not None:
                        dashboard.show(shown)
                    elif config.progress != "quiet":
                        sys.stdout.write(follow_line(shown) + "\n")
                        sys.stdout.flush()
                    settle_at = time.monotonic() + config.settle if summary.unread_bytes else None
                elif settle_at is not None and time.monotonic() >= settle_at:
                    settle_at = None
                pending = False
                continue
            deadline = time.monotonic() + config.interval
            while not stop and (left := deadline - time.monotonic()) > 0:
                time.sleep(min(NAP_S, left))
            now = listing(config)
            pending = now != seen or (settle_at is not None and time.monotonic() >= settle_at)
            if dashboard is not None and shown is not None:
                shown = dataclasses.replace(shown, lag_bytes=lag(now, last))
                dashboard.show(shown)
        return EXIT_OK
    finally:
        if dashboard is not None:
            dashboard.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
