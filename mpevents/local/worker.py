"""Worker: N processes that check and encode chunks.

Talks to: the work queue (takes :class:`~mpevents.core.framing.Span`), the input
files (reads each span's bytes; a compressed file's from the spool,
``local.spool``), the result queue (puts one :class:`Result` per span; the records
of a big one wait in the spool), its slot in the ledger, where it records the span it holds before
working on it (if it dies, main reads that slot and hands the span to its
replacement), and its counters on the scoreboard. All the rules live in
``core.spec``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final

from mpevents.core import failpoints as _failpoints
from mpevents.core.compression import read_compressed_span
from mpevents.core.framing import Span, read_chunk
from mpevents.core.inputs import InputFile
from mpevents.core.schema import V1, Schema
from mpevents.core.spec import ChunkParts, process_chunk_parts
from mpevents.local.ledger import Ledger
from mpevents.local.messages import Result
from mpevents.local.queue import MessageQueue
from mpevents.local.spool import ResultWriter, Spool
from mpevents.observe import trace as _trace
from mpevents.observe.board import Board, WorkerField

SPOOL_RESULT_BYTES: Final = 1 << 18
"""Results smaller than this are written to the result queue by the worker
itself (a small file's, say); the records of larger ones go to the spool,
and only their sizes to the queue (``local.spool``)."""


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
    schema: Schema = V1
    """The record format the lines are checked against."""


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
    while True:
        waited = _trace.now_ns()
        span = pending.pop(0) if pending else job.work_queue.get()
        if span is None:
            break
        took = _trace.now_ns()
        trace.span("wait for work", waited, took)
        job.ledger.hold(job.slot, span)
        if (span.file, span.seq) in kill_at:
            _failpoints.kill_self()
        _check(job, span, took, break_at)
        job.ledger.sent(job.slot)
    # Let the queue's feeder thread finish sending before the process ends.
    job.result_queue.close()
    job.result_queue.join_thread()


def _check(job: WorkerJob, span: Span, took: int, break_at: tuple[int, int] | None) -> None:
    """Check one span, taken at ``took``, and send its result."""
    started = time.perf_counter_ns()
    info, board = job.files[span.file], job.board
    writer = job.spool.result_writer(span)
    result = process_chunk_parts(
        _span_bytes(job, info, span), file_start=span.start == 0, on_flush=writer.write, schema=job.schema
    )
    if (span.file, span.seq) == break_at:
        job.result_queue.break_mid_transfer()
        _failpoints.kill_self()
    _send(job.result_queue, span, result, writer)
    board.add_worker(job.slot, WorkerField.CHUNKS, 1)
    board.add_worker(job.slot, WorkerField.LINES, result.lines)
    board.add_worker(job.slot, WorkerField.BUSY_NS, time.perf_counter_ns() - started)
    _trace.tracer().span(
        "check", took, _trace.now_ns(),
        file=info.name, seq=span.seq, lines=result.lines, rejects=len(result.rejects),
    )  # fmt: skip


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


def _send(result_queue: MessageQueue[Result], span: Span, result: ChunkParts, writer: ResultWriter) -> None:
    """Put ``span``'s result on the queue: a small one whole, a big one's
    records through the spool (already being written if ``writer`` started)."""
    if result.size < SPOOL_RESULT_BYTES and not writer.started:
        result_queue.put_direct(Result(span, result.joined()))
    elif (spooled := writer.finish(result)) is not None:
        result_queue.put_direct(Result(span, spooled))  # a few hundred bytes now
    else:  # the spool is full: through the queue, written while the next chunk is checked
        result_queue.put(Result(span, result.joined()))
