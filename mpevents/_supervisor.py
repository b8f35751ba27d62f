"""Supervisor: the main process's side of a run.

Owns the processes and the queues: starts ``--readers`` readers (each takes
one input file after another), the workers and the collector, then waits on
all their sentinels at once (``multiprocessing.connection.wait``), so a
child's death is seen at once, never through a timeout on a queue. On a death
it decides:

* a reader crashed: start a replacement that first reads again every file the
  dead one had taken and the collector has not finished, each from its first
  chunk not yet written (chunks already sent are dropped by the collector as
  duplicates), then takes new files like the others;
* a worker crashed: start a replacement and hand it the chunks the dead one
  held, as recorded on the scoreboard; a chunk that has killed
  ``--max-retries`` workers fails the run;
* the collector died, or a child reported an error: fail the run;
* SIGINT or SIGTERM: stop every child and fail the run as interrupted.

A process killed in the middle of a queue transfer can leave that queue's
lock taken or a message cut short, which no one can repair from outside. So
after any crash the supervisor watches for progress, and if the pipeline stops
moving it restarts the whole data plane from scratch, with fresh queues and
a fresh temporary output (at most ``--max-retries`` times). Either way the
output is byte-identical to an undisturbed run.

:func:`run` is the whole job: check the output, build in a temporary
directory, supervise, write ``summary.json``, commit.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.context
import os
import queue
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final, Protocol

import setproctitle

from . import _collector, _output, _reader, _worker
from ._board import Board, CollectorField, FileField, FileState, WorkerField
from ._child import EXIT_REPORTED, context, run_child
from ._config import Config, FileList, InputFile, check
from ._errors import Interrupted, RunError
from ._messages import Chunk, credit_budget
from ._profiling import memory_report, merge_cpu_profiles, peak_rss_kib, profiled
from ._queue import ChunkQueue
from ._spec import REASONS

if TYPE_CHECKING:
    from ._dask import DaskRun

log = logging.getLogger("mpevents")

TICK_S: Final = 0.1
"""Longest wait between two looks at signals and the dashboard (10 per second)."""
WORK_SLOTS_PER_WORKER: Final = 16
"""Work queue depth per worker. A chunk on it is only where some lines lie, a
few dozen bytes, so a deep queue costs nothing, and it keeps workers fed when
the chunks are small files that each take a reader a moment to frame."""
QUEUE_SLOTS_PER_WORKER: Final = 2
"""Result queue depth per worker: one chunk being taken while one waits keeps every
worker busy; more would only hold memory."""
STALL_S: Final = 3.0
"""After a crash, this long without any progress means a queue was left broken
(a healthy pipeline moves every few milliseconds)."""
LIMIT_SHARE: Final = 0.6
"""A stage busy for more than this share of the run is the one that limits it."""
ERROR_SLOTS: Final = 16
"""Room on the error queue: the first reported error ends the run, so a few do."""
JOIN_S: Final = 5.0
"""How long children get to exit on their own at the end before being killed."""


class Observer(Protocol):
    """What the supervisor tells the dashboard; see ``_dashboard.py``."""

    def start(self, pipeline: Pipeline | DaskRun) -> None: ...
    def tick(self) -> None: ...
    def stop(self) -> None: ...


class _Stalled(Exception):
    pass


class Pipeline:
    """The processes and queues of one run, and the decisions on their deaths."""

    def __init__(self, config: Config, files: Sequence[InputFile], temp: Path, observer: Observer | None) -> None:
        self.config = config
        self.files = files
        self.temp = temp
        self.observer = observer
        self.board = Board(len(files), config.workers, min(config.readers, len(files)) or 1)
        self.total_bytes = sum(info.size for info in files)
        self.ctx = context()
        self.started = time.monotonic()
        self.signal: int | None = None
        self.worker_restarts = 0
        self.reader_restarts = 0
        self.data_plane_restarts = 0
        self._chunk_deaths: dict[tuple[int, int], int] = {}
        self._reader_generation = [0] * len(files)  # restarts of each file
        self._slot_generation = [0] * min(config.readers, len(files))  # replacements of each reader
        self._worker_generation = [0] * config.workers
        self._processes: dict[int, tuple[multiprocessing.process.BaseProcess, str, int]] = {}
        # made afresh for each attempt (a restart of the data plane):
        self.work_queue: Any = None
        self.result_queue: Any = None
        self.report: Any = None  # the receiving end of the collector's report pipe
        self.errors: Any = None
        self.credits: Any = None
        self.file_queue: Any = None

    # --- the run -----------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run to completion and return the collector's counts."""
        while True:
            try:
                return self._attempt()
            except _Stalled:
                self._teardown()
                self.data_plane_restarts += 1
                if self.data_plane_restarts >= self.config.max_retries:
                    raise RunError(
                        f"the pipeline stopped moving after a process died, {self.data_plane_restarts} times"
                    ) from None
                log.warning("pipeline stalled after a crash; restarting it from the start")
                _output.remove(self.temp)
                self.temp.mkdir()
                self.board.reset()
            except BaseException:
                self._teardown()
                raise

    def _attempt(self) -> dict[str, Any]:
        ctx, config = self.ctx, self.config
        depth = QUEUE_SLOTS_PER_WORKER * config.workers
        self.work_queue = ChunkQueue(WORK_SLOTS_PER_WORKER * config.workers, ctx=ctx)
        self.result_queue = ChunkQueue(depth, ctx=ctx)
        # A pipe that main waits on beside the sentinels: a report too big for
        # a pipe's buffer (the counts of 20,000 files) is taken while the
        # collector is still sending it, never after it has exited.
        self.report, report_end = ctx.Pipe(duplex=False)
        self.errors = ctx.Queue(maxsize=ERROR_SLOTS)
        self.credits = ctx.Semaphore(credit_budget(depth + 2, config.chunk_bytes))
        self.file_queue = _reader.FileQueue(ctx, len(self.files))
        self._processes = {}
        # Upstream first: a reader has its first chunk ready by the time a
        # worker is up, and the collector is needed last.
        for slot in range(len(self._slot_generation)):
            self._start_reader(slot, [])
        for slot in range(config.workers):
            self._start_worker(slot, [])
        self._start(
            "collector", 0, "collector", _collector.collect,
            self.files, self.temp, config.max_open_files,
            self.result_queue, report_end, self.board, self.credits,
        )  # fmt: skip
        report_end.close()  # the collector's copy is the only writer
        report: dict[str, Any] | None = None
        suspect = False
        last_progress = self.board.progress()
        last_move = time.monotonic()
        if self.observer is not None:
            self.observer.start(self)
        while True:
            if self.signal is not None:
                raise Interrupted(self.signal)
            sentinels = {process.sentinel: process for process, _, _ in self._processes.values()}
            waitables: list[Any] = [*sentinels, self.report] if report is None else list(sentinels)
            for ready in multiprocessing.connection.wait(waitables, timeout=TICK_S):
                if ready is self.report:
                    with contextlib.suppress(EOFError):  # the collector died: its exit says so
                        report = self._receive_report()
                    continue
                process = sentinels[ready]  # type: ignore[index]
                if self._on_exit(process):
                    if report is None and self._report_waiting():  # sent, and seen in the same wait as the exit
                        with contextlib.suppress(EOFError):
                            report = self._receive_report()
                    if report is None:
                        raise RunError("the collector finished without sending its counts")
                    self._finish()
                    return report
                suspect = suspect or process.exitcode != 0
            if self.observer is not None:
                self.observer.tick()
            progress = self.board.progress()
            now = time.monotonic()
            if progress != last_progress:
                last_progress, last_move = progress, now
            elif suspect and now - last_move > STALL_S:
                raise _Stalled

    def _report_waiting(self) -> bool:
        return bool(self.report.poll())

    def _receive_report(self) -> dict[str, Any]:
        report: dict[str, Any] = self.report.recv()
        return report

    # --- starting children -------------------------------------------------

    def _start(self, role: str, index: int, title: str, body: Callable[..., None], *args: Any) -> None:
        process = self.ctx.Process(
            target=run_child,
            args=(role, index, title, os.getpid(), self.config, self.errors, body, *args),
            name=f"mpevents-{role}-{index}",
            daemon=True,
        )
        process.start()
        assert process.pid is not None
        self._processes[process.pid] = (process, role, index)

    def _start_worker(self, slot: int, first: list[Chunk]) -> None:
        # 0 only for the very first process of a slot (test failpoints fire there)
        generation = self._worker_generation[slot] + self.data_plane_restarts
        self._start(
            "worker", slot, f"worker {slot + 1}", _worker.work,
            slot, generation, self.files,
            self.work_queue, self.result_queue, self.board, first,
        )  # fmt: skip

    def _start_reader(self, slot: int, resume: list[tuple[int, int, int]]) -> None:
        generation = self._slot_generation[slot] + self.data_plane_restarts
        job = _reader.ReaderJob(slot, self.config.chunk_bytes, resume, generation)
        self._start(
            "reader", slot, f"reader {slot + 1}", _reader.read_files,
            job, self.files, self.file_queue, self.work_queue, self.board, self.credits,
        )  # fmt: skip

    # --- deaths ------------------------------------------------------------

    def _on_exit(self, process: multiprocessing.process.BaseProcess) -> bool:
        """Deal with one child's exit; True when the collector has finished."""
        process.join()
        assert process.pid is not None
        _, role, index = self._processes.pop(process.pid)
        code = process.exitcode
        if code == EXIT_REPORTED:
            raise RunError(self._reported(role, index))
        if role == "collector":
            if code == 0:
                return True
            raise RunError(f"the collector died ({_describe(code)}); nothing was written")
        if role == "reader":
            if code != 0:
                self._replace_reader(index, code)
            return False
        # a worker: it only exits by itself at the very end, so this is a crash
        held = self.board.held(index)
        first = []
        for position, (file, seq, offset, end, flags) in enumerate(held):
            if position == len(held) - 1 and self.board.worker(index, WorkerField.STATE):
                deaths = self._chunk_deaths.get((file, seq), 0) + 1
                self._chunk_deaths[(file, seq)] = deaths
                if deaths >= self.config.max_retries:
                    raise RunError(f"{self._describe_chunk(file, offset, end)} killed {deaths} workers; giving up")
            first.append(Chunk(file, seq, offset, end, flags))
        self._worker_generation[index] += 1
        self.worker_restarts += 1
        self.board.add_worker(index, WorkerField.RESTARTS, 1)
        log.warning("worker %d died (%s); a replacement takes over its chunks", index + 1, _describe(code))
        self._start_worker(index, first)
        return False

    def _replace_reader(self, slot: int, code: int | None) -> None:
        """Start a replacement for reader ``slot``: it reads again every file
        the dead one took that is not written yet, from its first unwritten chunk."""
        board = self.board
        resume = []
        for file in range(len(self.files)):  # once per death, never per chunk
            if board.file(file, FileField.READER) != slot + 1 or board.file(file, FileField.STATE) == FileState.WRITTEN:
                continue
            self._reader_generation[file] += 1
            if self._reader_generation[file] > self.config.max_retries:
                raise RunError(f"the reader of {self.files[file].name} died {self._reader_generation[file]} times")
            resume.append((file, board.file(file, FileField.WRITTEN_SEQ), board.file(file, FileField.WRITTEN_OFFSET)))
        self._slot_generation[slot] += 1
        self.reader_restarts += 1
        names = ", ".join(self.files[file].name for file, _, _ in resume) or "no file"
        log.warning("reader %d died (%s) while on %s; restarting it", slot + 1, _describe(code), names)
        self._start_reader(slot, resume)

    def _reported(self, role: str, index: int) -> str:
        try:
            return str(self.errors.get(timeout=JOIN_S))
        except queue.Empty:
            return f"{role} {index} failed"

    def _describe_chunk(self, file: int, offset: int, end: int) -> str:
        """Name a chunk by its file and line range (counted from the file)."""
        path = self.files[file].path
        with open(path, "rb") as handle:
            before = _count_newlines(handle, offset)
            inside = _count_newlines(handle, end - offset)
        last = before + max(inside, 1)
        return f"the chunk of {self.files[file].name} at lines {before + 1}-{last}"

    # --- the end -----------------------------------------------------------

    def _finish(self) -> None:
        """The collector is done: stop the workers and let everyone exit."""
        for _ in range(self.config.workers):
            self.work_queue.put(None)
        deadline = time.monotonic() + JOIN_S
        for process, _, _ in list(self._processes.values()):
            process.join(max(0.0, deadline - time.monotonic()))
        self._teardown()

    def _teardown(self) -> None:
        """Kill whatever still runs and drop the queues without waiting on them."""
        for process, _, _ in self._processes.values():
            if process.exitcode is None:
                process.kill()
        for process, _, _ in self._processes.values():
            process.join(JOIN_S)
        self._processes = {}
        for q in (self.work_queue, self.result_queue, self.errors):
            if q is not None:
                q.close()
                q.cancel_join_thread()
        if self.report is not None:
            self.report.close()
            self.report = None

    def queue_depths(self) -> list[tuple[str, float]]:
        """How full the work and result queues are, as shares of their size."""
        work, results = (slots * self.config.workers for slots in (WORK_SLOTS_PER_WORKER, QUEUE_SLOTS_PER_WORKER))
        try:
            return [("work", self.work_queue.qsize() / work), ("result", self.result_queue.qsize() / results)]
        except (NotImplementedError, AttributeError, OSError):  # qsize is not available everywhere
            return []

    def note(self) -> str:
        """A line about the engine for the dashboard; the local one needs none."""
        return ""

    def files_taken(self) -> int:
        """How many input files readers have taken so far."""
        return self.file_queue.taken() if self.file_queue is not None else 0

    def kill_all(self) -> None:
        for process, _, _ in self._processes.values():
            if process.exitcode is None:
                process.kill()


def _count_newlines(handle: Any, size: int) -> int:
    count = 0
    while size > 0:
        block = handle.read(min(size, 1 << 20))
        if not block:
            break
        count += block.count(b"\n")
        size -= len(block)
    return count


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"exit code {code}"


# --- the whole job ------------------------------------------------------------


def run(config: Config, observer: Observer | None = None, files: Sequence[InputFile] | None = None) -> dict[str, Any]:
    """Run mpevents with ``config``; return the summary that was written.

    Raises :class:`UsageError`, :class:`RunError` or :class:`Interrupted`;
    in every case but success the previous output is left as it was.
    """
    setproctitle.setproctitle("mpevents: main")
    started = time.monotonic()
    files = check(config) if files is None else FileList.of(files)
    temp = _output.make_temp(config.output_dir)
    pipeline: Pipeline | DaskRun
    if config.engine == "dask":
        from ._dask import DaskRun, import_distributed

        import_distributed()  # fail early, before any work, when the extra is missing
        pipeline = DaskRun(config, files, temp, observer)
    else:
        pipeline = Pipeline(config, files, temp, observer)
    previous = _install_signal_handlers(pipeline)
    try:
        with profiled(config, "main", 1):
            report = pipeline.run()
        summary = build_summary(config, files, report, time.monotonic() - started, pipeline)
        _output.write_summary(temp, summary)
        _output.commit(temp, config.output_dir)
        return summary
    except OSError as exc:
        raise RunError(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)) from exc
    finally:
        _output.remove(temp)
        _restore_signal_handlers(previous)
        if observer is not None:
            observer.stop()


def build_summary(
    config: Config, files: Sequence[InputFile], report: dict[str, Any], elapsed: float, pipeline: Pipeline | DaskRun
) -> dict[str, Any]:
    keys = ("lines", "valid", "rejected", "blank")
    per_file = {info.name: dict(zip(keys, counts)) for info, counts in zip(files, report["files"])}
    totals = {key: sum(counts[key] for counts in per_file.values()) for key in keys}
    groups = dict(sorted(report["groups"].items(), key=lambda item: int(item[0])))
    summary: dict[str, Any] = {
        "tool": _output.TOOL,
        "totals": totals,
        "files": per_file,
        "rejected_by_reason": dict(zip(REASONS, report["reasons"])),
        "groups": groups,
        "workers": config.workers,
        "engine": config.engine,
        "elapsed_s": round(elapsed, 3),
        "lines_per_s": round(totals["lines"] / elapsed) if elapsed > 0 else 0,
        "bytes_read": pipeline.total_bytes,
        "stages": stage_shares(pipeline.board, elapsed),
        "restarts": {
            "workers": pipeline.worker_restarts,
            "readers": pipeline.reader_restarts,
            "pipeline": pipeline.data_plane_restarts,
        },
    }
    if config.cpu_profile:
        merged = merge_cpu_profiles(config.profile_dir)
        summary["cpu_profile"] = str(merged) if merged else None
    if config.mem_profile:
        memory = memory_report(config.profile_dir)
        memory["processes"]["main-1"] = {"peak_rss_kib": peak_rss_kib()}
        summary["memory"] = memory
    return summary


def stage_shares(board: Board, elapsed: float) -> dict[str, Any]:
    """How busy each stage was, as shares of the run's wall time, and which
    one limited it: the workers (checking and encoding), the collector
    (writing), or neither, when reading or start-up dominated."""
    if elapsed <= 0:
        return {}
    workers = [board.worker(slot, WorkerField.BUSY_NS) / 1e9 / elapsed for slot in range(board.n_workers)] or [0.0]
    worker_share = sum(workers) / len(workers)
    collector_share = board.collector(CollectorField.BUSY_NS) / 1e9 / elapsed
    limit = "workers" if worker_share >= collector_share else "collector"
    if max(worker_share, collector_share) < LIMIT_SHARE:
        limit = "reading or start-up"
    return {"workers_busy": round(worker_share, 3), "collector_busy": round(collector_share, 3), "limited_by": limit}


_Handlers = dict[int, Any]


def _install_signal_handlers(pipeline: Pipeline | DaskRun) -> _Handlers:
    """First SIGINT/SIGTERM: stop cleanly. A second one: kill everything now."""
    temp = pipeline.temp

    def handle(signum: int, frame: FrameType | None) -> None:
        if pipeline.signal is None:
            pipeline.signal = signum
            return
        pipeline.kill_all()
        _output.remove(temp)
        os._exit(128 + signum)

    previous: _Handlers = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, handle)
    return previous


def _restore_signal_handlers(previous: _Handlers) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)
