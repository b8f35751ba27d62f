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

Failures: a task retries up to ``--max-retries`` times, and Dask recomputes
the tasks of a lost worker; results are pure functions of their range, so
the output is byte-identical to the local engine's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

from . import _failpoints
from ._board import Board, FileField, FileState, ReaderField
from ._collector import Collector
from ._config import Config, InputFile
from ._errors import Interrupted, RunError, UsageError
from ._messages import FLAG_LAST, Result
from ._reader import iter_chunks, line_start
from ._spec import ChunkResult, concat, process_chunk

INSTALL_HINT: Final = "pip install 'mpevents[dask]'"
TASK_CHUNKS: Final = 16
"""A task covers this many chunks of its file: large enough that scheduling
costs little per line, small enough to spread a file over many workers."""
TASKS_PER_WORKER: Final = 2
"""In flight per Dask worker: one running while the next is sent, as the
local engine's queues; more would only hold results in memory."""
TICK_S: Final = 0.1


def import_distributed() -> Any:
    """The ``distributed`` module, or a usage error naming the install command."""
    try:
        import distributed
    except ImportError:
        raise UsageError(f"--engine dask needs dask.distributed, which is not installed: {INSTALL_HINT}") from None
    return distributed


class Task(NamedTuple):
    file: int
    seq: int
    path: str
    start: int
    stop: int
    last: bool


def plan(files: Sequence[InputFile], task_bytes: int) -> list[Task]:
    """Cut every file into byte ranges, in input order; an empty file gets one."""
    tasks = []
    for info in files:
        count = max(1, -(-info.size // task_bytes))
        for seq in range(count):
            start, stop = seq * task_bytes, min(info.size, (seq + 1) * task_bytes)
            tasks.append(Task(info.index, seq, str(info.path), start, stop, seq == count - 1))
    return tasks


def process_range(path: str, start: int, stop: int, size: int, chunk_bytes: int) -> tuple[int, ChunkResult]:
    """The task: check and encode the lines that start in ``[start, stop)``.

    Returns where the range's lines end in the file, and their result.
    """
    _maybe_die(path, start)
    with open(path, "rb") as handle:
        first = line_start(handle, start)
        end = size if stop >= size else line_start(handle, stop)
        results = [
            process_chunk(piece.data, file_start=piece.offset == 0)
            for piece in iter_chunks(handle, chunk_bytes, first, end)
        ]
    return end, concat(results)


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


class DaskRun:
    """One run on a Dask cluster; the same face to the supervisor as Pipeline."""

    def __init__(self, config: Config, files: Sequence[InputFile], temp: Path, observer: Any = None) -> None:
        self.config = config
        self.observer = observer
        self.files = files
        self.temp = temp
        self.board = Board(len(files), 0)
        self.total_bytes = sum(info.size for info in files)
        self.started = time.monotonic()
        self.signal: int | None = None
        self.worker_restarts = self.reader_restarts = self.data_plane_restarts = 0
        self.tasks_done = 0
        self.tasks_total = 0
        self.in_flight = 0
        self.limit = 1
        self.dask_workers = 0
        self._files_taken = 0
        self._client: Any = None
        self._cluster: Any = None

    def run(self) -> dict[str, Any]:
        distributed = import_distributed()
        self._connect(distributed)
        try:
            return self._run(distributed, self.observer)
        finally:
            self.kill_all()

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

    def _run(self, distributed: Any, observer: Any) -> dict[str, Any]:
        config, client = self.config, self._client
        collector = Collector(self.files, self.temp, config.max_open_files, self.board, None)
        tasks = plan(self.files, TASK_CHUNKS * config.chunk_bytes)
        self.tasks_total = len(tasks)
        sizes = {info.index: info.size for info in self.files}
        waiting = iter(tasks)
        running: dict[Any, Task] = {}
        if observer is not None:
            observer.start(self)
        while True:
            if self.signal is not None:
                raise Interrupted(self.signal)
            self.dask_workers = len(client.scheduler_info().get("workers", {})) or 1
            self.limit = TASKS_PER_WORKER * self.dask_workers
            for task in waiting:
                future = client.submit(
                    process_range, task.path, task.start, task.stop, sizes[task.file], config.chunk_bytes,
                    retries=config.max_retries, pure=False,
                )  # fmt: skip
                running[future] = task
                self._files_taken = max(self._files_taken, task.file + 1)
                if self.board.file(task.file, FileField.STATE) == FileState.WAITING:
                    self.board.set_file(task.file, FileField.STATE, FileState.READING)
                if len(running) >= self.limit:
                    break
            self.in_flight = len(running)
            if not running:
                break
            try:
                done, _ = distributed.wait(list(running), timeout=TICK_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = []
            for future in done:
                task = running.pop(future)
                end, result = self._result(future, task)
                collector.add(Result(task.file, task.seq, task.start, end, FLAG_LAST if task.last else 0, result))
                read = max(end, self.board.file(task.file, FileField.BYTES_READ))  # tasks end out of order
                self.board.set_file(task.file, FileField.BYTES_READ, read)
                self.board.add_reader(0, ReaderField.BYTES, end - task.start)
                self.tasks_done += 1
            if observer is not None:
                observer.tick()
        collector.close()
        return collector.report()

    def _result(self, future: Any, task: Task) -> tuple[int, ChunkResult]:
        try:
            value: tuple[int, ChunkResult] = future.result()
        except Exception as exc:
            name = self.files[task.file].name
            raise RunError(
                f"the task for bytes {task.start}-{task.stop} of {name} failed: {type(exc).__name__}: {exc}"
            ) from exc
        return value

    def queue_depths(self) -> list[tuple[str, float]]:
        return [("in flight", self.in_flight / max(1, self.limit))]

    def files_taken(self) -> int:
        """Files with a task submitted; tasks are submitted in input order."""
        return self._files_taken

    def note(self) -> str:
        return (
            f"dask: {self.tasks_done}/{self.tasks_total} tasks done, {self.in_flight} in flight, "
            f"{self.dask_workers} Dask workers"
        )

    def kill_all(self) -> None:
        """Close the client, and the local cluster if this run made one."""
        for resource in (self._client, self._cluster):
            if resource is not None:
                try:
                    resource.close()
                except Exception:  # closing a broken cluster must not hide the real error
                    logging.getLogger("mpevents").debug("closing Dask failed", exc_info=True)
        self._client = self._cluster = None
