"""Collector: the one process that writes the output, in input order.

Talks to: the result queue (takes :class:`Result`), the spool (where the
records of big results wait, ``local.spool``), the temporary output directory
(group files and ``rejected.jsonl``), the ledger (each file's first
unwritten span; it returns readers' credits), the scoreboard (what it has
written, for the dashboard), and at the end the report pipe (the
:class:`Report` behind ``summary.json``).

Results arrive in any order; the collector writes span ``s`` of file ``f``
only after every earlier span, so each group file and the rejects follow
(file name, line number) whatever the worker count or chunk size. It holds
back only what arrives early, which the bounded queues and the readers'
credits keep small. A result it has already written or holds, as after a
worker or reader was restarted, is dropped by its (file, sequence) key.

Reject line numbers are made absolute here, from the line counts of the
chunks before: a worker only knows its own chunk.

The Dask engine runs a :class:`Collector` in its client: there a result's
records stay in a task's part file, which the collector hands, in its turn,
to a :class:`PartSink` (``_dask.PartFiles``) instead of writing them.
"""

from __future__ import annotations

import errno
import heapq
import os
import resource
import time
from array import array
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Final, Protocol

import msgspec

from mpevents.core import failpoints as _failpoints
from mpevents.core.framing import Flag, Span
from mpevents.core.inputs import InputFile
from mpevents.core.spec import REASON_INDEX, REASONS
from mpevents.local.ledger import Ledger
from mpevents.local.messages import PartsResult, Result, SpooledResult
from mpevents.local.spool import discard, open_result
from mpevents.observe import trace as _trace
from mpevents.observe.board import TOP_GROUPS, Board, CollectorField, FileField, FileState
from mpevents.output import journal
from mpevents.output.journal import CHECKPOINT_S, State
from mpevents.output.names import JOURNAL_NAME, REJECTS_NAME, group_file_name
from mpevents.output.report import FileCounts, Report

_RESERVED_FDS: Final = 16
"""Descriptors kept free for everything but group files (queues, stdio, rejects)."""
_TOP_EVERY_S: Final = 0.25
"""How often the largest groups are republished for the dashboard."""
_WRITE_BUFFER: Final = 1 << 16
_SEND_BYTES: Final = 1 << 15
"""Smaller parts of a spooled result are read and buffered, not copied in the
kernel: with 200 groups a result's parts are about 10 KiB, and a write to a
file costs more than its bytes (its journal, its times), so one write for
several parts costs less than a copy each (the collector's write time on
the real-shaped corpus: 0.72 s against 1.07 s, profiled, with a read
per part; read whole, less again)."""
_COUNTS: Final = 4
"""Counts kept per file: lines, valid, rejected, blank."""


class RejectLine(msgspec.Struct, gc=False):
    """One line of ``rejected.jsonl``; field order is the key order."""

    file: str
    line: int
    reason: str
    raw: str


class PartSink(Protocol):
    """Where a Dask task's part file goes when its turn comes (``_dask.PartFiles``):
    its records are placed in the group files by tasks, never by the collector."""

    def place(self, result: PartsResult) -> None: ...


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
        self.limit = max(1, min(limit, _descriptor_budget()))
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

    def flush(self, groups: set[bytes]) -> dict[bytes, int]:
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


def _descriptor_budget() -> int:
    """How many more files this process may open, less a reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    try:
        in_use = len(os.listdir("/proc/self/fd"))
    except OSError:
        in_use = 32
    return soft - in_use - _RESERVED_FDS


class Collector:
    """Puts results in order and writes them; pure bookkeeping, no queues."""

    def __init__(
        self,
        files: Sequence[InputFile],
        directory: Path,
        max_open_files: int,
        board: Board,
        ledger: Ledger,
        generation: int = 0,
        resume: State | None = None,
        parts: PartSink | None = None,
    ) -> None:
        """``resume``: where a --resume run's journal left off (the staging
        directory is cut back to it); with it, checkpoints are journaled.
        ``parts``: where the part files of :class:`PartsResult` go (the Dask engine)."""
        self.files = files
        self.board = board
        self.ledger = ledger
        self.head = 0  # the file being written
        # Per-file state in flat int64 arrays, and held results only for files
        # that have some: a few dozen bytes per file, for 20,000 files too.
        self._held: dict[int, dict[int, Result]] = {}
        self._next_seq = array("q", bytes(8 * len(files)))
        self._counts = array("q", bytes(8 * _COUNTS * len(files)))  # lines, valid, rejected, blank of each file
        self._ends = array("q", bytes(8 * len(files)))  # where each file's last written span ends
        self._reasons = [0] * len(REASONS)
        self._group_counts: dict[bytes, int] = {}
        self._groups = GroupFiles(directory, max_open_files)  # opens nothing until written to
        self._parts = parts
        self._rejects = open(directory / REJECTS_NAME, "ab" if resume else "wb")  # noqa: SIM115
        self._journal = journal.Syncer(directory / JOURNAL_NAME) if resume is not None else None
        self._directory = directory
        self._dirty: set[bytes] = set()  # groups written since the last checkpoint
        self._finished: dict[int, tuple[FileCounts, int]] = {}  # files finished since then
        self._checkpoint_at = time.monotonic()
        self._trace = _trace.tracer()
        self._arrived: dict[tuple[int, int], int] | None = {} if isinstance(self._trace, _trace.Tracer) else None
        self._checkpoint_s = _failpoints.number("checkpoint_s") or CHECKPOINT_S
        if resume is not None:
            self._resume_from(resume)
        self._encoder = msgspec.json.Encoder()
        self._buffer = bytearray()
        self._results = 0
        self._top_at = 0.0
        self._fail_after = _failpoints.number("collector_write_error")
        self._kill_after = _failpoints.number("collector_kill") if generation == 0 else None

    def _resume_from(self, state: State) -> None:
        self.head = state.head
        if state.head < len(self.files):
            self._next_seq[state.head] = state.next_seq
        for file, counts in state.counts.items():
            self._counts[_COUNTS * file : _COUNTS * file + _COUNTS] = array("q", msgspec.structs.astuple(counts))
        for file, end in state.ends.items():
            self._ends[file] = end
        self._group_counts = {group.encode(): count for group, (_, count) in state.groups.items()}
        self._reasons = list(state.reasons) or self._reasons
        board = self.board
        board.set_collector(CollectorField.HEAD, state.head)
        board.set_collector(CollectorField.LINES, state.lines)
        for file in range(state.head):
            board.set_file(file, FileField.STATE, FileState.WRITTEN)
            board.set_file(file, FileField.WRITTEN, self.files[file].size)

    @property
    def done(self) -> bool:
        return self.head == len(self.files)

    def add(self, result: Result) -> None:
        """Take one result; write it and whatever it unblocks."""
        file, seq = result.span.file, result.span.seq
        if file < self.head or seq < self._next_seq[file] or seq in self._held.get(file, ()):
            self.ledger.dropped(result.span)  # a repeat after a restart
            if isinstance(result.result, SpooledResult):
                discard(result.result.path)
            return
        self._held.setdefault(file, {})[seq] = result
        if self._arrived is not None:
            self._arrived[(file, seq)] = _trace.now_ns()
        while self.head < len(self.files):
            held = self._held.get(self.head)
            ready = held.pop(self._next_seq[self.head], None) if held else None
            if ready is None:
                break
            if not held:
                del self._held[self.head]
            self._write(ready)

    def _write(self, item: Result) -> None:
        if self._fail_after is not None and self._results >= self._fail_after:
            raise OSError(28, os.strerror(28), str(self._rejects.name))
        span, result = item
        file = span.file
        if self._arrived is not None:  # the time it waited for the results before it
            self._trace.span("held", self._arrived.pop((file, span.seq)), _trace.now_ns(), tid=1, seq=span.seq)
        counts = self._counts
        at = _COUNTS * file
        base = counts[at]
        valid = 0
        group_counts = self._group_counts
        if isinstance(result, SpooledResult):
            with open_result(result) as source:
                self._groups.send_all(source, result.parts)
        elif isinstance(result, PartsResult):
            assert self._parts is not None
            self._parts.place(result)
        else:
            for group, (_, data) in result.groups.items():
                self._groups.write(group, data)
        for group, (count, _) in result.groups.items():
            group_counts[group] = group_counts.get(group, 0) + count
            valid += count
        if self._journal is not None:
            self._dirty.update(result.groups)
        if result.rejects:
            name = self.files[file].name
            buffer = self._buffer
            buffer.clear()
            for reject in result.rejects:
                self._encoder.encode_into(RejectLine(name, base + reject.line, reject.reason, reject.raw), buffer, -1)
                buffer.extend(b"\n")
                self._reasons[REASON_INDEX[reject.reason]] += 1
            self._rejects.write(buffer)
        counts[at] += result.lines
        counts[at + 1] += valid
        counts[at + 2] += len(result.rejects)
        counts[at + 3] += result.blank
        self._next_seq[file] += 1
        self._results += 1
        self._ends[file] = span.end
        self.ledger.written(span)
        self._publish(item, valid, len(result.rejects), result.blank, result.lines)
        if span.flags & Flag.LAST:
            if self._journal is not None:
                self._finished[file] = (FileCounts(*counts[at : at + _COUNTS]), span.end)
            self.head += 1
            self.board.set_file(file, FileField.STATE, FileState.WRITTEN)
            self.board.set_collector(CollectorField.HEAD, self.head)
        if self._kill_after is not None and self._results >= self._kill_after:
            _failpoints.kill_self()
        if self._journal is not None and time.monotonic() - self._checkpoint_at >= self._checkpoint_s:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Have what was written since the last checkpoint synced, then where it
        ends journaled, by the journal's thread; none while one is under way."""
        assert self._journal is not None
        if self._journal.busy():
            return
        sizes = self._groups.flush(self._dirty)
        self._rejects.flush()
        paths = [str(self._directory / group_file_name(group)) for group in sizes]
        paths.append(str(self._directory / REJECTS_NAME))
        head, whole = self.head, self.head < len(self.files)
        at = _COUNTS * head
        self._journal.submit(
            paths,
            journal.Checkpoint(
                head=head,
                next_seq=self._next_seq[head] if whole else 0,
                next_start=self._ends[head] if whole else 0,
                head_counts=FileCounts(*self._counts[at : at + _COUNTS]) if whole else FileCounts(),
                finished=self._finished,
                groups={group.decode("ascii"): (size, self._group_counts[group]) for group, size in sizes.items()},
                rejects_size=self._rejects.tell(),
                reasons=list(self._reasons),
            ),
        )
        self._dirty, self._finished = set(), {}
        self._checkpoint_at = time.monotonic()

    def _publish(self, item: Result, valid: int, rejected: int, blank: int, lines: int) -> None:
        """Show what was written on the scoreboard, for the dashboard."""
        board, span = self.board, item.span
        written = self._on_disk(span)
        before = board.file(span.file, FileField.WRITTEN)
        board.set_file(span.file, FileField.WRITTEN, written)
        board.set_file(span.file, FileField.LINES, self._counts[_COUNTS * span.file])
        board.set_collector(CollectorField.RESULTS, self._results)
        board.set_collector(CollectorField.RECORDS, board.collector(CollectorField.RECORDS) + valid)
        board.set_collector(CollectorField.REJECTED, board.collector(CollectorField.REJECTED) + rejected)
        board.set_collector(CollectorField.BLANK, board.collector(CollectorField.BLANK) + blank)
        board.set_collector(CollectorField.LINES, board.collector(CollectorField.LINES) + lines)
        board.set_collector(CollectorField.BYTES, board.collector(CollectorField.BYTES) + written - before)
        if rejected:
            for index, count in enumerate(self._reasons):
                board.set_reason(index, count)
        now = time.monotonic()
        if now - self._top_at >= _TOP_EVERY_S or self.head + 1 >= len(self.files):
            self._top_at = now
            board.set_collector(CollectorField.GROUPS, len(self._group_counts))
            top = heapq.nlargest(TOP_GROUPS, self._group_counts.items(), key=lambda pair: pair[1])
            board.set_top_groups([(int(group), count) for group, count in top])

    def _on_disk(self, span: Span) -> int:
        """How far into its file on disk ``span`` ends: its end, or for a
        compressed file an estimate from how much its reader's bytes inflated."""
        info = self.files[span.file]
        if info.compression is None or span.flags & Flag.LAST:
            return info.size if span.flags & Flag.LAST else span.end
        read, inflated = (
            self.board.file(span.file, FileField.BYTES_READ),
            self.board.file(span.file, FileField.INFLATED),
        )
        return min(info.size, span.end * read // inflated) if inflated else 0

    def close(self) -> None:
        self._groups.close()
        self._rejects.close()
        if self._journal is not None:
            self._journal.close()

    def report(self) -> Report:
        """The counts main needs for summary.json."""
        counts = self._counts
        return Report(
            files=[FileCounts(*counts[at : at + _COUNTS]) for at in range(0, len(counts), _COUNTS)],
            ends=list(self._ends),
            reasons=list(self._reasons),
            groups={group.decode("ascii"): count for group, count in self._group_counts.items()},
        )


def collect(
    files: Sequence[InputFile],
    directory: Path,
    max_open_files: int,
    result_queue: Any,
    report: Any,
    board: Board,
    ledger: Ledger,
    generation: int = 0,
    resume: State | None = None,
) -> None:
    """The collector process body: write every result, then report the counts.
    ``generation`` counts restarts of the data plane (test failpoints fire in
    the first); ``resume``, where a --resume run starts (see Collector)."""
    collector = Collector(files, directory, max_open_files, board, ledger, generation, resume)
    slow = _failpoints.number("collector_slow")
    trace = _trace.tracer()
    try:
        while not collector.done:
            waited = _trace.now_ns()
            result = result_queue.get()
            got = _trace.now_ns()
            trace.span("wait for result", waited, got)
            if slow:
                time.sleep(slow)
            started = time.perf_counter_ns()
            collector.add(result)
            trace.span("write", got, _trace.now_ns(), file=result.span.file, seq=result.span.seq)
            board.set_collector(
                CollectorField.BUSY_NS, board.collector(CollectorField.BUSY_NS) + time.perf_counter_ns() - started
            )
    finally:
        collector.close()
    report.send(collector.report())
    report.close()
