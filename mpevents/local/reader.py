"""Reader: up to ``--readers`` long-lived processes cutting files into spans of whole lines.

Talks to: the file queue (takes the next input file), the work queue (puts
:class:`~mpevents.core.framing.Span`), the ledger (which reader took each file;
credits), the spool (the bytes of a compressed file's spans, ``local.spool``) and
the scoreboard (bytes framed). Each reader takes the next file in
input order as it finishes one, retitled ``mpevents: reader <file>`` for each,
so thousands of small files cost no process start each. Readers never parse
lines; they only frame them (``core.framing``): a reader reads the tail of each
span's window to find its last line end, and sends where the span lies; the
worker reads the span itself. A file that fits in one span is not even opened.
A compressed file is decompressed as a stream and cut by the same rule; each
span's bytes go to the spool, for the worker that takes the span.

A reader whose file is not yet being written takes credits for each span it
sends, so that the collector never holds back more than a bounded amount of
early results (see ``local.ledger``).
"""

from __future__ import annotations

import multiprocessing.context
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.sharedctypes import RawValue
from typing import Any

import setproctitle

from mpevents.core import failpoints as _failpoints
from mpevents.core.compression import Decompressed
from mpevents.core.framing import Flag, Span, frames, stream_frames
from mpevents.core.inputs import InputFile
from mpevents.local.ledger import Ledger, LedgerFlag
from mpevents.local.queue import MessageQueue
from mpevents.local.spool import Spool
from mpevents.observe import trace as _trace
from mpevents.observe.board import Board, FileField, FileState, ReaderField


class FileQueue:
    """The input files still to read, taken in input order by the readers.

    A counter in shared memory under a lock: taking a file is a few
    microseconds, and the taker is recorded on the scoreboard before the lock
    is released, in the ledger, so when a reader dies main knows every file
    it had taken.
    """

    def __init__(self, ctx: multiprocessing.context.BaseContext, files: int, first: int = 0) -> None:
        self.files = files
        self._next: Any = RawValue("q", first)
        self._lock = ctx.Lock()

    def taken(self) -> int:
        return min(int(self._next.value), self.files)

    def take(self, slot: int, ledger: Ledger) -> int | None:
        with self._lock:
            file = int(self._next.value)
            if file >= self.files:
                return None
            self._next.value = file + 1
            ledger.took(file, slot)
        return file


ResumePoint = tuple[int, int, int]
"""Where a reader goes on in a file a dead reader had taken: (file, first span, its start)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReaderJob:
    """What one reader process is given: its slot, and all it reads from and writes to."""

    slot: int
    generation: int
    """0 for the first reader of a slot in the first attempt, where test failpoints fire."""
    chunk_bytes: int
    resume: tuple[ResumePoint, ...]
    """The files a dead reader had taken and where each goes on, read first."""
    files: Sequence[InputFile]
    """The run's input files; ``files[i]`` is file i."""
    file_queue: FileQueue
    work_queue: MessageQueue[Span | None]
    board: Board
    ledger: Ledger
    spool: Spool
    """Where the bytes of compressed spans go (``local.spool``)."""


def read_files(job: ReaderJob) -> None:
    """The reader process body: the files to resume, then the next file in
    input order until none is left."""
    sender = _Sender(job, _failpoints.chunk_point("reader_kill", job.generation))
    for index, seq, start in job.resume:
        _read_file(job.files[index], job.chunk_bytes, seq, start, sender)
    while (taken := job.file_queue.take(job.slot, job.ledger)) is not None:
        _read_file(job.files[taken], job.chunk_bytes, 0, 0, sender)
    job.board.set_reader(job.slot, ReaderField.FILE, 0)


def _read_file(info: InputFile, chunk_bytes: int, seq: int, start: int, sender: _Sender) -> None:
    """Send every span of one file from span ``seq`` at ``start``, the last one flagged.

    The file is read as it was listed at start-up, up to where its lines
    ended then (``InputFile.end``: its size, less the last line of a file
    still being written, ``core.live``); a worker that finds those bytes changed
    fails the run. Reading starts at ``info.start`` at the earliest (an
    --incremental run's file: a restarted reader of a file with no span
    written yet is told 0).
    """
    file, board = info.index, sender.board
    start = max(start, info.start)
    setproctitle.setproctitle(f"mpevents: reader {info.name}")
    board.set_file(file, FileField.STATE, FileState.READING)
    board.set_reader(sender.slot, ReaderField.FILE, file + 1)
    if info.compression is not None:
        _read_compressed(info, chunk_bytes, seq, start, sender)
    elif info.end - start <= chunk_bytes:  # one span, or none left: nothing to look for
        sender.send(Span(file, seq, start, info.end, Flag.LAST))
    else:
        with open(info.path, "rb") as handle:
            for span in frames(handle, file, info.end, chunk_bytes, start, seq):
                sender.send(span)
    board.set_file(file, FileField.STATE, FileState.READ)


def _read_compressed(info: InputFile, chunk_bytes: int, seq: int, start: int, sender: _Sender) -> None:
    """Decompress a file from its start, skip to ``start`` (a restarted reader's
    first unwritten span), and send each span with its bytes."""
    assert info.compression is not None
    board, slot = sender.board, sender.slot
    with Decompressed(info.path, info.compression, info.identity, info.size) as stream:
        stream.skip(start, lambda size: board.add_reader(slot, ReaderField.SKIPPED, size))
        read_from = stream.raw_position
        for span, data in stream_frames(stream, info.index, chunk_bytes, seq, start):
            # Progress in bytes of the file on disk, as for plain files, and
            # what they inflate to, for the collector's estimate of its own.
            sender.board.set_file(info.index, FileField.INFLATED, span.end)
            read_to = stream.raw_position
            sender.send(span, data, (read_from, read_to))
            read_from = read_to


class _Sender:
    """A reader's way onto the work queue: credits, progress, test failpoints."""

    def __init__(self, job: ReaderJob, kill_at: tuple[int, int] | None) -> None:
        self.slot, self.board = job.slot, job.board
        self._kill_at, self._work_queue, self._ledger, self._spool = kill_at, job.work_queue, job.ledger, job.spool
        self._trace = _trace.tracer()
        self._framed_from = _trace.now_ns()  # when the reader started on the span it sends next

    def send(self, span: Span, data: bytes | None = None, read: tuple[int, int] | None = None) -> None:
        """Send a span; for a compressed file, with ``data``, its bytes, for
        which the file was ``read`` from one offset on disk to another."""
        if self._kill_at == (span.file, span.seq):
            _failpoints.kill_self()
        framed = _trace.now_ns()
        self._trace.span("frame", self._framed_from, framed, file=span.file, seq=span.seq)
        span = self._ledger.take_credits(span)
        credited = _trace.now_ns()
        if span.flags & LedgerFlag.CREDIT:
            self._trace.span("wait for credit", framed, credited)
        # Counted before the put, which waits while the work queue is full: the
        # dashboard shows the span as framed while it waits, not as unread.
        read_from, read_to = (span.start, span.end) if read is None else read
        self.board.set_file(span.file, FileField.BYTES_READ, read_to)
        self.board.add_reader(self.slot, ReaderField.BYTES, read_to - read_from)
        if data is not None:
            self._spool.put(span, data)
        self._work_queue.put_direct(span)
        self._framed_from = _trace.now_ns()
        self._trace.span("put", credited, self._framed_from)
