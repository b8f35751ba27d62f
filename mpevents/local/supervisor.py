"""Supervisor: the local engine, reader, worker and collector processes on this machine.

Talks to: the run (``_run``), which drives it through the engine interface
(``_engine``); its children, which it starts and watches; the ledger
(``local.ledger``), which tells it what a dead child held; the scoreboard, for
the dashboard.

What lasts for the whole run (the config, the files, the staging directory,
the retry budget, the scoreboard, the restart counts, how often each slot's
child was replaced) is the engine's (:class:`LocalEngine`). What one attempt
of the data plane uses (its queues, report pipe, error queue, file queue,
spool, ledger, child processes and stall watch) is an :class:`Attempt`'s,
made whole on start and thrown away whole on a restart, so that nothing a
broken attempt left (a queue whose lock a killed child held) reaches the next.

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
times), as it does when the collector dies. When the fork server dies, every
child it started reads as dead: each is killed to be sure, the collector's
"death" restarts the data plane, and the standard library starts a new fork
server for the next children. Either way the output is byte-identical to an
undisturbed run.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.process
import multiprocessing.queues
import os
import queue
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, Final, NamedTuple, ParamSpec

from mpevents._config import Config
from mpevents._engine import Restarts, RetryBudget
from mpevents.core import failpoints as _failpoints
from mpevents.core.compression import Decompressed
from mpevents.core.errors import RunError
from mpevents.core.framing import Span
from mpevents.core.inputs import InputFile
from mpevents.local import collector as _collector
from mpevents.local.child import EXIT_REPORTED, context, run_child
from mpevents.local.ledger import Ledger, LedgerFlag, credit_budget, placing_of
from mpevents.local.messages import Result
from mpevents.local.queue import MessageQueue
from mpevents.local.reader import FileQueue, ReaderJob, ResumePoint, read_files
from mpevents.local.spool import Spool, remove_stale
from mpevents.local.worker import WorkerJob, work
from mpevents.observe import trace as _trace
from mpevents.observe.board import Board, CollectorField, WorkerField
from mpevents.output import directory as _output
from mpevents.output.journal import State
from mpevents.output.names import PARTS_DIR
from mpevents.output.parts import SEGMENT_CHUNKS
from mpevents.output.report import Report

log = logging.getLogger("mpevents")

WORK_SLOTS_PER_WORKER: Final = 16
"""Work queue depth per worker. A span on it is only where some lines lie, a
few dozen bytes, so a deep queue costs nothing, and it keeps workers fed when
the spans are small files that each take a reader a moment to frame."""
QUEUE_SLOTS_PER_WORKER: Final = 2
"""Result queue depth per worker: one result being taken while one waits keeps every
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

P = ParamSpec("P")


class _Restart(Exception):
    """The data plane cannot go on as it is (a queue left broken, the collector
    gone): start it again from scratch."""


class _Child(NamedTuple):
    """A child process of an attempt, and the role and slot it fills."""

    process: multiprocessing.process.BaseProcess
    role: str
    slot: int


class _StallWatch:
    """Whether an attempt's pipeline has stopped moving since one of its children crashed."""

    def __init__(self, board: Board) -> None:
        self._board = board
        self._suspect = False  # a child crashed: watch for a stall
        self._last_progress, self._last_move = board.progress(), time.monotonic()

    def crashed(self) -> None:
        self._suspect = True

    def stalled(self, seconds: float) -> bool:
        """Whether nothing has moved for ``seconds`` since a child crashed."""
        progress, now = self._board.progress(), time.monotonic()
        if progress != self._last_progress:
            self._last_progress, self._last_move = progress, now
            return False
        return self._suspect and now - self._last_move > seconds


class Attempt:
    """One attempt of the data plane: its queues, pipes, spool, ledger and children.

    Made whole, closed whole (:meth:`close`); a restart makes a new one.
    """

    def __init__(
        self,
        ctx: multiprocessing.context.ForkServerContext,
        config: Config,
        files: int,
        readers: int,
        staging: Path,
        board: Board,
        first_file: int,
    ) -> None:
        """``files`` input files, read by ``readers`` readers from file ``first_file`` on."""
        self.ctx, self.config = ctx, config
        results = QUEUE_SLOTS_PER_WORKER * config.workers
        self.work_queue: MessageQueue[Span | None] = MessageQueue(WORK_SLOTS_PER_WORKER * config.workers, ctx=ctx)
        self.result_queue: MessageQueue[Result] = MessageQueue(results, ctx=ctx)
        # A pipe that main waits on beside the sentinels: a report too big for
        # a pipe's buffer (the counts of 20,000 files) is taken while the
        # collector is still sending it, never after it has exited.
        self.report: multiprocessing.connection.Connection[Report, Report]
        self.report_end: multiprocessing.connection.Connection[Report, Report]
        self.report, self.report_end = ctx.Pipe(duplex=False)
        self.errors: multiprocessing.queues.Queue[str] = ctx.Queue(maxsize=ERROR_SLOTS)
        self.ledger = Ledger.make(ctx, files, config.workers, credit_budget(results + 2, config.chunk_bytes))
        self.file_queue = FileQueue(ctx, files, first_file)
        self.children: dict[int, _Child] = {}  # by pid
        self.received: Report | None = None  # the collector's report, once it has come
        self.stall = _StallWatch(board)
        self.closed = False
        # Last, so that nothing can fail once it is made: of all these only the
        # spool, a directory in /dev/shm, outlives main unless it is removed.
        self.spool = Spool.make(staging, config.workers, readers, config.chunk_bytes)

    def start(
        self, role: str, index: int, title: str, body: Callable[P, None], *args: P.args, **kwargs: P.kwargs
    ) -> None:
        """Start a child that runs ``body(*args, **kwargs)`` (``local.child``)."""
        process = self.ctx.Process(
            target=run_child,
            args=(role, index, title, os.getpid(), self.config, self.errors, body, *args),
            kwargs=kwargs,
            name=f"mpevents-{role}-{index}",
            daemon=True,
        )
        try:
            process.start()
        except (EOFError, OSError) as exc:
            # The fork server died (killed) between the standard library's
            # look at it and this start: the data plane goes on without it only
            # through a restart, for which the library starts a new one.
            raise _Restart(f"the fork server died while a {role} was being started ({exc!r})") from exc
        assert process.pid is not None
        self.children[process.pid] = _Child(process, role, index)

    def receive_report(self, only_if_sent: bool = False) -> None:
        """Take the collector's report from its pipe (with ``only_if_sent``,
        only if it is there already); nothing if the collector died first."""
        if only_if_sent and not self.report.poll():
            return
        with contextlib.suppress(EOFError):  # the collector died: its exit says so
            self.received = self.report.recv()

    def reported_error(self, role: str, index: int) -> str:
        """The line a child put on the error queue before it exited."""
        try:
            return self.errors.get(timeout=JOIN_S)
        except queue.Empty:
            return f"{role} {index} failed"

    def finish(self) -> None:
        """The collector is done: stop the workers and give everyone JOIN_S to exit."""
        for _ in range(self.config.workers):
            self.work_queue.put(None)
        deadline = time.monotonic() + JOIN_S
        for child in list(self.children.values()):
            child.process.join(max(0.0, deadline - time.monotonic()))

    def close(self) -> None:
        """Kill whatever still runs and drop the queues without waiting on
        them; safe to call again, from a signal handler in the middle of a call too."""
        children = self.children
        for child in children.values():
            if child.process.exitcode is None:
                child.process.kill()
        for child in children.values():
            child.process.join(JOIN_S)
        self.children = {}
        if self.closed:
            return
        self.closed = True
        for q in (self.work_queue, self.result_queue, self.errors):
            q.close()
            q.cancel_join_thread()
        self.report.close()
        self.report_end.close()  # closed already once the collector has started
        self.spool.remove()

    def queue_depths(self) -> list[tuple[str, float]]:
        """How full the work and result queues are, as shares of their size."""
        work_slots, result_slots = (
            slots * self.config.workers for slots in (WORK_SLOTS_PER_WORKER, QUEUE_SLOTS_PER_WORKER)
        )
        try:
            return [
                ("work", self.work_queue.qsize() / work_slots),
                ("result", self.result_queue.qsize() / result_slots),
            ]
        except (NotImplementedError, OSError):  # qsize is not available everywhere
            return []


class LocalEngine:
    """A run's processes on this machine, and the decisions on their deaths.

    Holds what lasts for the run; what one attempt of the data plane uses is
    :attr:`attempt`'s (the last one, closed, once the run has stopped).
    """

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
        self.board = Board(len(files), config.workers, self.readers, config.schema.reasons())
        self.restarts = Restarts()
        self.total_bytes = sum(info.size for info in files)
        self.ctx = context()
        self.started = time.monotonic()
        self.attempt: Attempt | None = None
        self._reader_generation = [0] * self.readers  # replacements of each reader slot
        self._worker_generation = [0] * config.workers
        self._resume = resume
        self._journaled = resume is not None
        self._reset_staging = reset_staging or self._fresh_staging
        remove_stale()  # what a run killed outright left in /dev/shm

    # --- the engine interface ------------------------------------------------

    def start(self) -> None:
        config, files = self.config, self.files
        # Only the first attempt resumes; a later one starts over, still journaled.
        resume, self._resume = self._resume, (State() if self._journaled else None)
        first = 0 if resume is None else min(resume.head + 1, len(files))
        self.attempt = attempt = Attempt(self.ctx, config, len(files), self.readers, self.staging, self.board, first)
        head: list[ResumePoint] = []
        if resume is not None:
            attempt.ledger.resume_from(resume.head, resume.next_seq, resume.next_start)
            if resume.head < len(files):
                head.append((resume.head, resume.next_seq, resume.next_start))
        # In the order their first work comes: a reader has its first span
        # ready by the time a worker is up; the other readers are needed only
        # once the first has framed a file's worth; the collector, once a
        # worker has checked a span. Each start costs main a few ms.
        self._start_reader(attempt, 0, head)
        for slot in range(config.workers):
            self._start_worker(attempt, slot, [])
        for slot in range(1, self.readers):
            self._start_reader(attempt, slot, [])
        job = _collector.CollectorJob(
            self.files, self.staging, attempt.result_queue, attempt.work_queue, config.workers,
            attempt.report_end, self.board, attempt.ledger, self.restarts.pipeline, resume, config.compress,
            SEGMENT_CHUNKS * config.chunk_bytes, _collector.EPOCH_CHUNKS * config.chunk_bytes,
        )  # fmt: skip
        attempt.start("collector", 0, "collector", _collector.collect, job)
        attempt.report_end.close()  # the collector's copy is the only writer

    def poll(self, timeout: float) -> Report | None:
        assert self.attempt is not None, "poll() before start()"
        try:
            return self._poll(self.attempt, timeout)
        except _Restart as restart:
            while True:  # until a start succeeds, or the retry budget is spent
                self.stop()
                self.restarts.pipeline += 1
                self.budget.charge("pipeline", f"{restart}, " + "{times} times; giving up")
                log.warning("%s; restarting the pipeline from the start", restart)
                _trace.tracer().instant("data plane restart", why=str(restart))
                self._reset_staging()
                self.board.reset()
                try:
                    self.start()
                except _Restart as again:
                    restart = again
                    continue
                return None

    def _poll(self, attempt: Attempt, timeout: float) -> Report | None:
        sentinels = {child.process.sentinel: child.process for child in attempt.children.values()}
        waitables: list[int | multiprocessing.connection.Connection[Report, Report]] = list(sentinels)
        if attempt.received is None:
            waitables.append(attempt.report)
        for ready in multiprocessing.connection.wait(waitables, timeout=timeout):
            if not isinstance(ready, int):  # the report pipe
                attempt.receive_report()
                continue
            process = sentinels[ready]
            if self._on_exit(attempt, process):
                if attempt.received is None:  # sent, and seen in the same wait as the exit
                    attempt.receive_report(only_if_sent=True)
                if attempt.received is None:
                    raise RunError("the collector finished without sending its counts")
                attempt.finish()
                self.stop()
                _output.remove(self.staging / PARTS_DIR)  # placed: the group files hold every record now
                return attempt.received
            if process.exitcode != 0:
                attempt.stall.crashed()
        if attempt.stall.stalled(_failpoints.number("stall_s") or STALL_S):
            raise _Restart("the pipeline stopped moving after a process died")
        return None

    def _fresh_staging(self) -> None:
        _output.empty(self.staging)  # emptied, not made again: the run holds this directory

    # --- starting children -------------------------------------------------

    def _start_worker(self, attempt: Attempt, slot: int, first: list[Span]) -> None:
        job = WorkerJob(
            slot=slot,
            # 0 only for the very first process of a slot (test failpoints fire there)
            generation=self._worker_generation[slot] + self.restarts.pipeline,
            first=tuple(first),
            files=self.files,
            work_queue=attempt.work_queue,
            result_queue=attempt.result_queue,
            board=self.board,
            ledger=attempt.ledger,
            spool=attempt.spool,
            parts=self.staging / PARTS_DIR,
            segment_bytes=SEGMENT_CHUNKS * self.config.chunk_bytes,
            staging=self.staging,
            schema=self.config.schema,
            compress=self.config.compress,
        )
        attempt.start("worker", slot, f"worker {slot + 1}", work, job)

    def _start_reader(self, attempt: Attempt, slot: int, resume: list[ResumePoint]) -> None:
        job = ReaderJob(
            slot=slot,
            generation=self._reader_generation[slot] + self.restarts.pipeline,
            chunk_bytes=self.config.chunk_bytes,
            resume=tuple(resume),
            files=self.files,
            file_queue=attempt.file_queue,
            work_queue=attempt.work_queue,
            board=self.board,
            ledger=attempt.ledger,
            spool=attempt.spool,
        )
        attempt.start("reader", slot, f"reader {slot + 1}", read_files, job)

    # --- deaths ------------------------------------------------------------

    def _on_exit(self, attempt: Attempt, process: multiprocessing.process.BaseProcess) -> bool:
        """Deal with one child's exit; True when the collector has finished."""
        process.join()
        assert process.pid is not None
        _, role, index = attempt.children.pop(process.pid)
        code = process.exitcode
        if code == EXIT_REPORTED:
            raise RunError(attempt.reported_error(role, index))
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
                self._replace_reader(attempt, index, code, process.pid)
            return False
        self._replace_worker(attempt, index, code, process.pid)
        return False

    def _replace_worker(self, attempt: Attempt, slot: int, code: int | None, pid: int) -> None:
        """Start a replacement for worker ``slot`` (it only exits by itself at
        the very end, so this is a crash) and hand it what the dead one held."""
        spans, busy = attempt.ledger.held(slot)
        if busy is not None and busy.flags & LedgerFlag.PLACE:
            placing = placing_of(busy)
            self.budget.charge(placing, f"placing {placing.describe()} killed " + "{times} workers; giving up")
        elif busy is not None:
            self.budget.charge(
                ("span", busy.file, busy.seq), lambda: self._describe_span(busy) + " killed {times} workers; giving up"
            )
        self._worker_generation[slot] += 1
        self.restarts.workers += 1
        self.board.add_worker(slot, WorkerField.RESTARTS, 1)
        log.warning("worker %d died (%s); a replacement takes over its spans", slot + 1, _describe(code))
        _trace.tracer().instant(f"worker {slot + 1} died", pid=pid, code=_describe(code), spans=len(spans))
        self._start_worker(attempt, slot, spans)

    def _replace_reader(self, attempt: Attempt, slot: int, code: int | None, pid: int) -> None:
        """Start a replacement for reader ``slot``: it reads again every file
        the dead one took that is not written yet, from its first unwritten span."""
        resume: list[ResumePoint] = []
        for file in attempt.ledger.unwritten_files_of(slot):
            name = self.files[file].name
            self.budget.charge(("reader", file), f"the reader of {name} died " + "{times} times")
            resume.append((file, *attempt.ledger.resume_point(file)))
        self._reader_generation[slot] += 1
        self.restarts.readers += 1
        names = ", ".join(self.files[file].name for file, _, _ in resume) or "no file"
        log.warning("reader %d died (%s) while on %s; restarting it", slot + 1, _describe(code), names)
        _trace.tracer().instant(f"reader {slot + 1} died", pid=pid, code=_describe(code), files=names)
        self._start_reader(attempt, slot, resume)

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

    def stop(self) -> None:
        """Kill whatever still runs and drop the queues without waiting on them."""
        if self.attempt is not None:
            self.attempt.close()

    def queue_depths(self) -> list[tuple[str, float]]:
        """How full the work and result queues are, as shares of their size."""
        return self.attempt.queue_depths() if self.attempt is not None else []

    def note(self) -> str:
        """A line about the engine for the dashboard; the local one needs none."""
        return ""

    def busy(self) -> tuple[float, float]:
        board = self.board
        workers = [board.worker(slot, WorkerField.BUSY_NS) for slot in range(board.n_workers)] or [0]
        return sum(workers) / len(workers) / 1e9, board.collector(CollectorField.BUSY_NS) / 1e9

    def files_taken(self) -> int:
        """How many input files readers have taken so far."""
        return self.attempt.file_queue.taken() if self.attempt is not None else 0


def _count_newlines(handle: BinaryIO | Decompressed, size: int) -> int:
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
