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
from functools import partial
from typing import Any, Final

from mpevents.core import failpoints as _failpoints
from mpevents.core.compression import read_compressed_span
from mpevents.core.framing import Span, read_chunk
from mpevents.core.inputs import InputFile
from mpevents.core.spec import process_chunk_parts
from mpevents.local.ledger import Ledger
from mpevents.local.messages import Result
from mpevents.local.spool import Spool
from mpevents.observe import trace as _trace
from mpevents.observe.board import Board, WorkerField

SPOOL_RESULT_BYTES: Final = 1 << 18
"""Results smaller than this are written to the result queue by the worker
itself (a small file's, say); the records of larger ones go to the spool,
and only their sizes to the queue (``local.spool``)."""


def work(
    slot: int,
    generation: int,
    files: Sequence[InputFile],
    work_queue: Any,
    result_queue: Any,
    board: Board,
    ledger: Ledger,
    spool: Spool | None,
    first: list[Span],
) -> None:
    """The worker process body: ``first`` (a dead predecessor's spans), then
    spans from the work queue until a ``None`` arrives; ``files[i]`` is file i."""
    kill_at = _failpoints.chunk_point("worker_kill", generation)
    kill_always = _failpoints.chunk_point("worker_kill_always", 0)
    break_at = _failpoints.chunk_point("worker_break_queue", generation)
    pending = list(first)
    trace = _trace.tracer()
    while True:
        waited = _trace.now_ns()
        span: Span | None = pending.pop(0) if pending else work_queue.get()
        if span is None:
            break
        started = time.perf_counter_ns()
        took = _trace.now_ns()
        trace.span("wait for work", waited, took)
        ledger.hold(slot, span)
        if (span.file, span.seq) in (kill_at, kill_always):
            _failpoints.kill_self()
        info = files[span.file]
        if info.compression is None:
            data = read_chunk(info.path, span, info.identity)
        else:  # left in the spool by its reader; if not there, decompressed again
            taken = spool.take(span) if spool is not None else None
            moved = partial(board.add_worker, slot, WorkerField.SKIPPED)  # the supervisor sees this worker move
            data = taken if taken is not None else read_compressed_span(info.path, info.compression, span, moved)
        writer = spool.result_writer(span) if spool is not None else None
        on_flush = writer.write if writer is not None else None
        result = process_chunk_parts(data, file_start=span.start == 0, on_flush=on_flush)
        if (span.file, span.seq) == break_at:
            result_queue.break_mid_transfer()
            _failpoints.kill_self()
        if result.size < SPOOL_RESULT_BYTES and not (writer and writer.started):
            result_queue.put_direct(Result(span, result.joined()))
        elif writer is not None and (spooled := writer.finish(result)) is not None:
            result_queue.put_direct(Result(span, spooled))  # a few hundred bytes now
        else:  # the spool is full: through the queue, written while the next chunk is checked
            result_queue.put(Result(span, result.joined()))
        board.add_worker(slot, WorkerField.CHUNKS, 1)
        board.add_worker(slot, WorkerField.LINES, result.lines)
        board.add_worker(slot, WorkerField.BUSY_NS, time.perf_counter_ns() - started)
        ledger.sent(slot)
        trace.span(
            "check", took, _trace.now_ns(),
            file=info.name, seq=span.seq, lines=result.lines, rejects=len(result.rejects),
        )  # fmt: skip
    # Let the queue's feeder thread finish sending before the process ends.
    result_queue.close()
    result_queue.join_thread()
