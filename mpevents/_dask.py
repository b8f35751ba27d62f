"""Dask engine: the worker stage as tasks on a dask.distributed cluster.

Talks to: a Dask scheduler (``--scheduler tcp://HOST:8786``, or a
``LocalCluster`` of ``--worker-number`` processes), the collector (the same
:class:`Collector` as the local engine, run here in the client process), and
the scoreboard, for the dashboard.

    input files or URLs --(byte ranges)--> [Dask worker: process_range] --> part files
                                                   | counts, rejects, where the parts are
                                                   v
                                client: Collector --(copy_file_range, in order)--> group files

A task is a byte range of one file; it owns the lines that *start* inside the
range, reads them itself (a local file, which the Dask workers must see at
the same path, or any fsspec URL: ``_sources``), and runs the very same
:func:`process_chunk` as the local workers. It writes its records, per
group, into part files in a directory of its own under the staging
directory (which the Dask workers must be able to write), and returns only
its counts, its rejects (line numbers relative to its range) and where its
parts are. The client's collector puts results in input order, makes the
reject line numbers absolute, and appends each part to its group file with
``os.copy_file_range``: a reflink on XFS or btrfs, a server-side copy on NFS
4.2, an in-kernel copy elsewhere, so that the records never pass through the
client's memory. At most ``TASKS_PER_WORKER`` tasks per Dask worker are in
flight. A task attempt that fails or whose worker is lost leaves its parts
in its own directory, which nothing refers to; they go with the staging
area before the commit.

Failures: a failed task is submitted again, charged to the run's retry
budget like a local span (``--max-retries``), and Dask recomputes the tasks
of a lost worker (counted as a worker restart); results are pure functions of
their range, so the output is byte-identical to the local engine's.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NamedTuple

from . import _failpoints, _trace
from ._board import Board, CollectorField, FileField, FileState, ReaderField
from ._child import keep_freed_memory
from ._collector import Collector, GroupFiles, group_file_name
from ._compression import Decompressed
from ._config import Config, InputFile
from ._engine import Restarts, RetryBudget
from ._errors import UsageError
from ._framing import Flag, Span, frames, line_start, read_chunk, read_span, stream_frames
from ._ledger import Ledger
from ._messages import Part, PartsResult, Report, Result
from ._sources import open_url, reader_of
from ._spec import ChunkResult, Reject, process_chunk

INSTALL_HINT: Final = "pip install 'mpevents[dask]'"
TASK_CHUNKS: Final = 8
"""A task covers at least this many chunks of its file (8 MiB, about 200,000
lines): enough that scheduling costs little per line."""
MAX_TASK_CHUNKS: Final = 64
"""And at most this many: a task's parts and results stay small."""
TASKS_PER_WORKER_IN_RUN: Final = 8
"""Within those bounds, tasks are sized so that each Dask worker gets about
this many: enough that the last ones leave little idle time at the end, few
enough that the client's cost per task (about 9 ms of its CPU, measured)
stays small beside the work."""
DASK_TRACKS: Final = 1 << 30
"""The first track id of Dask workers in a trace, above any process id."""
WATCH_S: Final = 1.0
"""How often the client asks the scheduler for its workers: each look is a
round trip, and ten a second cost the client more CPU than its results."""
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


def task_bytes(total_bytes: int, workers: int, chunk_bytes: int) -> int:
    """How many bytes of input one task takes, for ``workers`` Dask workers."""
    wanted = total_bytes // max(1, workers * TASKS_PER_WORKER_IN_RUN)
    chunks = min(MAX_TASK_CHUNKS, max(TASK_CHUNKS, -(-wanted // chunk_bytes)))
    return chunks * chunk_bytes


def plan(files: Sequence[InputFile], task_bytes: int) -> list[Span]:
    """Cut every file's lines (up to ``InputFile.end``) into byte ranges, in
    input order; an empty file gets one.

    A task's span is a raw byte range, not yet on line boundaries: its lines
    are those that start in it (:func:`process_range`). A compressed file is
    one task: it can only be read from its start.
    """
    tasks = []
    for info in files:
        count = 1 if info.compression else max(1, -(-info.end // task_bytes))
        for seq in range(count):
            start, stop = seq * task_bytes, min(info.end, (seq + 1) * task_bytes)
            tasks.append(Span(info.index, seq, start, stop, Flag.LAST if seq == count - 1 else Flag.NONE))
    return tasks


PARTS_DIR: Final = ".parts"
"""Where tasks write their parts, inside the staging directory (removed before the commit)."""
PLACE_BATCH_BYTES: Final = 256 << 20
"""Parts of one group handed to one place_parts task: four tasks per GB of output,
each costing the client as much as a checking task."""
PART_FILES_OPEN: Final = 64
"""Part files a task keeps open at once (least recently used closed first)."""


class TaskOutcome(NamedTuple):
    end: int
    """Where the task's lines end in its file (decompressed, for a compressed file)."""
    result: PartsResult
    busy_ns: int
    started_ns: int
    """When it started, by its machine's wall clock (time.time_ns), for --trace."""
    where: str
    """Its Dask worker: host and process id."""


def process_range(info: InputFile, task: Span, chunk_bytes: int, parts_root: str) -> TaskOutcome:
    """The task: check and encode the lines that start in the task's byte
    range, and write their records into part files of its own under ``parts_root``."""
    started, started_wall = time.perf_counter_ns(), time.time_ns()
    _maybe_die(info.path, task.start)
    _settle_in()
    parts = _Parts(Path(parts_root) / f"{task.file}-{task.seq}-{uuid.uuid4().hex}")
    try:
        if info.compression is not None:
            raw = open_url(info.path, info.tag) if info.tag is not None else None
            with Decompressed(info.path, info.compression, info.identity, info.size, raw) as stream:
                for span, data in stream_frames(stream, info.index, chunk_bytes):
                    parts.add(process_chunk(data, file_start=span.start == 0))
                end = stream.position
        else:
            handle = open_url(info.path, info.tag) if info.tag is not None else open(info.path, "rb")  # noqa: SIM115
            with handle:
                # Never past where the file's lines ended when it was listed
                # (``_live``): a line_start beyond it is in bytes written since.
                first = min(info.end, line_start(handle, task.start))
                end = info.end if task.end >= info.end else min(info.end, line_start(handle, task.end))
                for span in frames(handle, info.index, info.end, chunk_bytes, first, stop=end):
                    if info.tag is None:
                        data = read_chunk(info.path, span, info.identity)
                    else:
                        data = read_span(reader_of(handle), span, info.path)
                    parts.add(process_chunk(data, file_start=span.start == 0))
    finally:
        parts.close()
    where = f"{socket.gethostname()}:{os.getpid()}"
    return TaskOutcome(end, parts.result(), time.perf_counter_ns() - started, started_wall, where)


@functools.cache
def _settle_in() -> None:
    """Once per Dask worker process: have malloc keep freed memory, as the
    local children do. Dask's nanny starts workers with
    ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's mmap threshold
    at 128 KiB, so every chunk's buffers were mapped and faulted in afresh:
    71,000 page faults per 8 MiB task instead of 11,000, and 1.4 times its
    CPU (measured)."""
    keep_freed_memory()


class _Parts:
    """A task's output: its records appended to a part file per group, its
    rejects numbered from the task's first line."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True)
        self.directory = directory
        self._files = GroupFiles(directory, PART_FILES_OPEN)
        self._groups: dict[bytes, list[int]] = {}  # records, bytes
        self._rejects: list[Reject] = []
        self._lines = self._blank = 0

    def add(self, result: ChunkResult) -> None:
        for group, (count, data) in result.groups.items():
            self._files.write(group, data)
            totals = self._groups.setdefault(group, [0, 0])
            totals[0] += count
            totals[1] += len(data)
        lines = self._lines
        self._rejects.extend(reject._replace(line=reject.line + lines) for reject in result.rejects)
        self._lines += result.lines
        self._blank += result.blank

    def close(self) -> None:
        self._files.close()

    def result(self) -> PartsResult:
        groups = {
            group: (count, Part(str(self.directory / group_file_name(group)), size))
            for group, (count, size) in self._groups.items()
        }
        return PartsResult(self._lines, self._blank, groups, self._rejects)


class PartFiles:
    """The client's side of the group files: where each part goes, not its bytes.

    A group file is its tasks' parts one after another, so as results come in
    input order the client knows each part's offset in its group file. It
    hands batches of (offset, part) to :func:`place_parts` tasks, which the
    Dask workers run: the bytes never pass through the client, which only
    keeps the books, and batches of one file may be placed in any order, at
    once, since each writes its own range.
    """

    def __init__(self, directory: Path, place: Callable[[str, list[tuple[int, Part]]], None]) -> None:
        self.directory = directory
        self._place = place
        self._sizes: dict[bytes, int] = {}
        self._batches: dict[bytes, list[tuple[int, Part]]] = {}
        self._batch_bytes: dict[bytes, int] = {}

    def write(self, group: bytes, part: Part) -> None:
        offset = self._sizes.get(group, 0)
        self._sizes[group] = offset + part.size
        self._batches.setdefault(group, []).append((offset, part))
        self._batch_bytes[group] = self._batch_bytes.get(group, 0) + part.size
        if self._batch_bytes[group] >= PLACE_BATCH_BYTES:
            self._send(group)

    def _send(self, group: bytes) -> None:
        self._place(str(self.directory / group_file_name(group)), self._batches.pop(group))
        self._batch_bytes[group] = 0

    def flush(self, groups: set[bytes]) -> dict[bytes, int]:
        return {group: self._sizes[group] for group in groups}

    def close(self) -> None:
        """Send what is left of every batch."""
        for group in list(self._batches):
            self._send(group)


def place_parts(target: str, batch: list[tuple[int, Part]]) -> int:
    """The task that writes parts into a group file at their offsets, with
    ``os.copy_file_range`` (a reflink on XFS or btrfs, a server-side copy on
    NFS 4.2, an in-kernel copy elsewhere), then removes them: freeing a GB of
    parts costs a tenth of a second of CPU, which the client should not pay.
    Returns the bytes placed.

    Done again (its Dask worker lost after it ran), it writes the same bytes
    to the same places. Parts are removed only once all are placed, in batch
    order, so the parts a second run finds missing are a first run's, already
    placed: they must be the batch's first ones, else it fails.
    """
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o644)
    placed = 0
    try:
        for index, (offset, part) in enumerate(batch):
            try:
                source = open(part.path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                if any(os.path.exists(earlier.path) for _, earlier in batch[:index]):
                    raise
                continue  # placed and removed by an earlier run of this batch
            with source:
                _copy(source.fileno(), fd, part.size, offset, part.path)
            placed += part.size
    finally:
        os.close(fd)
    for _, part in batch:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part.path)
    return placed


_NO_COPY_RANGE: Final = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF)


def _copy(source: int, target: int, size: int, offset: int, name: str) -> None:
    """Copy ``size`` bytes of ``source`` into ``target`` at ``offset``."""
    done = 0
    try:
        while done < size:
            copied = os.copy_file_range(source, target, size - done, done, offset + done)
            if copied == 0:
                raise OSError(errno.EIO, "a task's part is shorter than it said", name)
            done += copied
    except OSError as exc:
        if exc.errno not in _NO_COPY_RANGE:
            raise
        while done < size:
            block = os.pread(source, min(size - done, 1 << 20), done)
            if not block:
                raise OSError(errno.EIO, "a task's part is shorter than it said", name) from exc
            os.pwrite(target, block, offset + done)
            done += len(block)


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
        self._parts = temp / PARTS_DIR
        self._waiting: list[Span] = []  # in reverse input order: the next task is popped from the end
        self._running: dict[Any, Span] = {}
        self._placing: dict[Any, tuple[str, list[tuple[int, Part]]]] = {}  # place_parts tasks
        self._all_added = False
        self._watched_at = -WATCH_S
        self._tracks: dict[str, int] = {}  # a --trace track for each Dask worker seen
        self._clock_offset_ns = _trace.now_ns() - time.time_ns()

    # --- the engine interface ------------------------------------------------

    def start(self) -> None:
        self._distributed = import_distributed()
        self._connect(self._distributed)
        self._parts.mkdir(exist_ok=True)
        ledger = Ledger(len(self.files), 0)  # only orders the output: nothing runs ahead
        sink = PartFiles(self.temp, self._place)
        self._collector = Collector(self.files, self.temp, self.config.max_open_files, self.board, ledger, groups=sink)
        self._watch_workers(now=True)
        tasks = plan(self.files, task_bytes(self.total_bytes, self.dask_workers, self.config.chunk_bytes))
        self.tasks_total = len(tasks)
        self._waiting = tasks[::-1]

    def poll(self, timeout: float) -> Report | None:
        assert self._collector is not None
        self._watch_workers()
        self._submit()
        if not self._running and not self._all_added:
            self._all_added = True
            self._collector.close()  # the last batches of parts go out
        if self._all_added and not self._placing:
            self._watch_workers(now=True)  # a last look, for the summary's restarts
            shutil.rmtree(self._parts)  # the parts, and what failed attempts left
            return self._collector.report()
        try:
            done, _ = self._distributed.wait(
                [*self._running, *self._placing], timeout=timeout, return_when="FIRST_COMPLETED"
            )
        except TimeoutError:
            done = []
        # One round trip for every finished task's value, not one each.
        finished = [future for future in done if future in self._running and future.status == "finished"]
        values = dict(zip(finished, self._client.gather(finished), strict=True)) if finished else {}
        for future in done:
            if future in self._placing:
                self._placed(future)
                continue
            task = self._running.pop(future)
            outcome = values.get(future) or self._outcome(future, task)
            if outcome is None:  # failed, and charged: submit it again
                self._waiting.append(task)
                continue
            end, result, busy_ns = outcome[:3]
            self._trace_task(task, outcome)
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

    def _watch_workers(self, now: bool = False) -> None:
        """Count the Dask workers, and those lost since the last look as
        restarts; at most once every WATCH_S (it asks the scheduler) unless ``now``."""
        at = time.monotonic()
        if at - self._watched_at < WATCH_S and not now:
            return
        self._watched_at = at
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
            future = self._client.submit(
                process_range, info, task, self.config.chunk_bytes, str(self._parts), retries=0, pure=False
            )
            self._running[future] = task
            self._files_taken = max(self._files_taken, task.file + 1)
            if self.board.file(task.file, FileField.STATE) == FileState.WAITING:
                self.board.set_file(task.file, FileField.STATE, FileState.READING)

    def _trace_task(self, task: Span, outcome: TaskOutcome) -> None:
        """The task as a span on its Dask worker's track, placed on this process's clock."""
        trace = _trace.tracer()
        if not isinstance(trace, _trace.Tracer):
            return
        track = self._tracks.get(outcome.where)
        if track is None:
            track = self._tracks[outcome.where] = DASK_TRACKS + len(self._tracks)
            trace.track(track, f"dask worker {outcome.where}")
        started = outcome.started_ns + self._clock_offset_ns
        name = self.files[task.file].name
        trace.span("task", started, started + outcome.busy_ns, pid=track, file=name, start=task.start, end=outcome.end)

    def _place(self, target: str, batch: list[tuple[int, Part]]) -> None:
        future = self._client.submit(place_parts, target, batch, retries=0, pure=False)
        self._placing[future] = (target, batch)

    def _placed(self, future: Any) -> None:
        target, batch = self._placing.pop(future)
        if future.status == "finished":  # its value, the bytes placed, is not needed
            return
        try:
            future.result()
        except Exception as exc:
            what = f"placing {len(batch)} parts into {Path(target).name}"
            self.budget.charge(("place", target, batch[0][0]), what + " failed {times} times: " + str(exc))
            logging.getLogger("mpevents").warning("%s failed (%s); trying it again", what, exc)
            self._place(target, batch)

    def _outcome(self, future: Any, task: Span) -> TaskOutcome | None:
        """A task's value, or None when it failed and may be tried again."""
        try:
            value: TaskOutcome = future.result()
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
