"""Worker: N processes that check and encode chunks, then write the group files.

Talks to: the work queue (takes :class:`~mpevents.core.framing.Span`), the input
files (reads each span's bytes; a compressed file's from the spool,
``local.spool``), its part log (appends each span's records:
``output.parts``), the result queue (puts one :class:`Result` per span,
saying where its records are), its slot in the ledger, where it records the
span it holds before working on it (if it dies, main reads that slot and
hands the span to its replacement), and its counters on the scoreboard.
Each time the blocks in order fill an epoch, and once every span is in, the
collector puts one placing per worker on the work queue, between the spans:
each writes its share of the group files from the part logs
(:func:`~mpevents.output.parts.place`), so that the records are
written by every core, never by one process. All the rules live in
``core.spec``.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Final

from mpevents.core import failpoints as _failpoints
from mpevents.core.compression import read_compressed_span
from mpevents.core.framing import Span, read_chunk
from mpevents.core.inputs import InputFile
from mpevents.core.schema import V1, Schema
from mpevents.core.spec import process_chunk_parts
from mpevents.local.ledger import Ledger, LedgerFlag, placing_of
from mpevents.local.messages import PartResult, PlaceResult, Result
from mpevents.local.queue import MessageQueue
from mpevents.local.spool import Spool
from mpevents.observe import trace as _trace
from mpevents.observe.board import Board, WorkerField
from mpevents.output import rejects
from mpevents.output.frames import Compress
from mpevents.output.parts import PartLog, Placing, place, read_order

COLLECT_EVERY: Final = 16
"""Spans and placings between two garbage collections, which the worker runs
itself (``gc.disable``). Left to the interpreter, collections came every
700 new containers, and with many groups a chunk makes one list per group
and a placing one per group and piece: at 100,000 groups they walked the
same long-lived lists again and again, 1.4 s of a 20 s worker (measured
with ``gc.callbacks``), where 200 groups made one collection in a whole run.
A span and a placing make almost no reference cycles (17 objects in a run of
113 spans), so a full collection every few of them bounds what cycles hold,
and costs about 1 ms."""

DIRECT_REJECTS: Final = 1_000
"""A result with fewer rejects than this is a small message, sent from the
worker's own thread (``MessageQueue.put_direct``); one with more goes through
the queue's feeder thread, written while the next chunk is checked."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerJob:
    """What one worker process is given: its slot, and all it reads from and writes to."""

    slot: int
    generation: int
    """0 for the first worker of a slot in the first attempt, where test failpoints fire."""
    first: tuple[Span, ...]
    """The spans a dead predecessor in this slot held, checked before any from the queue."""
    files: Sequence[InputFile]
    """The run's input files; ``files[i]`` is file i."""
    work_queue: MessageQueue[Span | None]
    """Spans to check; ``None`` says stop."""
    result_queue: MessageQueue[Result]
    board: Board
    ledger: Ledger
    spool: Spool
    parts: Path
    """The part logs' directory (``output.parts``), in the staging directory."""
    segment_bytes: int
    """The size of each file of its part log (``output.parts.SEGMENT_CHUNKS`` chunks)."""
    staging: Path
    """Where the group files go."""
    schema: Schema = V1
    """The record format the lines are checked against."""
    compress: Compress | None = None
    """--compress: the group files' format (``output.frames``); None: plain."""


def work(job: WorkerJob) -> None:
    """The worker process body: ``job.first``, then spans from the work queue
    until a ``None`` arrives."""
    kill_at = (
        _failpoints.chunk_point("worker_kill", job.generation),
        _failpoints.chunk_point("worker_kill_always", 0),
    )
    break_at = _failpoints.chunk_point("worker_break_queue", job.generation)
    pending = list(job.first)
    trace = _trace.tracer()
    log = PartLog(job.parts, f"worker-{job.slot}-{job.generation}-{os.getpid()}", job.segment_bytes)
    gc.disable()  # collected every COLLECT_EVERY spans or placings, below
    done = 0
    while True:
        waited = _trace.now_ns()
        span = pending.pop(0) if pending else job.work_queue.get()
        if span is None:
            break
        took = _trace.now_ns()
        trace.span("wait for work", waited, took)
        job.ledger.hold(job.slot, span)
        if span.flags & LedgerFlag.PLACE:
            _place(job, span, took)
        else:
            if (span.file, span.seq) in kill_at:
                _failpoints.kill_self()
            _check(job, span, log, took, break_at)
        job.ledger.sent(job.slot)
        done += 1
        if done % COLLECT_EVERY == 0:
            gc.collect()
    log.close()
    # Let the queue's feeder thread finish sending before the process ends.
    job.result_queue.close()
    job.result_queue.join_thread()


def _check(job: WorkerJob, span: Span, log: PartLog, took: int, break_at: tuple[int, int] | None) -> None:
    """Check one span, taken at ``took``, append its records to ``log`` and send its result."""
    started = time.perf_counter_ns()
    info, board = job.files[span.file], job.board
    result = process_chunk_parts(_span_bytes(job, info, span), file_start=span.start == 0, schema=job.schema)
    ref = log.append(result)
    if (span.file, span.seq) == break_at:
        job.result_queue.break_mid_transfer()
        _failpoints.kill_self()
    message = Result(span, PartResult(result.lines, result.blank, rejects.encode(result.rejects), ref))
    if len(result.rejects) < DIRECT_REJECTS:
        job.result_queue.put_direct(message)
    else:
        job.result_queue.put(message)
    board.add_worker(job.slot, WorkerField.CHUNKS, 1)
    board.add_worker(job.slot, WorkerField.LINES, result.lines)
    board.add_worker(job.slot, WorkerField.BUSY_NS, time.perf_counter_ns() - started)
    _trace.tracer().span(
        "check", took, _trace.now_ns(),
        file=info.name, seq=span.seq, lines=result.lines, rejects=len(result.rejects),
    )  # fmt: skip


def _place(job: WorkerJob, span: Span, took: int) -> None:
    """Write the placing's share of the group files, taken at ``took``, and send their counts."""
    started = time.perf_counter_ns()
    placing = placing_of(span)
    if _fires(job, "placer_kill", placing):
        _failpoints.kill_self()
    # Decided now: once the result is sent, the collector may place the epoch
    # and remove its order file before this worker could read it.
    kill_when_sent = _fires(job, "placer_kill_sent", placing)
    board, slot = job.board, job.slot
    slow = _failpoints.number("placer_slow")

    def moved() -> None:
        board.add_worker(slot, WorkerField.PLACED, 1)
        if slow:
            time.sleep(slow)

    fields = (WorkerField.PLACE_READ, WorkerField.OUT_PLAIN, WorkerField.OUT_WRITTEN)
    cell = placing.number if placing.number < board.n_workers else None
    # The board's cells of this placing number: read, written plain, written,
    # from what the earlier epochs' placings of that number left there.
    counts = [board.worker(cell, field) if cell is not None else 0 for field in fields]

    def wrote(read: int, taken: int, given: int) -> None:
        counts[0] += read
        counts[1] += taken
        counts[2] += given
        if cell is not None:
            for field, count in zip(fields, counts, strict=True):
                board.set_worker(cell, field, count)

    groups = place(job.parts, job.staging, placing, moved, compress=job.compress, wrote=wrote)
    job.result_queue.put(Result(span, PlaceResult(groups)))
    if kill_when_sent:
        job.result_queue.close()
        job.result_queue.join_thread()  # the result is sent whole
        _failpoints.kill_self()
    job.board.add_worker(job.slot, WorkerField.BUSY_NS, time.perf_counter_ns() - started)
    _trace.tracer().span("place", took, _trace.now_ns(), placing=placing.describe(), groups=len(groups))


def _fires(job: WorkerJob, point: str, placing: Placing) -> bool:
    """Whether test failpoint ``point`` (a placing's number) fires here: in a
    first-generation worker, in the run's first epoch only (every epoch has a
    placing of each number)."""
    if job.generation != 0 or _failpoints.number(point) != placing.number:
        return False
    order = read_order(job.parts)
    return order is not None and order.base == 0


def _span_bytes(job: WorkerJob, info: InputFile, span: Span) -> bytes:
    """The bytes of ``span``: from its file, or for a compressed file, from
    the spool where its reader left them (if not there, decompressed again)."""
    if info.compression is None:
        return read_chunk(info.path, span, info.identity)
    taken = job.spool.take(span)
    if taken is not None:
        return taken
    moved = partial(job.board.add_worker, job.slot, WorkerField.SKIPPED)  # the supervisor sees this worker move
    return read_compressed_span(info.path, info.compression, span, moved, info.identity, info.size)
