"""Run: the whole job around an engine, the same for every engine.

Talks to: the command line or a library caller (:func:`run`), the config
checks, the output directory (``output.directory``: staging and the atomic commit),
an engine (``_engine``: the local processes or Dask), the observer (the
dashboard), the files still being written (``core.live``: what each left
unread) and the summary (``_summary``).

    check config and inputs -> claim the output, staging directory -> engine.start()
    -> poll until the report (signals, dashboard ticks) -> unread bytes -> summary.json -> commit

Signals: the first SIGINT or SIGTERM ends the run as interrupted, with the
previous output left as it was; a second one kills every child at once.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Final, Protocol

import setproctitle

from mpevents._config import Config, check
from mpevents._engine import Engine, RetryBudget
from mpevents._summary import Summary, across_runs, build_summary, decode, encode
from mpevents.core import live as _live
from mpevents.core.errors import Interrupted, RunError, UsageError
from mpevents.core.inputs import FileList, InputFile
from mpevents.observe import trace as _trace
from mpevents.observe.profiling import memory_report, merge_cpu_profiles, peak_rss_kib, profiled
from mpevents.output import directory as _output
from mpevents.output import incremental, journal
from mpevents.output.names import JOURNAL_NAME, REJECTS_NAME, group_file_name
from mpevents.output.report import Report

log = logging.getLogger("mpevents")

TICK_S: Final = 0.1
"""Longest wait between two looks at signals and the dashboard (10 per second)."""


class Observer(Protocol):
    """What the run tells the dashboard; see ``observe.dashboard``."""

    def start(self, engine: Engine) -> None: ...
    def tick(self) -> None: ...
    def stop(self) -> None: ...


def run(
    config: Config,
    observer: Observer | None = None,
    files: Sequence[InputFile] | None = None,
    finish: list[int] | None = None,
) -> Summary | None:
    """Run mpevents with ``config``; return the summary that was written
    (None: an --incremental run that found nothing new, and left the output as it was).

    Raises :class:`UsageError`, :class:`RunError` or :class:`Interrupted`;
    in every case but success the previous output is left as it was (and a
    --resume run's staging directory is kept, for the next one). With
    ``finish`` (a --follow batch), a SIGINT or SIGTERM does not interrupt the
    run: it is appended there, and the run finishes and commits.
    """
    setproctitle.setproctitle("mpevents: main")
    started = time.monotonic()
    files = check(config) if files is None else FileList.of(files)
    output = _output.real_path(config.output_dir)
    claim = _output.claim(output, config.resume, hold_output=config.incremental)
    staging = claim.staging
    if config.trace:
        _trace.clear(config.profile_dir)
        _trace.start(config.profile_dir, "main")
    try:
        resumed = None
        if config.resume:
            resumed, files = _resume(config, files, staging)
        previous, planned = None, None
        if config.incremental:
            previous, planned = _plan(config, files, output)
            if previous is not None and not len(planned.files):
                return None
            files = planned.files
        engine = make_engine(config, files, staging, resumed)
        interrupt = _Interrupt(engine, None if config.resume else staging, finish)
        try:
            with profiled(config, "main", 1):
                report = drive(engine, observer, interrupt)
            unread = _live.unread(
                files, not config.follow
            )  # files still being written: warnings, or a line that may be cut
            summary = build_summary(config, files, report, time.monotonic() - started, engine, unread)
            _add_profiles(config, summary)
            if resumed is not None:
                summary.resumed_lines = resumed.lines
                (staging / JOURNAL_NAME).unlink()
            if config.trace:
                summary.trace = str(config.profile_dir / _trace.TRACE_NAME)
            if planned is not None:
                named = config.compress.name if config.compress is not None else str
                names = [named(group_file_name(group.encode())) for group in report.groups]
                rejects = named(REJECTS_NAME)
                committed = previous[1].sizes if previous is not None else {}
                progress = planned.progress
                progress.runs += 1
                progress.streams = incremental.streams_after(planned, report.files, report.ends)
                progress.sizes = incremental.sizes_after(staging, committed, names, rejects)
                summary = across_runs(summary, previous[0] if previous else None, progress, config.schema)
                if previous is not None:  # appended in place; the summary is the commit
                    incremental.append(staging, output, committed, names, encode(summary), rejects)
                    return summary
            _output.write_summary(staging, encode(summary))
            _output.commit(staging, output, config.fsync or config.incremental)  # a state claims synced bytes
            _trace.tracer().instant("commit")
            if resumed is None:  # a --resume run's leftovers are superseded
                _output.remove(_output.resume_dir(output))
            return summary
        except OSError as exc:
            raise RunError(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)) from exc
        finally:
            engine.stop()
            interrupt.restore()
            if observer is not None:
                observer.stop()
    finally:
        if not config.resume:  # gone already once committed; a --resume run's is kept for the next one
            _output.remove(staging)
        claim.release()
        if config.trace:
            _trace.stop()
            _trace.merge(config.profile_dir)


def _resume(config: Config, files: Sequence[InputFile], staging: Path) -> tuple[journal.State, Sequence[InputFile]]:
    """Where a --resume run starts from, its staging directory made ready for
    it, and the input as the run reads it (as the interrupted run listed it)."""
    header, state = journal.read(staging / JOURNAL_NAME)
    if header is None:
        log.warning("--resume: nothing to resume for %s; starting from the start", config.output_dir)
        _fresh_journal(config, staging, files)
        return journal.State(), files
    journal.check_version(header)
    journal.check_inputs(header, files)
    journal.check_schema(header, config.schema)
    journal.check_output(header, config.compress)
    journal.restore(staging, state)
    log.warning("--resume: %s lines were written before; going on from there", f"{state.lines:,}")
    return state, journal.as_listed(header, files)


def _plan(
    config: Config, files: Sequence[InputFile], output: Path
) -> tuple[tuple[Summary, incremental.Progress] | None, incremental.Plan]:
    """An --incremental run's start: the output's last committed summary and
    state (None: no output, or one without a state, which a full run
    replaces), the output cut back to it, and what to read."""
    found = incremental.read_progress(output)
    previous = None
    if found is not None:
        progress, data = found
        summary = decode(data)
        if summary is not None:
            if summary.schema.sha256 != config.schema.digest():
                raise UsageError(
                    f"output {str(config.output_dir)!r} was written with schema {summary.schema.name!r}; "
                    "--incremental appends to it only with the same schema"
                )
            previous = (summary, progress)
            incremental.cut_back(output, progress)
    return previous, incremental.plan(files, previous[1] if previous else None)


def _fresh_journal(config: Config, staging: Path, files: Sequence[InputFile]) -> None:
    _output.empty(staging)  # emptied, not made again: the run holds this directory
    journal.start(staging, files, config.schema, config.compress)


def _add_profiles(config: Config, summary: Summary) -> None:
    if config.cpu_profile:
        merged = merge_cpu_profiles(config.profile_dir)
        summary.cpu_profile = str(merged) if merged else None
    if config.mem_profile:
        memory = memory_report(config.profile_dir)
        memory["processes"]["main-1"] = {"peak_rss_kib": peak_rss_kib()}
        summary.memory = memory


def make_engine(
    config: Config, files: Sequence[InputFile], staging: Path, resume: journal.State | None = None
) -> Engine:
    """The engine ``--engine`` names, writing into ``staging``, with the run's one retry budget."""
    budget = RetryBudget(config.max_retries)
    if config.engine == "dask":
        from mpevents.dask.engine import DaskEngine, import_distributed

        import_distributed()  # fail early, before any work, when the extra is missing
        return DaskEngine(config, files, staging, budget)
    from mpevents.local.supervisor import LocalEngine

    if resume is None:
        return LocalEngine(config, files, staging, budget)
    return LocalEngine(config, files, staging, budget, resume, lambda: _fresh_journal(config, staging, files))


def drive(engine: Engine, observer: Observer | None, interrupt: _Interrupt | None = None) -> Report:
    """The one polling loop: until the engine reports, look at signals and
    tick the dashboard at least every TICK_S."""
    engine.start()
    if observer is not None:
        observer.start(engine)
    while True:
        if interrupt is not None and interrupt.signal is not None:
            raise Interrupted(interrupt.signal)
        report = engine.poll(TICK_S)
        if report is not None:
            return report
        if observer is not None:
            observer.tick()


class _Interrupt:
    """SIGINT and SIGTERM handlers for the length of a run: the first one is
    noted (the loop ends the run cleanly), a second one kills everything now."""

    def __init__(self, engine: Engine, staging: Path | None, finish: list[int] | None = None) -> None:
        """``staging``: the staging directory to remove on a second signal (None: keep it);
        ``finish``: where a first signal is noted instead, the run going on (a --follow batch)."""
        self.signal: int | None = None
        self._engine, self._staging, self._finish = engine, staging, finish
        self._previous = {signum: signal.signal(signum, self._handle) for signum in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._finish is not None and not self._finish:
            self._finish.append(signum)
            return
        if self.signal is None and self._finish is None:
            self.signal = signum
            return
        self._engine.stop()
        if self._staging is not None:  # a --resume run's staging is kept for the next one
            _output.remove(self._staging)
        os._exit(128 + signum)

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
