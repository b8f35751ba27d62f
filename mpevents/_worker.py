"""Worker: N processes that check and encode chunks.

Talks to: the work queue (takes :class:`Chunk`), the input files (reads each
chunk's bytes), the result queue (puts one :class:`Result` per chunk) and its
slot on the scoreboard, where it records the chunk it holds before working
on it. If it dies, main reads that slot and
hands the chunk to its replacement. All the rules live in ``_spec.py``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from . import _failpoints
from ._board import Board, WorkerField, WorkerState
from ._config import InputFile
from ._messages import Chunk, Result
from ._reader import read_chunk
from ._spec import process_chunk

DIRECT_RESULT_BYTES: Final = 1 << 18
"""Results smaller than this are written to the result queue by the worker
itself; larger ones by its feeder thread, while it checks the next chunk."""


def work(
    slot: int,
    generation: int,
    files: Sequence[InputFile],
    work_queue: Any,
    result_queue: Any,
    board: Board,
    first: list[Chunk],
) -> None:
    """The worker process body: ``first`` (a dead predecessor's chunks), then
    chunks from the work queue until a ``None`` arrives; ``files[i]`` is file i."""
    kill_at = _failpoints.chunk_point("worker_kill") if generation == 0 else None
    kill_always = _failpoints.chunk_point("worker_kill_always")
    pending = list(first)
    while True:
        chunk: Chunk | None = pending.pop(0) if pending else work_queue.get()
        if chunk is None:
            break
        started = time.perf_counter_ns()
        board.hold(slot, chunk.file, chunk.seq, chunk.offset, chunk.end, chunk.flags)
        if (chunk.file, chunk.seq) in (kill_at, kill_always):
            _failpoints.kill_self()
        info = files[chunk.file]
        result = process_chunk(read_chunk(str(info.path), chunk, info.identity), file_start=chunk.offset == 0)
        board.set_worker(slot, WorkerField.STATE, WorkerState.SENDING)
        message = Result(chunk.file, chunk.seq, chunk.offset, chunk.end, chunk.flags, result)
        if sum(len(data) for _, data in result.groups.values()) < DIRECT_RESULT_BYTES:
            result_queue.put_direct(message)
        else:
            result_queue.put(message)
        board.add_worker(slot, WorkerField.CHUNKS, 1)
        board.add_worker(slot, WorkerField.LINES, result.lines)
        board.add_worker(slot, WorkerField.BUSY_NS, time.perf_counter_ns() - started)
        board.sent(slot)
    # Let the queue's feeder thread finish sending before the process ends.
    result_queue.close()
    result_queue.join_thread()
