"""Spool: bytes handed between processes through files in RAM, not through pipes.

Talks to: readers (:meth:`Spool.put`, the bytes of each span of a compressed
file), workers (:meth:`Spool.take` those; :meth:`Spool.result_writer`, the
records of each big result), the collector (:func:`open_result`,
:func:`discard`), and the local engine, which makes the spool for a run and
removes it.

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
* results: a worker writes a chunk's records to the spool as it makes them
  (:class:`ResultWriter`) and puts only their sizes on the result queue
  (:class:`SpooledResult`);
  the collector appends each group's part to its group file with
  ``os.sendfile``, an in-kernel copy, and removes the file, where it had
  read, unpickled and buffered every byte: 0.95 times the wall on 2M
  template lines and 0.95 to 1.0 on real-shaped ones (20 paired runs each).

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
  waits for the workers to take some. Results are bounded as before, by the
  result queue and the credits of the results the collector holds back.
* A result file has a name of its own (worker and message), is complete
  before its message is sent, and is removed when the collector has written
  or dropped it; one that cannot be written (the spool full) goes through the
  queue instead.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple

from mpevents.core.framing import Span
from mpevents.core.spec import ChunkParts
from mpevents.core.system import write_all
from mpevents.local.messages import SpooledResult
from mpevents.output import directory as _output
from mpevents.output.names import SPOOL_NAMES, SPOOL_PREFIX

RAM_DIRECTORY: Final = "/dev/shm"
CHUNKS_PER_WORKER: Final = 2
"""Spooled spans waiting per worker: its next one ready while it checks one."""
RESULTS_PER_WORKER: Final = 6
"""Room counted for results per worker (queued, being written, held back by
credits), each about three times its chunk: only to choose where the spool
goes, as results are bounded by the queue and the credits."""
INPUTS: Final = "inputs"
RESULTS: Final = "results"
FULL_POLL_S: Final = 0.002
"""How often a reader looks again at a full spool: a worker takes a file every
few milliseconds."""
_names = itertools.count()  # result files of one worker, numbered


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
        most = (limit + 3 * RESULTS_PER_WORKER * workers) * chunk_bytes
        made = None
        if _room(RAM_DIRECTORY) >= 2 * most:
            with contextlib.suppress(OSError):  # a /dev/shm we may not write after all
                made = _make_held(RAM_DIRECTORY)
        # In the staging directory it needs no hold: that directory is the run's own.
        directory, held = made or (tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-", dir=staging), -1)
        for name in (INPUTS, RESULTS):
            os.mkdir(os.path.join(directory, name))
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

    def result_writer(self, span: Span) -> ResultWriter:
        """A new file for the records of ``span``'s result (see :class:`ResultWriter`)."""
        name = f"{span.file}-{span.seq}-{os.getpid()}-{next(_names)}"
        return ResultWriter(os.path.join(self.directory, RESULTS, name))

    def remove(self) -> None:
        _output.remove(Path(self.directory))
        if self.held >= 0:
            os.close(self.held)


class ResultWriter:
    """The spool file of one result, written while its records are made.

    A worker hands :meth:`write` to :func:`~mpevents.core.spec.process_chunk_parts`,
    which gives it the records it has joined every 256 KiB of input (a part
    per group), while they are in the CPU cache: written at the end, after
    the rest of the chunk, they no longer were. :meth:`finish` writes the
    rest. The parts stay in the result too, so that one the spool cannot take
    (it is full) still goes through the queue, whole.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._parts: list[tuple[bytes, int]] = []  # (group, bytes) written, in order
        self._written: dict[bytes, int] = {}  # parts written per group
        self._failed = False

    @property
    def started(self) -> bool:
        """Whether some parts are written: the result is a big one."""
        return bool(self._parts)

    def write(self, parts: list[tuple[bytes, bytes]]) -> None:
        """Append ``parts``, (group, records) in order; nothing once a write has failed."""
        if self._failed:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            write_all(self._fd, [records for _, records in parts])
        except OSError:
            self._failed = True
            self._close()
            discard(self.path)
            return
        for group, records in parts:
            self._parts.append((group, len(records)))
            self._written[group] = self._written.get(group, 0) + 1

    def finish(self, result: ChunkParts) -> SpooledResult | None:
        """Write the parts of ``result`` not written yet; its SpooledResult,
        or None if the file could not be written (the spool full)."""
        written = self._written
        rest = [(group, part) for group, (_, parts) in result.groups.items() for part in parts[written.get(group, 0) :]]
        self.write(rest)
        self._close()
        if self._failed:
            return None
        groups = {group: (count, sum(map(len, parts))) for group, (count, parts) in result.groups.items()}
        return SpooledResult(result.lines, result.blank, groups, result.rejects, self.path, self._parts)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextlib.contextmanager
def open_result(result: SpooledResult) -> Iterator[int]:
    """The file of a spooled result, open for reading; removed after use."""
    fd = os.open(result.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)
    discard(result.path)


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
