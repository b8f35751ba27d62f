"""Spool: bytes handed between processes through files in RAM, not through pipes.

Talks to: readers (:meth:`Spool.put`, the bytes of each span of a compressed
file), workers (:meth:`Spool.take` those), and the local engine, which makes
the spool for a run and removes it. (Results do not pass through it: each
worker appends its records to a part log of its own, ``output.parts``.)

A pipe holds 1 MiB (Linux's default cap), so a message of a few MiB goes
through it in turns of writer and reader, each waiting for the other to be
scheduled, and is copied four times (pickled, written, read, unpickled). A
file in RAM is written once by one side and read, or copied in the kernel,
by the other, whoever else is running:

* inputs: a span of a compressed file has no bytes on disk a worker could
  read, so its reader writes them to the spool and puts only the span on the
  work queue; the worker reads the file and removes it. Through the queue, a
  worker waited mid-message for its reader: twice as long waiting for work as
  with plain files (trace of 2M lines as .zst);
* The spool is a directory in /dev/shm (tmpfs: memory, never a disk) where
  there is one with room, else in the run's staging directory. Main holds it
  (``flock``) while it lives; one left by a run that was killed outright is
  removed by the next run, which finds it held by no one.
* An input file appears whole (written under a name of its own, then
  renamed), so a restarted reader that frames the same spans again replaces
  it safely. A worker that finds no file (its span's first copy took it, or
  a dead worker's span handed on) decompresses the span again, as the
  replacement of a dead worker always did
  (``core.compression.read_compressed_span``).
* At most ``limit`` inputs wait at once: a reader that finds the spool full
  waits for the workers to take some.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Final, NamedTuple

from mpevents.core.framing import Span
from mpevents.core.system import write_all
from mpevents.output import directory as _output
from mpevents.output.names import SPOOL_NAMES, SPOOL_PREFIX

RAM_DIRECTORY: Final = "/dev/shm"
CHUNKS_PER_WORKER: Final = 2
"""Spooled spans waiting per worker: its next one ready while it checks one."""
INPUTS: Final = "inputs"
FULL_POLL_S: Final = 0.002
"""How often a reader looks again at a full spool: a worker takes a file every
few milliseconds."""


class Spool(NamedTuple):
    """A run's spool directory, and how many input files may wait in it."""

    directory: str
    limit: int
    held: int = -1
    """Main's descriptor holding a spool in /dev/shm (``_output.hold``), so that
    no other run takes it for a dead run's (closed by :meth:`remove`, which only
    main calls); -1 for one in the staging directory."""

    @classmethod
    def make(cls, staging: Path, workers: int, readers: int, chunk_bytes: int) -> Spool:
        """A fresh spool for one attempt of a run, held by this process until :meth:`remove`.

        In /dev/shm when it has room for twice what the spool may hold (a
        container's is often 64 MB), else in the staging directory.
        """
        # Each reader may have passed the check for room before any has written.
        limit = CHUNKS_PER_WORKER * workers + readers
        most = limit * chunk_bytes
        made = None
        if _room(RAM_DIRECTORY) >= 2 * most:
            with contextlib.suppress(OSError):  # a /dev/shm we may not write after all
                made = _make_held(RAM_DIRECTORY)
        # In the staging directory it needs no hold: that directory is the run's own.
        directory, held = made or (tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=staging), -1)
        os.mkdir(os.path.join(directory, INPUTS))
        return cls(directory, limit, held)

    def _path(self, span: Span) -> str:
        return os.path.join(self.directory, INPUTS, f"{span.file}-{span.seq}")

    def put(self, span: Span, data: bytes) -> None:
        """Leave ``data``, the bytes of ``span``, for a worker; wait while the spool is full."""
        inputs = os.path.join(self.directory, INPUTS)
        while len(os.listdir(inputs)) >= self.limit:
            time.sleep(FULL_POLL_S)
        path = self._path(span)
        partial = f"{path}.{os.getpid()}"
        _write_file(partial, [data], os.O_TRUNC)
        os.replace(partial, path)

    def take(self, span: Span) -> bytes | None:
        """The bytes of ``span``, removed from the spool; None if they are not there."""
        path = self._path(span)
        try:
            with open(path, "rb", buffering=0) as handle:
                data = handle.read()
        except FileNotFoundError:
            return None
        discard(path)
        return data

    def remove(self) -> None:
        _output.remove(Path(self.directory))
        if self.held >= 0:
            os.close(self.held)


def discard(path: str) -> None:
    """Remove a spool file, if it is still there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _write_file(path: str, buffers: list[bytes], mode: int) -> None:
    """Create ``path`` (``mode``: O_TRUNC or O_EXCL) holding ``buffers`` one after another."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode | os.O_CLOEXEC, 0o600)
    try:
        write_all(fd, buffers)
    finally:
        os.close(fd)


def _room(directory: str) -> int:
    """Bytes free to us in ``directory``; 0 if we cannot write there."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return 0
    try:
        stat = os.statvfs(directory)
    except OSError:
        return 0
    return stat.f_bavail * stat.f_frsize


def _make_held(parent: str) -> tuple[str, int]:
    """A new spool directory in ``parent``, already held when another run looks
    there for abandoned ones (``_output.remove_abandoned``)."""
    with _output.locked(parent):
        directory = tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=parent)
        held = _output.hold(directory)
    assert held is not None  # new, and no other run looks while the parent is locked
    return directory, held


def remove_stale() -> None:
    """Remove the spools in /dev/shm of runs that are gone (no one holds
    them): a run killed outright leaves its own there, which nothing else
    would free until a reboot. (One in a staging directory goes with it.)"""
    with contextlib.suppress(OSError), _output.locked(RAM_DIRECTORY):
        _output.remove_abandoned(RAM_DIRECTORY, SPOOL_NAMES)
