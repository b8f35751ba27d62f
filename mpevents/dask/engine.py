"""Dask engine: the client that runs the worker stage as tasks on a dask.distributed cluster.

Owns the plan (the byte ranges, one task each), the submitting and watching
of tasks, their failures, and where each task's records go in the group
files (:class:`PartFiles`). Talks to: a Dask scheduler (``--scheduler
tcp://HOST:8786``, or a ``LocalCluster`` of ``--worker-number``
processes); the tasks it submits, which run on the Dask workers
(``dask.tasks``: :func:`~mpevents.dask.tasks.process_range` and
:func:`~mpevents.dask.tasks.place_parts`); the collector core
(``output.collector``, the same as the local engine's, run here in the
client with a :class:`PartFiles` sink); and the scoreboard, for the dashboard.

    input files or URLs --(byte ranges)--> [Dask worker: process_range] --> a part file per task
                                                   | counts, rejects, bytes per group
                                                   v
                     client: Collector (input order) --(part file, offsets)--> [Dask worker: place_parts]
                                                                                  --(copy_file_range)--> group files

A task is a byte range of one file; it owns the lines that *start* inside the
range, reads them itself (a local file, which the Dask workers must see at
the same path, or any fsspec URL: ``core.sources``), and runs the very same
:func:`process_chunk` as the local workers. It writes its records, group by
group, into one part file of its own under the staging directory (which the
Dask workers must be able to write), and returns only its counts, its
rejects (line numbers relative to its range) and the bytes of each group.
The client's collector puts results in input order and makes the reject
line numbers absolute; from the sizes it knows where each task's records go
in each group file, and hands the part file and those offsets to a
``place_parts`` task, which writes them there (``os.copy_file_range``: a
reflink on XFS or btrfs, a server-side copy on NFS 4.2, an in-kernel copy
elsewhere). The records never pass through the client, and it submits two
tasks per byte range whatever the number of groups. At most
``TASKS_PER_WORKER`` range tasks per Dask worker are in flight. A task
attempt that fails or whose worker is lost leaves its part file, which
nothing refers to; it goes with the staging area before the commit.

Failures: a failed task is submitted again, charged to the run's retry
budget like a local span (``--max-retries``), and Dask recomputes the tasks
of a lost worker (counted as a worker restart); results are pure functions of
their range, so the output is byte-identical to the local engine's. A
placing is charged and submitted again in the same way, and one run again
writes the same bytes to the same places. Futures that Dask cancels (the
client lost its scheduler) end the run, with one line that says so.
"""

from __future__ import annotations

import logging
import shutil
import time
from array import array
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any, Final

from mpevents._config import Config
from mpevents._engine import Restarts, RetryBudget
from mpevents.core.errors import RunError, UsageError
from mpevents.core.framing import Flag, Span
from mpevents.core.inputs import InputFile
from mpevents.dask.tasks import PartsResult, TaskOutcome, place_parts, process_range
from mpevents.observe import trace as _trace
from mpevents.observe.board import Board, CollectorField, FileField, FileState, ReaderField
from mpevents.output.collector import Collector
from mpevents.output.names import PARTS_DIR
from mpevents.output.parts import PartRef
from mpevents.output.report import Report

log = logging.getLogger("mpevents")

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


CANCELLED_BECAUSE: Final = {
    "scheduler-connection-lost": "the client lost its scheduler",
    "scheduler-restart": "the scheduler restarted",
    "lost dependencies": "the scheduler lost what they depended on",
}
"""Dask's reasons for cancelling futures, in words."""


def cancelled(exc: CancelledError) -> str:
    """What an error about futures Dask cancelled says, in one line: how many, and why.

    Dask's own message names every future, one line each (180 KB for 3,889 of them).
    """
    groups = getattr(exc, "error_groups", None)  # FuturesCancelledError: several, by reason
    if groups:
        count, reason = sum(len(group.errors) for group in groups), groups[0].reason
    else:  # FutureCancelledError: one (or a bare CancelledError)
        count, reason = 1, getattr(exc, "reason", None)
    why = CANCELLED_BECAUSE.get(reason, f"Dask gives the reason {reason!r}" if reason else "Dask gives no reason")
    return f"{count:,} Dask future{'s' if count != 1 else ''} cancelled: {why}"


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


class PartFiles:
    """The Dask client's sink (``output.sink.Sink``): where each task's records go, not their bytes.

    A group file is its tasks' records one after another, so as results come
    in input order the client knows where each task's records go in each
    group file, from the sizes the task reported. It hands a task's part file
    and those offsets to a :func:`place_parts` task, which a Dask worker runs:
    the bytes never pass through the client, which only keeps the books, and
    the part files of different tasks may be placed in any order, at once,
    since each writes its own ranges. One placing per task, whatever the
    number of groups: the client's cost and memory grow with the tasks and
    the groups, never with their product (4,922 groups with a placing each
    cost the client 4.4 GB and its connection to the scheduler).
    """

    def __init__(self, place: Callable[[str, array[int]], None]) -> None:
        self._place = place
        self._sizes: dict[bytes, int] = {}

    def write(self, span: Span, payload: PartsResult) -> None:
        """Have ``span``'s part file placed after what was placed before."""
        if not payload.groups:
            return
        sizes = self._sizes
        offsets = array("q")
        for group, (_, size) in payload.groups.items():
            at = sizes.get(group, 0)
            offsets.append(at)
            sizes[group] = at + size
        self._place(payload.path, offsets)

    def drop(self, span: Span, payload: PartsResult) -> None:
        """Nothing: a task's result is taken once (a failed attempt gives none),
        and a part file nothing refers to goes with the staging directory."""

    def flush(self, groups: Iterable[bytes]) -> dict[bytes, int]:
        """The sizes ``groups``' files will have once the placings handed on so
        far are done. (The Dask engine journals nothing: --resume is refused.)"""
        return {group: self._sizes.get(group, 0) for group in groups}

    def durable(self) -> tuple[list[str], list[PartRef]]:
        return [], []  # no --resume with Dask: nothing is journaled

    def close(self) -> None:
        """Nothing: the group files are the placing tasks'."""


class DaskEngine:
    """The Dask engine; see the module docstring and ``_engine.Engine``."""

    def __init__(self, config: Config, files: Sequence[InputFile], temp: Path, budget: RetryBudget) -> None:
        self.config = config
        self.files = files
        self.temp = temp
        self.budget = budget
        self.board = Board(len(files), 0, reasons=config.schema.reasons())
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
        self._collector: Collector[PartsResult] | None = None
        self._parts = temp / PARTS_DIR
        self._waiting: list[Span] = []  # in reverse input order: the next task is popped from the end
        self._running: dict[Any, Span] = {}
        self._placing: dict[Any, tuple[str, array[int]]] = {}  # place_parts tasks: part file, offsets
        self._all_added = False
        self._watched_at = -WATCH_S
        self._tracks: dict[str, int] = {}  # a --trace track for each Dask worker seen
        self._clock_offset_ns = _trace.now_ns() - time.time_ns()

    # --- the engine interface ------------------------------------------------

    def start(self) -> None:
        self._distributed = import_distributed()
        self._connect(self._distributed)
        self._parts.mkdir(exist_ok=True)
        self._collector = Collector(self.files, self.temp, PartFiles(self._place), self.board)
        self._watch_workers(now=True)
        tasks = plan(self.files, task_bytes(self.total_bytes, self.dask_workers, self.config.chunk_bytes))
        self.tasks_total = len(tasks)
        self._waiting = tasks[::-1]

    def poll(self, timeout: float) -> Report | None:
        try:
            return self._poll(timeout)
        except CancelledError as exc:  # not a task's failure: trying again would not help
            raise RunError(cancelled(exc)) from exc

    def _poll(self, timeout: float) -> Report | None:
        assert self._collector is not None
        self._watch_workers()
        self._submit()
        if not self._running and not self._all_added:
            self._all_added = True
            assert self._collector.done  # so every part file is being placed
            self._collector.close()
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
            self._collector.add(task._replace(end=end), result)
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
        """Close the collector's files, the client, and the local cluster if
        this run made one. After a failure this runs in the run's ``finally``:
        an error of its own would hide the run's, and its exit code."""
        for resource in (self._collector, self._client, self._cluster):
            if resource is not None:
                try:
                    resource.close()
                except Exception:
                    log.debug("closing %s failed", type(resource).__name__, exc_info=True)
        self._client = self._cluster = None

    def busy(self) -> tuple[float, float]:
        return self._task_ns / max(1, self.dask_workers) / 1e9, self.board.collector(CollectorField.BUSY_NS) / 1e9

    # --- the cluster ----------------------------------------------------------

    def _connect(self, distributed: Any) -> None:
        config = self.config
        # Dask logs every connection at INFO, and what goes wrong as tracebacks
        # over dozens of lines, wrapped: a run's errors are one line each
        # (the engine's and the run's own), and --debug shows Dask's too.
        shown = logging.WARNING  # Dask's own default
        if not config.debug and log.getEffectiveLevel() > logging.DEBUG:
            shown = logging.CRITICAL + 1
            for name in ("distributed", "dask"):
                logging.getLogger(name).setLevel(shown)
        try:
            if config.scheduler:
                self._client = distributed.Client(config.scheduler, timeout="10s")
            else:
                self._cluster = distributed.LocalCluster(
                    n_workers=config.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    # No dashboard, but the scheduler's HTTP server still
                    # starts, by default on 8787, with a warning when another
                    # cluster has it: any free port on this host instead.
                    scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                    silence_logs=shown,
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
                process_range,
                info,
                task,
                self.config.chunk_bytes,
                str(self._parts),
                self.config.schema,
                retries=0,
                pure=False,
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

    def _place(self, part: str, offsets: array[int]) -> None:
        future = self._client.submit(place_parts, part, str(self.temp), offsets, retries=0, pure=False)
        self._placing[future] = (part, offsets)

    def _placed(self, future: Any) -> None:
        part, offsets = self._placing.pop(future)
        if future.status == "finished":  # its value, the bytes placed, is not needed
            return
        try:
            future.result()
        except CancelledError:
            raise
        except Exception as exc:
            what = f"placing the records of task {Path(part).name} ({len(offsets)} groups)"
            why = f"{type(exc).__name__}: {exc}"
            self.budget.charge(("place", part), what + " failed {times} times: " + why)
            log.warning("%s failed (%s); trying it again", what, exc)
            self._place(part, offsets)

    def _outcome(self, future: Any, task: Span) -> TaskOutcome | None:
        """A task's value, or None when it failed and may be tried again."""
        try:
            value: TaskOutcome = future.result()
        except CancelledError:
            raise
        except Exception as exc:
            name = self.files[task.file].name
            what = f"the task for bytes {task.start}-{task.end} of {name}"
            why = f"{type(exc).__name__}: {exc}"
            self.budget.charge(("task", task.file, task.seq), what + " failed {times} times: " + why)
            log.warning("%s failed (%s); trying it again", what, exc)
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
