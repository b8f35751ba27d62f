"""The local collector process: puts the workers' results in order, then has them placed.

Owns the process's loop (:func:`collect`, started with a :class:`CollectorJob`)
and its sink (:class:`LocalSink`). A worker's result says only where its
records wait (a block of its part log, ``output.parts``), so putting it in
order costs the same whatever its number of groups: the sink keeps the
blocks' order and settles each span in the ledger (its reader's credits come
back). Once every span is in, the collector writes that order to the parts
directory and puts one placing per worker on the work queue
(``output.parts.plan``); each worker writes its share of the group files and
sends back its groups' counts, which complete the tally.

Talks to: the result queue (takes :class:`~mpevents.local.messages.Result`),
the work queue (puts the placings), the collector core
(``output.collector``: the order, the counts, the rejects, the journal's
checkpoints, the scoreboard), the ledger, the parts directory, and at the end
the report pipe (the :class:`~mpevents.output.report.Report` behind
``summary.json``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path

import msgspec

from mpevents.core import failpoints as _failpoints
from mpevents.core.framing import Span
from mpevents.core.inputs import InputFile
from mpevents.local.ledger import Ledger, place_span
from mpevents.local.messages import PartResult, PlaceResult, Result
from mpevents.local.queue import MessageQueue
from mpevents.observe import trace as _trace
from mpevents.observe.board import Board, CollectorField
from mpevents.output.collector import Collector
from mpevents.output.frames import Compress
from mpevents.output.journal import State
from mpevents.output.names import PARTS_DIR
from mpevents.output.parts import PartRef, plan, write_order


class LocalSink:
    """The local engine's :class:`~mpevents.output.sink.Sink`: keeps each
    result's block in input order, and settles its span in the ledger."""

    def __init__(self, parts: Path, ledger: Ledger, refs: Sequence[PartRef] = ()) -> None:
        self.parts = parts
        self.refs: list[PartRef] = list(refs)
        """Every block so far, in input order (a --resume run's first)."""
        self._ledger = ledger
        self._new: list[PartRef] = []  # since the last checkpoint
        self._logs: set[str] = set()

    def write(self, span: Span, payload: PartResult) -> None:
        if payload.ref is not None:
            self.refs.append(payload.ref)
            self._new.append(payload.ref)
            self._logs.add(payload.ref.log)
        self._ledger.written(span)

    def drop(self, span: Span, payload: PartResult) -> None:
        self._ledger.dropped(span)

    def flush(self, groups: Iterable[bytes]) -> dict[bytes, int]:
        return {}  # no group file is written before the placings

    def durable(self) -> tuple[list[str], list[PartRef]]:
        paths = [str(self.parts / log) for log in sorted(self._logs)]
        new, self._new, self._logs = self._new, [], set()
        return paths, new

    def close(self) -> None:
        pass


class CollectorJob(msgspec.Struct, frozen=True):
    """What the collector process is started with."""

    files: Sequence[InputFile]
    directory: Path
    """The staging directory."""
    results: MessageQueue[Result]
    """The result queue, from the workers."""
    work: MessageQueue[Span | None]
    """The work queue, to which the placings go."""
    shards: int
    """Placings at the end: one per worker."""
    report: Connection
    """The sending end of the report pipe, to main."""
    board: Board
    ledger: Ledger
    generation: int = 0
    """Restarts of the data plane before this one: test failpoints fire in the first."""
    resume: State | None = None
    """Where a --resume run starts (see ``output.collector.Collector``)."""
    compress: Compress | None = None
    """--compress (``output.frames``): the rejects' format; None: plain."""


def collect(job: CollectorJob) -> None:
    """The collector process body: every result in order, then the placings;
    then report the counts."""
    board = job.board
    resume = job.resume
    sink = LocalSink(job.directory / PARTS_DIR, job.ledger, resume.parts if resume is not None else ())
    collector = Collector(job.files, job.directory, sink, board, resume, job.generation, job.compress)
    slow = _failpoints.number("collector_slow")
    trace = _trace.tracer()
    try:
        while not collector.done:
            waited = _trace.now_ns()
            result: Result = job.results.get()
            got = _trace.now_ns()
            trace.span("wait for result", waited, got)
            if slow:
                time.sleep(slow)
            started = time.perf_counter_ns()
            assert isinstance(result.result, PartResult)
            collector.add(result.span, result.result)
            trace.span("order", got, _trace.now_ns(), file=result.span.file, seq=result.span.seq)
            board.set_collector(
                CollectorField.BUSY_NS, board.collector(CollectorField.BUSY_NS) + time.perf_counter_ns() - started
            )
        _place(job, sink, collector)
    finally:
        collector.close()
    job.report.send(collector.report())
    job.report.close()


def _place(job: CollectorJob, sink: LocalSink, collector: Collector[PartResult]) -> None:
    """Have the workers write the group files, a placing each, and count what they wrote."""
    write_order(sink.parts, sink.refs)
    placings = plan(sink.refs, job.shards, by_hash=job.compress is not None)
    board = job.board  # the dashboard's "group files" line
    board.set_collector(CollectorField.PLACE_START_NS, time.monotonic_ns())
    board.set_collector(CollectorField.TO_PLACE, sum(ref.size for ref in sink.refs))
    for placing in placings:
        job.work.put_direct(place_span(placing))
    placed: set[Span] = set()
    while len(placed) < len(placings):
        result: Result = job.results.get()
        span, payload = result
        if isinstance(payload, PlaceResult):
            if span not in placed:  # a placing done again only repeats the first's counts
                placed.add(span)
                collector.placed(payload.groups)
        else:  # a dead worker's last span, handed to its replacement: a repeat
            collector.add(span, payload)
    collector.finish(sum(ref.size for ref in sink.refs))
