"""Supervisor: the local engine, reader, worker and collector processes on this machine.

Talks to: the run (``_run``), which drives it through the engine interface
(``_engine``); its children, which it starts and watches; the ledger
(``local.ledger``), which tells it what a dead child held; the scoreboard, for
the dashboard.

Starts ``--readers`` readers (each takes one input file after another), the
workers and the collector, then waits on all their sentinels at once
(``multiprocessing.connection.wait``), so a child's death is seen at once,
never through a timeout on a queue. On a death it decides:

* a reader crashed: start a replacement that first reads again every file the
  dead one had taken and the collector has not finished, each from its first
  span not yet written (spans already sent are dropped by the collector as
  repeats), then takes new files like the others;
* a worker crashed: start a replacement and hand it the spans the dead one
  held, as recorded in the ledger; a span that has killed more than
  ``--max-retries`` workers fails the run;
* the collector died: restart the whole data plane (below);
* a child reported an error: fail the run.

A process killed in the middle of a queue transfer can leave that queue's
lock taken or a message cut short, which no one can repair from outside. So
after any crash the supervisor watches for progress, and if the pipeline stops
moving it restarts the whole data plane from scratch, with fresh queues, a
fresh ledger and an emptied staging directory (at most ``--max-retries``
times), as it does when the collector dies. When the fork server dies, every child
it started reads as dead: each is killed to be sure, the collector's
"death" restarts the data plane, and the standard library starts a new fork
server for the next children. Either way the output is byte-identical to an
undisturbed run.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import queue
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from mpevents._config import Config
from mpevents._engine import Restarts, RetryBudget
from mpevents.core import failpoints as _failpoints
from mpevents.core.compression import Decompressed
from mpevents.core.errors import RunError
from mpevents.core.framing import Span
from mpevents.core.inputs import InputFile
from mpevents.local import collector as _collector
from mpevents.local import reader as _reader
from mpevents.local import worker as _worker
from mpevents.local.child import EXIT_REPORTED, context, run_child
from mpevents.local.ledger import Ledger, credit_budget
from mpevents.local.messages import Report
from mpevents.local.queue import MessageQueue
from mpevents.local.spool import Spool, remove_stale
from mpevents.observe import trace as _trace
from mpevents.observe.board import Board, CollectorField, WorkerField
from mpevents.output import directory as _output
from mpevents.output.journal import State

log = logging.getLogger("mpevents")

WORK_SLOTS_PER_WORKER: Final = 16
"""Work queue depth per worker. A chunk on it is only where some lines lie, a
few dozen bytes, so a deep queue costs nothing, and it keeps workers fed when
the chunks are small files that each take a reader a moment to frame."""
QUEUE_SLOTS_PER_WORKER: Final = 2
"""Result queue depth per worker: one chunk being taken while one waits keeps every
worker busy; more would only hold memory."""
STALL_S: Final = 3.0
"""After a crash, this long without any progress means a queue was left broken
(a healthy pipeline moves every few milliseconds; a reader or worker that
decompresses a big file again, up to where it is to go on, counts each MiB
as a move: ``Board.progress``)."""
_FATE_UNKNOWN: Final = 255
"""The exit code multiprocessing gives a child whose fork server died before it."""
ERROR_SLOTS: Final = 16
"""Room on the error queue: the first reported error ends the run, so a few do."""
JOIN_S: Final = 5.0
"""How long children get to exit on their own at the end before being killed."""


class _Restart(Exception):
    """The data plane cannot go on as it is (a queue left broken, the collector
    gone): start it again from scratch."""


class LocalEngine:
    """The processes and queues of one run, and the decisions on their deaths."""

    def __init__(
        self,
        config: Config,
        files: Sequence[InputFile],
        staging: Path,
        budget: RetryBudget,
        resume: State | None = None,
        reset_staging: Callable[[], None] | None = None,
    ) -> None:
        """``resume``: where a --resume run's journal left off, for the first
        attempt; ``reset_staging`` empties the staging directory for a fresh
        attempt (by default: remove all it holds)."""
        self.config = config
        self.files = files
        self.staging = staging
        self.budget = budget
        self.readers = min(config.readers, len(files)) or 1
        self.board = Board(len(files), config.workers, self.readers)
        self.restarts = Restarts()
        self.total_bytes = sum(info.size for info in files)
        self.ctx = context()
        self.started = time.monotonic()
        self._slot_generation = [0] * self.readers  # replacements of each reader slot
        self._worker_generation = [0] * config.workers
        self._processes: dict[int, tuple[multiprocessing.process.BaseProcess, str, int]] = {}
        remove_stale()  # what a run killed outright left in /dev/shm
        # made afresh for each attempt (a restart of the data plane):
        self.spool: Spool | None = None
        self.ledger: Ledger | None = None
        self.work_queue: Any = None
        self.result_queue: Any = None
        self.report: Any = None  # the receiving end of the collector's report pipe
        self.errors: Any = None
        self.file_queue: Any = None
        self._suspect = False  # a child crashed this attempt: watch for a stall
        self._last_progress: tuple[int, ...] = ()
        self._last_move = 0.0
        self._report: Report | None = None
        self._resume = resume
        self._journaled = resume is not None
        self._reset_staging = reset_staging or self._fresh_staging

    # --- the engine interface ------------------------------------------------

    def start(self) -> None:
        ctx, config = self.ctx, self.config
        depth = QUEUE_SLOTS_PER_WORKER * config.workers
        self.work_queue = MessageQueue(WORK_SLOTS_PER_WORKER * config.workers, ctx=ctx)
        self.result_queue = MessageQueue(depth, ctx=ctx)
        # A pipe that main waits on beside the sentinels: a report too big for
        # a pipe's buffer (the counts of 20,000 files) is taken while the
        # collector is still sending it, never after it has exited.
        self.report, report_end = ctx.Pipe(duplex=False)
        self.errors = ctx.Queue(maxsize=ERROR_SLOTS)
        self.spool = Spool.make(self.staging, config.workers, self.readers, config.chunk_bytes)
        self.ledger = Ledger.make(ctx, len(self.files), config.workers, credit_budget(depth + 2, config.chunk_bytes))
        # Only the first attempt resumes; a later one starts over, still journaled.
        resume, self._resume = self._resume, (State() if self._journaled else None)
        first = 0 if resume is None else resume.head + 1
        self.file_queue = _reader.FileQueue(ctx, len(self.files), min(first, len(self.files)))
        self._processes = {}
        self._report, self._suspect = None, False
        self._last_progress, self._last_move = self.board.progress(), time.monotonic()
        # In the order their first work comes: a reader has its first span
        # ready by the time a worker is up; the other readers are needed only
        # once the first has framed a file's worth; the collector, once a
        # worker has checked a chunk. Each start costs main a few ms.
        head = (
            []
            if resume is None or resume.head >= len(self.files)
            else [(resume.head, resume.next_seq, resume.next_start)]
        )
        if resume is not None:
            self.ledger.resume_from(resume.head, resume.next_seq, resume.next_start)
        self._start_reader(0, head)
        for slot in range(config.workers):
            self._start_worker(slot, [])
        for slot in range(1, self.readers):
            self._start_reader(slot, [])
        self._start(
            "collector", 0, "collector", _collector.collect,
            self.files, self.staging, config.max_open_files,
            self.result_queue, report_end, self.board, self.ledger, self.restarts.pipeline, resume,
        )  # fmt: skip
        report_end.close()  # the collector's copy is the only writer

    def poll(self, timeout: float) -> Report | None:
        try:
            return self._poll(timeout)
        except _Restart as restart:
            self.stop()
            self.restarts.pipeline += 1
            self.budget.charge("pipeline", f"{restart}, " + "{times} times; giving up")
            log.warning("%s; restarting the pipeline from the start", restart)
            _trace.tracer().instant("data plane restart", why=str(restart))
            self._reset_staging()
            self.board.reset()
            self.start()
            return None

    def _poll(self, timeout: float) -> Report | None:
        sentinels = {process.sentinel: process for process, _, _ in self._processes.values()}
        waitables: list[Any] = [*sentinels, self.report] if self._report is None else list(sentinels)
        for ready in multiprocessing.connection.wait(waitables, timeout=timeout):
            if ready is self.report:
                with contextlib.suppress(EOFError):  # the collector died: its exit says so
                    self._report = self._receive_report()
                continue
            process = sentinels[ready]  # type: ignore[index]
            if self._on_exit(process):
                if self._report is None and self._report_waiting():  # sent, and seen in the same wait as the exit
                    with contextlib.suppress(EOFError):
                        self._report = self._receive_report()
                if self._report is None:
                    raise RunError("the collector finished without sending its counts")
                self._finish()
                return self._report
            self._suspect = self._suspect or process.exitcode != 0
        if self._stalls_after(_failpoints.number("stall_s") or STALL_S):
            raise _Restart("the pipeline stopped moving after a process died")
        return None

    def _fresh_staging(self) -> None:
        _output.empty(self.staging)  # emptied, not made again: the run holds this directory

    def _stalls_after(self, seconds: float) -> bool:
        """Whether nothing has moved for ``seconds`` since a child crashed."""
        progress, now = self.board.progress(), time.monotonic()
        if progress != self._last_progress:
            self._last_progress, self._last_move = progress, now
            return False
        return self._suspect and now - self._last_move > seconds

    def _report_waiting(self) -> bool:
        return bool(self.report.poll())

    def _receive_report(self) -> Report:
        report: Report = self.report.recv()
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

    def _start_worker(self, slot: int, first: list[Span]) -> None:
        # 0 only for the very first process of a slot (test failpoints fire there)
        generation = self._worker_generation[slot] + self.restarts.pipeline
        self._start(
            "worker", slot, f"worker {slot + 1}", _worker.work,
            slot, generation, self.files,
            self.work_queue, self.result_queue, self.board, self.ledger, self.spool, first,
        )  # fmt: skip

    def _start_reader(self, slot: int, resume: list[tuple[int, int, int]]) -> None:
        generation = self._slot_generation[slot] + self.restarts.pipeline
        job = _reader.ReaderJob(slot, self.config.chunk_bytes, resume, generation, self.spool)
        self._start(
            "reader", slot, f"reader {slot + 1}", _reader.read_files,
            job, self.files, self.file_queue, self.work_queue, self.board, self.ledger,
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
        if code == _FATE_UNKNOWN:
            # The fork server that started it died, taking the news of its exit
            # with it: the child may well be running still. Make sure it is not.
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)
        if role == "collector":
            if code == 0:
                return True
            raise _Restart(f"the collector died ({_describe(code)})")
        if role == "reader":
            if code != 0:
                self._replace_reader(index, code, process.pid)
            return False
        self._replace_worker(index, code, process.pid)
        return False

    def _replace_worker(self, slot: int, code: int | None, pid: int) -> None:
        """Start a replacement for worker ``slot`` (it only exits by itself at
        the very end, so this is a crash) and hand it what the dead one held."""
        assert self.ledger is not None
        spans, busy = self.ledger.held(slot)
        if busy is not None:
            self.budget.charge(
                ("span", busy.file, busy.seq), lambda: self._describe_span(busy) + " killed {times} workers; giving up"
            )
        self._worker_generation[slot] += 1
        self.restarts.workers += 1
        self.board.add_worker(slot, WorkerField.RESTARTS, 1)
        log.warning("worker %d died (%s); a replacement takes over its spans", slot + 1, _describe(code))
        _trace.tracer().instant(f"worker {slot + 1} died", pid=pid, code=_describe(code), spans=len(spans))
        self._start_worker(slot, spans)

    def _replace_reader(self, slot: int, code: int | None, pid: int) -> None:
        """Start a replacement for reader ``slot``: it reads again every file
        the dead one took that is not written yet, from its first unwritten span."""
        assert self.ledger is not None
        resume = []
        for file in self.ledger.unwritten_files_of(slot):
            name = self.files[file].name
            self.budget.charge(("reader", file), f"the reader of {name} died " + "{times} times")
            resume.append((file, *self.ledger.resume_point(file)))
        self._slot_generation[slot] += 1
        self.restarts.readers += 1
        names = ", ".join(self.files[file].name for file, _, _ in resume) or "no file"
        log.warning("reader %d died (%s) while on %s; restarting it", slot + 1, _describe(code), names)
        _trace.tracer().instant(f"reader {slot + 1} died", pid=pid, code=_describe(code), files=names)
        self._start_reader(slot, resume)

    def _reported(self, role: str, index: int) -> str:
        try:
            return str(self.errors.get(timeout=JOIN_S))
        except queue.Empty:
            return f"{role} {index} failed"

    def _describe_span(self, span: Span) -> str:
        """Name a span by its file and line range (counted from the file's
        start; a compressed file's spans lie in its decompressed bytes, so its
        lines are counted in those)."""
        info = self.files[span.file]
        with open(info.path, "rb") if info.compression is None else Decompressed(info.path, info.compression) as handle:
            before = _count_newlines(handle, span.start)
            inside = _count_newlines(handle, span.end - span.start)
        last = before + max(inside, 1)
        return f"the chunk of {info.name} at lines {before + 1}-{last}"

    # --- the end -----------------------------------------------------------

    def _finish(self) -> None:
        """The collector is done: stop the workers and let everyone exit."""
        for _ in range(self.config.workers):
            self.work_queue.put(None)
        deadline = time.monotonic() + JOIN_S
        for process, _, _ in list(self._processes.values()):
            process.join(max(0.0, deadline - time.monotonic()))
        self.stop()

    def stop(self) -> None:
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
        if self.spool is not None:
            self.spool.remove()
            self.spool = None

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

    def busy(self) -> tuple[float, float]:
        board = self.board
        workers = [board.worker(slot, WorkerField.BUSY_NS) for slot in range(board.n_workers)] or [0]
        return sum(workers) / len(workers) / 1e9, board.collector(CollectorField.BUSY_NS) / 1e9

    def files_taken(self) -> int:
        """How many input files readers have taken so far."""
        return self.file_queue.taken() if self.file_queue is not None else 0


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
