"""The local collector process: takes results off the result queue and has them written.

Owns the process's loop (:func:`collect`, started with a :class:`CollectorJob`),
and its sink (:class:`LocalSink`): the records of a small result come in its
message, as bytes, those of a big one wait in a spool file (``local.spool``),
and both go to the group files (:class:`GroupFiles`), a spooled one copied
in the kernel. When a span is written or dropped as a repeat, the sink
returns the credits its reader took for it (``local.ledger``) and removes
its spool file.

Talks to: the result queue (takes :class:`~mpevents.local.messages.Result`),
the collector core (``output.collector``: the order, the counts, the
rejects, the journal's checkpoints, the scoreboard), the spool, the ledger,
the group files in the staging directory, and at the end the report pipe
(the :class:`~mpevents.output.report.Report` behind ``summary.json``).
"""

from __future__ import annotations

import errno
import os
import resource
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import BinaryIO, Final

import msgspec

from mpevents.core import failpoints as _failpoints
from mpevents.core.framing import Span
from mpevents.core.inputs import InputFile
from mpevents.local.ledger import Ledger
from mpevents.local.messages import LocalPayload, Result, SpooledResult
from mpevents.local.queue import MessageQueue
from mpevents.local.spool import discard, open_result
from mpevents.observe import trace as _trace
from mpevents.observe.board import Board, CollectorField
from mpevents.output.collector import Collector
from mpevents.output.journal import State
from mpevents.output.names import group_file_name

_RESERVED_FDS: Final = 16
"""Descriptors kept free for everything but group files (queues, stdio, rejects)."""
_WRITE_BUFFER: Final = 1 << 16
_SEND_BYTES: Final = 1 << 15
"""Smaller parts of a spooled result are read and buffered, not copied in the
kernel: with 200 groups a result's parts are about 10 KiB, and a write to a
file costs more than its bytes (its journal, its times), so one write for
several parts costs less than a copy each (the collector's write time on
the real-shaped corpus: 0.72 s against 1.07 s, profiled, with a read
per part; read whole, less again)."""


class GroupFiles:
    """Group files, at most ``limit`` open at once, least recently used closed first.

    A file is created on first use and reopened at its end after being
    closed, so any number of groups works under a small descriptor limit.
    Records come as bytes (:meth:`write`, buffered) or as a range of a spool
    file (:meth:`send`, copied in the kernel). Files are not opened in append
    mode, which the kernel's copy refuses; one writer appends to each.
    """

    def __init__(self, directory: Path, limit: int) -> None:
        self.directory = directory
        self.limit = max(1, min(limit, _descriptor_budget(limit)))
        self._open: OrderedDict[bytes, BinaryIO] = OrderedDict()
        self._block = bytearray()  # a spooled result read whole (send_all)

    def _handle(self, group: bytes) -> BinaryIO:
        handle = self._open.get(group)
        if handle is None:
            while len(self._open) >= self.limit:
                self._open.popitem(last=False)[1].close()
            fd = os.open(self.directory / group_file_name(group), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            os.lseek(fd, 0, os.SEEK_END)
            handle = open(fd, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115
            self._open[group] = handle
        else:
            self._open.move_to_end(group)
        return handle

    def write(self, group: bytes, data: bytes) -> None:
        self._handle(group).write(data)

    def send_all(self, source: int, sizes: Sequence[tuple[bytes, int]]) -> None:
        """Append the parts of file ``source``, one after another, each to its
        group: (group, bytes) in order. Big ones are copied in the kernel;
        if some are small, the file is read once and those are buffered."""
        whole: memoryview | None = None
        offset = 0
        for group, size in sizes:
            if size >= _SEND_BYTES:
                self.send(group, source, offset, size)
            else:
                if whole is None:
                    whole = self._read(source, 0, sum(size for _, size in sizes))
                self._handle(group).write(whole[offset : offset + size])
            offset += size

    def _read(self, source: int, offset: int, size: int) -> memoryview:
        """``size`` bytes of file ``source`` from ``offset``, in a buffer kept for the next."""
        if len(self._block) < size:
            self._block = bytearray(size)
        view = memoryview(self._block)[:size]
        done = 0
        while done < size:
            read = os.preadv(source, [view[done:]], offset + done)
            if not read:
                raise OSError(errno.EIO, "a spooled result is shorter than it said")
            done += read
        return view

    def send(self, group: bytes, source: int, offset: int, size: int) -> None:
        """Append ``size`` bytes of file ``source`` from ``offset``, in the kernel."""
        handle = self._handle(group)
        handle.flush()  # what was written before goes first
        target = handle.fileno()
        try:
            while size:
                sent = os.sendfile(target, source, offset, size)
                if not sent:
                    raise OSError(errno.EIO, "a spooled result is shorter than it said")
                offset, size = offset + sent, size - sent
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOSYS):  # no sendfile between files here
                raise
            handle.write(self._read(source, offset, size))

    def flush(self, groups: Iterable[bytes]) -> dict[bytes, int]:
        """Flush the files of ``groups`` to the kernel; their sizes."""
        sizes = {}
        for group in groups:
            handle = self._open.get(group)
            if handle is not None:
                handle.flush()
                sizes[group] = handle.tell()
            else:  # closed since: flushed then
                sizes[group] = os.stat(self.directory / group_file_name(group)).st_size
        return sizes

    def close(self) -> None:
        while self._open:
            self._open.popitem(last=False)[1].close()


def _descriptor_budget(wanted: int) -> int:
    """How many more files this process may open, less a reserve; the soft
    limit is raised towards the hard one first where ``wanted`` needs it (any
    process may, and the usual soft 1,024 would cap the group files kept open)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 32
    needed = wanted + in_use + _RESERVED_FDS
    if needed > soft:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
        except (ValueError, OSError):  # not allowed here: keep what there is
            pass
    return soft - in_use - _RESERVED_FDS


class LocalSink:
    """The local engine's :class:`~mpevents.output.sink.Sink`: writes each
    result's records to the group files itself, and settles its span in the
    ledger (its reader's credits come back)."""

    def __init__(self, groups: GroupFiles, ledger: Ledger) -> None:
        self._groups = groups
        self._ledger = ledger

    def write(self, span: Span, payload: LocalPayload) -> None:
        if isinstance(payload, SpooledResult):
            with open_result(payload) as source:
                self._groups.send_all(source, payload.parts)
        else:
            for group, (_, data) in payload.groups.items():
                self._groups.write(group, data)
        self._ledger.written(span)

    def drop(self, span: Span, payload: LocalPayload) -> None:
        self._ledger.dropped(span)
        if isinstance(payload, SpooledResult):
            discard(payload.path)

    def flush(self, groups: Iterable[bytes]) -> dict[bytes, int]:
        return self._groups.flush(groups)

    def close(self) -> None:
        self._groups.close()


def local_collector(
    files: Sequence[InputFile],
    directory: Path,
    max_open_files: int,
    board: Board,
    ledger: Ledger,
    resume: State | None = None,
    generation: int = 0,
) -> Collector[LocalPayload]:
    """A collector core writing into ``directory`` through a :class:`LocalSink`."""
    sink = LocalSink(GroupFiles(directory, max_open_files), ledger)  # opens nothing until written to
    return Collector(files, directory, sink, board, resume, generation)


class CollectorJob(msgspec.Struct, frozen=True):
    """What the collector process is started with."""

    files: Sequence[InputFile]
    directory: Path
    """The staging directory."""
    max_open_files: int
    results: MessageQueue[Result]
    """The result queue, from the workers."""
    report: Connection
    """The sending end of the report pipe, to main."""
    board: Board
    ledger: Ledger
    generation: int = 0
    """Restarts of the data plane before this one: test failpoints fire in the first."""
    resume: State | None = None
    """Where a --resume run starts (see ``output.collector.Collector``)."""


def collect(job: CollectorJob) -> None:
    """The collector process body: write every result, then report the counts."""
    board = job.board
    collector = local_collector(
        job.files, job.directory, job.max_open_files, board, job.ledger, job.resume, job.generation
    )
    slow = _failpoints.number("collector_slow")
    trace = _trace.tracer()
    try:
        while not collector.done:
            waited = _trace.now_ns()
            result: Result = job.results.get()
            got = _trace.now_ns()
            trace.span("wait for result", waited, got)
            if slow:
                time.sleep(slow)
            started = time.perf_counter_ns()
            collector.add(result.span, result.result)
            trace.span("write", got, _trace.now_ns(), file=result.span.file, seq=result.span.seq)
            board.set_collector(
                CollectorField.BUSY_NS, board.collector(CollectorField.BUSY_NS) + time.perf_counter_ns() - started
            )
    finally:
        collector.close()
    job.report.send(collector.report())
    job.report.close()
