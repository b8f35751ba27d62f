"""Spool: the bytes of compressed spans, handed from readers to workers through files in RAM.

Talks to: readers (:meth:`Spool.put`, for each span of a compressed file),
workers (:meth:`Spool.take`), and the local engine, which makes the spool
for a run and removes it.

A span of a plain file is only where its lines lie: the worker reads them
itself. A span of a compressed file has no such place, so its reader hands
its bytes over. Through the work queue they did not fit: a chunk of 1 MiB
and its header are more than a pipe holds (1 MiB, Linux's default cap), so a
worker taking one waited mid-message for its reader to be scheduled again,
and on a busy machine the workers spent twice as long waiting for work as
with plain files (13% of their time, trace of 2M lines as .zst). So the
reader writes the bytes to a file in the spool and puts only the span on the
queue; the worker reads the file whole, whoever else is running, and
removes it.

* The spool is a directory in /dev/shm (tmpfs: memory, never a disk) where
  there is one with room, else in the run's staging directory. One left by a run that
  was killed outright is removed by the next run, which finds its owner gone.
* A file appears whole (written under a name of its own, then renamed), so a
  restarted reader that frames the same spans again replaces it safely.
* A worker that finds no file (its span's first copy took it, or a dead
  worker's span handed on) decompresses the span again, as the
  replacement of a dead worker always did (``_compression.read_span``).
* At most ``limit`` files wait at once: a reader that finds the spool full
  waits for the workers to take some, so memory stays bounded, whatever the
  depth of the work queue.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Final, NamedTuple

from . import _output
from ._framing import Span

RAM_DIRECTORY: Final = "/dev/shm"
PREFIX: Final = "mpevents-spool-"
CHUNKS_PER_WORKER: Final = 2
"""Spooled spans waiting per worker: its next one ready while it checks one."""
FULL_POLL_S: Final = 0.002
"""How often a reader looks again at a full spool: a worker takes a file every
few milliseconds."""


class Spool(NamedTuple):
    """A run's spool directory, and how many files may wait in it."""

    directory: str
    limit: int

    @classmethod
    def make(cls, staging: Path, workers: int, readers: int, chunk_bytes: int) -> Spool:
        """A fresh spool for one attempt of a run.

        In /dev/shm when it has room for twice what the spool may hold (a
        container's is often 64 MB), else in the staging directory.
        """
        # Each reader may have passed the check for room before any has written.
        limit = CHUNKS_PER_WORKER * workers + readers
        parent = RAM_DIRECTORY if _room(RAM_DIRECTORY) >= 2 * limit * chunk_bytes else str(staging)
        try:
            directory = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent)
        except OSError:  # a /dev/shm we may not write after all
            directory = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=staging)
        return cls(directory, limit)

    def _path(self, span: Span) -> str:
        return os.path.join(self.directory, f"{span.file}-{span.seq}")

    def put(self, span: Span, data: bytes) -> None:
        """Leave ``data``, the bytes of ``span``, for a worker; wait while the spool is full."""
        while len(os.listdir(self.directory)) >= self.limit:
            time.sleep(FULL_POLL_S)
        path = self._path(span)
        temp = f"{path}.{os.getpid()}"
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            with memoryview(data) as view:
                done = 0
                while done < len(view):
                    done += os.write(fd, view[done:])
        finally:
            os.close(fd)
        os.replace(temp, path)

    def take(self, span: Span) -> bytes | None:
        """The bytes of ``span``, removed from the spool; None if they are not there."""
        path = self._path(span)
        try:
            with open(path, "rb", buffering=0) as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return data

    def remove(self) -> None:
        _output.remove(Path(self.directory))


def _room(directory: str) -> int:
    """Bytes free to us in ``directory``; 0 if we cannot write there."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return 0
    try:
        stat = os.statvfs(directory)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


def remove_stale() -> None:
    """Remove the spools in /dev/shm of runs that are gone (the pid in the
    name): a run killed outright leaves its own there, which nothing else
    would free until a reboot. (One in a staging directory goes with it.)"""
    with contextlib.suppress(OSError), os.scandir(RAM_DIRECTORY) as entries:
        for entry in entries:
            pid = entry.name[len(PREFIX) :].split("-", 1)[0]
            if entry.name.startswith(PREFIX) and pid.isdigit() and not _output.alive(int(pid)):
                _output.remove(Path(entry.path))
