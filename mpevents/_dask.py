"""Dask engine: the worker stage as tasks on a dask.distributed cluster.

Talks to: a Dask scheduler (``--scheduler tcp://HOST:8786``, or a
``LocalCluster`` of ``--worker-number`` processes), the collector (the same
:class:`Collector` as the local engine, run here in the client process), and
the scoreboard, for the dashboard.

    input files --(byte ranges)--> [Dask worker: process_range] --> client: Collector --> output

A task is a byte range of one file; it owns the lines that *start* inside the
range, reads them itself (so the input must be visible to the Dask workers:
the same machine or a shared filesystem), and runs the very same
:func:`process_chunk` as the local workers. It returns per-group NDJSON, the
rejects with line numbers relative to its range, and its counts. The
collector makes the numbers absolute and writes results in order as they
arrive, with at most ``TASKS_PER_WORKER`` tasks per Dask worker in flight.

Failures: a failed task is submitted again, charged to the run's retry
budget like a local span (``--max-retries``), and Dask recomputes the tasks
of a lost worker (counted as a worker restart); results are pure functions of
their range, so the output is byte-identical to the local engine's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from . import _failpoints
from ._board import Board, CollectorField, FileField, FileState, ReaderField
from ._collector import Collector
from ._compression import Decompressed
from ._config import Config, InputFile
from ._engine import Restarts, RetryBudget
from ._errors import UsageError
from ._framing import Flag, Span, frames, line_start, read_chunk, stream_frames
from ._ledger import Ledger
from ._messages import Report, Result
from ._spec import ChunkResult, concat, process_chunk

INSTALL_HINT: Final = "pip install 'mpevents[dask]'"
TASK_CHUNKS: Final = 16
"""A task covers this many chunks of its file: large enough that scheduling
costs little per line, small enough to spread a file over many workers."""
TASKS_PER_WORKER: Final = 2
"""In flight per Dask worker: one running while the next is sent, as the
local engine's queues; more would only hold results in memory."""


def import_distributed() -> Any:
    """The ``distributed`` module, or a usage error naming the install command."""
    try:
        import distributed
    except ImportError:
        raise UsageError(f"--engine dask needs dask.distributed, which is not installed: {INSTALL_HINT}") from None
    return distributed


def plan(files: Sequence[InputFile], task_bytes: int) -> list[Span]:
    """Cut every file into byte ranges, in input order; an empty file gets one.

    A task's span is a raw byte range, not yet on line boundaries: its lines
    are those that start in it (:func:`process_range`). A compressed file is
    one task: it can only be read from its start.
    """
    tasks = []
    for info in files:
        count = 1 if info.compression else max(1, -(-info.size // task_bytes))
        for seq in range(count):
            start, stop = seq * task_bytes, min(info.size, (seq + 1) * task_bytes)
            tasks.append(Span(info.index, seq, start, stop, Flag.LAST if seq == count - 1 else Flag.NONE))
    return tasks


def process_range(info: InputFile, task: Span, chunk_bytes: int) -> tuple[int, ChunkResult, int]:
    """The task: check and encode the lines that start in the task's byte range.

    Returns where the range's lines end in the file, their result, and the
    nanoseconds it took (for the summary's stages).
    """
    started = time.perf_counter_ns()
    _maybe_die(info.path, task.start)
    if info.compression is not None:
        with Decompressed(info.path, info.compression, info.identity, info.size) as stream:
            results = [
                process_chunk(data, file_start=span.start == 0)
                for span, data in stream_frames(stream, info.index, chunk_bytes)
            ]
            return stream.position, concat(results), time.perf_counter_ns() - started
    size = info.size
    with open(info.path, "rb") as handle:
        first = line_start(handle, task.start)
        end = size if task.end >= size else line_start(handle, task.end)
        results = [
            process_chunk(read_chunk(info.path, span, info.identity), file_start=span.start == 0)
            for span in frames(handle, info.index, size, chunk_bytes, first, stop=end)
        ]
    return end, concat(results), time.perf_counter_ns() - started


def _maybe_die(path: str, start: int) -> None:
    """Failpoint ``dask_task_kill=NAME:START:MARKER``: the first task on that
    range (the one that creates MARKER) kills its Dask worker process."""
    value = _failpoints.POINTS.get("dask_task_kill")
    if value is None:
        return
    name, offset, marker = value.split(":", 2)
    if Path(path).name == name and int(offset) == start:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        _failpoints.kill_self()


class DaskEngine:
    """The Dask engine; see the module docstring and ``_engine.Engine``."""

    def __init__(self, config: Config, files: Sequence[InputFile], temp: Path, budget: RetryBudget) -> None:
        self.config = config
        self.files = files
        self.temp = temp
        self.budget = budget
        self.board = Board(len(files), 0)
        self.restarts = Restarts()
        self.total_bytes = sum(info.size for info in files)
        self.started = time.monotonic()
        self.tasks_done = 0
        self.tasks_total = 0
        self.limit = 1
        self.dask_workers = 0
        self._task_ns = 0
        self._seen_workers: set[str] = set()
        self._files_taken = 0
        self._client: Any = None
        self._cluster: Any = None
        self._distributed: Any = None
        self._collector: Collector | None = None
        self._waiting: list[Span] = []  # in reverse input order: the next task is popped from the end
        self._running: dict[Any, Span] = {}

    # --- the engine interface ------------------------------------------------

    def start(self) -> None:
        self._distributed = import_distributed()
        self._connect(self._distributed)
        self._collector = Collector(
            self.files, self.temp, self.config.max_open_files, self.board, Ledger(len(self.files), 0)
        )
        tasks = plan(self.files, TASK_CHUNKS * self.config.chunk_bytes)
        self.tasks_total = len(tasks)
        self._waiting = tasks[::-1]

    def poll(self, timeout: float) -> Report | None:
        assert self._collector is not None
        self._watch_workers()
        self._submit()
        if not self._running:
            self._collector.close()
            return self._collector.report()
        try:
            done, _ = self._distributed.wait(list(self._running), timeout=timeout, return_when="FIRST_COMPLETED")
        except TimeoutError:
            done = []
        for future in done:
            task = self._running.pop(future)
            outcome = self._outcome(future, task)
            if outcome is None:  # failed, and charged: submit it again
                self._waiting.append(task)
                continue
            end, result, busy_ns = outcome
            started = time.perf_counter_ns()
            self._collector.add(Result(task._replace(end=end), result))
            board = self.board
            board.set_collector(
                CollectorField.BUSY_NS, board.collector(CollectorField.BUSY_NS) + time.perf_counter_ns() - started
            )
            board.set_file(task.file, FileField.BYTES_READ, max(end, board.file(task.file, FileField.BYTES_READ)))
            board.add_reader(0, ReaderField.BYTES, end - task.start)
            self._task_ns += busy_ns
            self.tasks_done += 1
        return None

    def stop(self) -> None:
        """Close the client, and the local cluster if this run made one."""
        for resource in (self._client, self._cluster):
            if resource is not None:
                try:
                    resource.close()
                except Exception:  # closing a broken cluster must not hide the real error
                    logging.getLogger("mpevents").debug("closing Dask failed", exc_info=True)
        self._client = self._cluster = None
        if self._collector is not None:
            self._collector.close()

    def busy(self) -> tuple[float, float]:
        return self._task_ns / max(1, self.dask_workers) / 1e9, self.board.collector(CollectorField.BUSY_NS) / 1e9

    # --- the cluster ----------------------------------------------------------

    def _connect(self, distributed: Any) -> None:
        config = self.config
        # Dask logs every connection at INFO; show only its errors unless debugging.
        if logging.getLogger("mpevents").getEffectiveLevel() > logging.DEBUG:
            for name in ("distributed", "dask"):
                logging.getLogger(name).setLevel(logging.ERROR)
        try:
            if config.scheduler:
                self._client = distributed.Client(config.scheduler, timeout="10s")
            else:
                self._cluster = distributed.LocalCluster(
                    n_workers=config.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self._client = distributed.Client(self._cluster)
        except OSError as exc:
            raise UsageError(f"cannot reach the Dask scheduler {config.scheduler}: {exc}") from exc

    def _watch_workers(self) -> None:
        """Count the Dask workers, and those lost since the last look as restarts."""
        workers = set(self._client.scheduler_info().get("workers", {}))
        self.restarts.workers += len(self._seen_workers - workers)
        self._seen_workers = workers
        self.dask_workers = len(workers) or 1
        self.limit = TASKS_PER_WORKER * self.dask_workers

    def _submit(self) -> None:
        """Submit tasks, in input order, until ``limit`` are in flight."""
        while self._waiting and len(self._running) < self.limit:
            task = self._waiting.pop()
            info = self.files[task.file]
            future = self._client.submit(process_range, info, task, self.config.chunk_bytes, retries=0, pure=False)
            self._running[future] = task
            self._files_taken = max(self._files_taken, task.file + 1)
            if self.board.file(task.file, FileField.STATE) == FileState.WAITING:
                self.board.set_file(task.file, FileField.STATE, FileState.READING)

    def _outcome(self, future: Any, task: Span) -> tuple[int, ChunkResult, int] | None:
        """A task's value, or None when it failed and may be tried again."""
        try:
            value: tuple[int, ChunkResult, int] = future.result()
        except Exception as exc:
            name = self.files[task.file].name
            what = f"the task for bytes {task.start}-{task.end} of {name}"
            why = f"{type(exc).__name__}: {exc}"
            self.budget.charge(("task", task.file, task.seq), what + " failed {times} times: " + why)
            logging.getLogger("mpevents").warning("%s failed (%s); trying it again", what, exc)
            return None
        return value

    # --- for the dashboard ------------------------------------------------------

    def queue_depths(self) -> list[tuple[str, float]]:
        return [("in flight", len(self._running) / max(1, self.limit))]

    def files_taken(self) -> int:
        """Files with a task submitted; tasks are submitted in input order."""
        return self._files_taken

    def note(self) -> str:
        return (
            f"dask: {self.tasks_done}/{self.tasks_total} tasks done, {len(self._running)} in flight, "
            f"{self.dask_workers} Dask workers"
        )
