"""The local collector process: puts the workers' results in order, then has them placed.

Owns the process's loop (:func:`collect`, started with a :class:`CollectorJob`)
and its sink (:class:`LocalSink`). A worker's result says only where its
records wait (a block of its part log, ``output.parts``), so putting it in
order costs the same whatever its number of groups: the sink keeps the
blocks' order and settles each span in the ledger (its reader's credits come
back). Each time the blocks in order fill an epoch (:class:`_Epochs`), and
once more when every span is in, the collector writes their order to the
parts directory and puts one placing per worker on the work queue
(``output.parts.plan``); each worker writes its share of the group files and
sends back its groups' counts, which complete the tally, and the part log
files whose blocks are all placed are removed.

Talks to: the result queue (takes :class:`~mpevents.local.messages.Result`),
the work queue (puts the placings), the collector core
(``output.collector``: the order, the counts, the rejects, the journal's
checkpoints, the scoreboard), the ledger, the parts directory, and at the end
the report pipe (the :class:`~mpevents.output.report.Report` behind
``summary.json``).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection
from operator import itemgetter
from pathlib import Path
from typing import Final

import msgspec

from mpevents.core import failpoints as _failpoints
from mpevents.core.framing import Span
from mpevents.core.inputs import InputFile
from mpevents.local.ledger import Ledger, place_span, placing_of
from mpevents.local.messages import PartResult, PlaceResult, Result
from mpevents.local.queue import MessageQueue
from mpevents.observe import trace as _trace
from mpevents.observe.board import Board, CollectorField
from mpevents.output.collector import Collector
from mpevents.output.frames import Compress
from mpevents.output.journal import State
from mpevents.output.names import PARTS_DIR
from mpevents.output.parts import ORDER_NAME, PartRef, plan, write_order

EPOCH_CHUNKS: Final = 16
"""An epoch is placed once the blocks in order since the last hold this
many chunks' records (16 MiB at the default --chunk-bytes): enough that its
costs (every placing looks at each of its blocks' indexes, and opens each of
its group files once more) are small beside its bytes, and little enough
that the part logs hold about this much, plus a file per worker, whatever
the input. At 16 MiB, 4 or 8 files, on wide-2M: part log writes that reuse
freed pages, workers' CPU 13% down; 64 MiB: half of that."""
GROUPS_PER_EPOCH_CHUNK: Final = 32
"""And at least a chunk's worth per this many groups of its biggest block
(32 KiB a group at the default): an epoch opens each of its group files,
which for 100,000 groups takes seconds, so that such a run is one epoch."""


class _Remover:
    """Unlinks placed part log files on a thread of its own, so that the
    collector's thread only keeps the books: freeing a 4 MiB file's pages
    (and, on a filesystem that trims at once, its blocks) was the most CPU
    it spent at 200 groups (57 files, 39 ms of its 0.15 s on tmpfs). The
    first error is raised at the next removal or at :meth:`close`."""

    def __init__(self) -> None:
        self._paths: queue.SimpleQueue[Path | None] = queue.SimpleQueue()
        self._error: OSError | None = None
        self._thread: threading.Thread | None = None  # started at the first removal

    def remove(self, path: Path) -> None:
        self._raise()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mpevents-remove", daemon=True)
            self._thread.start()
        self._paths.put(path)

    def _run(self) -> None:
        while (path := self._paths.get()) is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._error = self._error or exc

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Wait for every removal handed over."""
        if self._thread is not None:
            self._paths.put(None)
            self._thread.join()
            self._thread = None
        self._raise()


class LocalSink:
    """The local engine's :class:`~mpevents.output.sink.Sink`: keeps each
    result's block in input order, and settles its span in the ledger."""

    def __init__(self, parts: Path, ledger: Ledger, refs: Sequence[PartRef] = (), segment_bytes: int = 1 << 62) -> None:
        self.parts = parts
        self._segment_bytes = segment_bytes
        self.refs: list[PartRef] = list(refs)
        """Every block so far, in input order (a --resume run's first)."""
        self._ledger = ledger
        self._new: list[PartRef] = []  # since the last checkpoint
        self._logs: set[str] = set()
        # Per part log file: its blocks' bytes seen, where they end, the last one's place in refs.
        self._seen: dict[str, list[int]] = {}
        self._remover = _Remover()

    def write(self, span: Span, payload: PartResult) -> None:
        if payload.ref is not None:
            self._see(payload.ref, len(self.refs))
            self.refs.append(payload.ref)
            self._new.append(payload.ref)
            self._logs.add(payload.ref.log)
        self._ledger.written(span)

    def drop(self, span: Span, payload: PartResult) -> None:
        if payload.ref is not None:  # a repeat's block: never placed, but it fills its file
            self._see(payload.ref, -1)
        self._ledger.dropped(span)

    def _see(self, ref: PartRef, place: int) -> None:
        seen = self._seen.get(ref.log)
        if seen is None:
            seen = self._seen[ref.log] = [0, 0, -1]
        seen[0] += ref.size + ref.index_size
        seen[1] = max(seen[1], ref.offset + ref.size + ref.index_size)
        seen[2] = max(seen[2], place)

    def remove_placed(self, placed: int) -> None:
        """Remove the part log files whose every block is among the first
        ``placed`` of the order: whole (its segment size reached, so no block
        comes after), every block of theirs seen. A file with a block never
        reported (its worker died before it sent the result) stays to the end.
        They go on a thread of their own: :meth:`close` waits for them."""
        for log, (taken, end, last) in list(self._seen.items()):
            if taken == end >= self._segment_bytes and last < placed:
                self._remover.remove(self.parts / log)
                del self._seen[log]

    def flush(self, groups: Iterable[bytes]) -> dict[bytes, int]:
        return {}  # no group file is written before the placings

    def durable(self) -> tuple[list[str], list[PartRef]]:
        paths = [str(self.parts / log) for log in sorted(self._logs)]
        new, self._new, self._logs = self._new, [], set()
        return paths, new

    def close(self) -> None:
        self._remover.close()


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
    segment_bytes: int = 1 << 62
    """The size of each file of a part log (``output.parts.PartLog``): one that holds this much is whole."""
    epoch_bytes: int = 1 << 62
    """The bytes of blocks in order that make an epoch (EPOCH_CHUNKS chunks; the default: the whole run)."""


def collect(job: CollectorJob) -> None:
    """The collector process body: every result in order, the epochs placed
    as they fill, then the last; then report the counts."""
    board = job.board
    resume = job.resume
    refs = resume.parts if resume is not None else ()
    sink = LocalSink(job.directory / PARTS_DIR, job.ledger, refs, job.segment_bytes)
    collector = Collector(job.files, job.directory, sink, board, resume, job.generation, job.compress)
    # A --resume run keeps every block to the end (its journal names them), and
    # compressed output is framed over each group's whole file: one epoch each.
    epochs = _Epochs(job, sink, collector, mid_run=job.resume is None and job.compress is None)
    slow = _failpoints.number("collector_slow")
    trace = _trace.tracer()
    try:
        while not collector.done:
            waited = _trace.now_ns()
            result: Result = job.results.get()
            got = _trace.now_ns()
            trace.span("wait for result", waited, got)
            if isinstance(result.result, PlaceResult):
                epochs.placed(result.span, result.result)
                continue
            if slow:
                time.sleep(slow)
            started = time.perf_counter_ns()
            collector.add(result.span, result.result)
            epochs.step()
            trace.span("order", got, _trace.now_ns(), file=result.span.file, seq=result.span.seq)
            board.set_collector(
                CollectorField.BUSY_NS, board.collector(CollectorField.BUSY_NS) + time.perf_counter_ns() - started
            )
        epochs.last()
    finally:
        collector.close()
    job.report.send(collector.report())
    job.report.close()


class _Epochs:
    """The placings of one run, an epoch at a time.

    An epoch is a run of blocks in order; its placings (one per worker,
    ``output.parts.plan``) write them into the group files after the
    epochs before, whose files' sizes they are given. Epochs are placed one
    after another: the next begins once every placing of the last is in. So
    the part log files whose blocks are all placed are removed while the
    run goes on, and the pages they took are the next ones written: the
    records are not all held twice, in the part logs and the group files, at
    the end. Without ``mid_run``, the whole run is one epoch, placed at the end.

    The collector never waits on the work queue while the workers may wait
    on it: an epoch's placings go on the queue as it has room, between
    results."""

    def __init__(self, job: CollectorJob, sink: LocalSink, collector: Collector[PartResult], mid_run: bool) -> None:
        self._job, self._sink, self._collector = job, sink, collector
        self._mid_run = mid_run
        self._base = 0  # the first block of the epoch placed next
        self._sizes: dict[bytes, int] = {}  # where each group file ends after the placed epochs
        self._end: int | None = None  # the block after the epoch being placed (None: none is)
        self._waiting: set[Span] = set()  # its placings not yet in
        self._unsent: list[Span] = []  # its placings not yet on the work queue
        self._done: set[Span] = set()  # every placing that is in

    def step(self) -> None:
        """After a result: begin an epoch if one is due, and send what has room."""
        if self._end is None and self._mid_run and self._due():
            self._begin(final=False)
        while self._unsent and self._job.work.put_direct(self._unsent[0], block=False):
            self._unsent.pop(0)

    def _due(self) -> bool:
        refs, epoch = self._sink.refs[self._base :], self._job.epoch_bytes
        held = sum(ref.size + ref.index_size for ref in refs)
        # Each placing opens every file of its groups once an epoch: with many
        # groups an epoch holds enough bytes of each to be worth it.
        groups = max(ref.groups for ref in refs) if held else 0
        return held >= epoch and held >= epoch // EPOCH_CHUNKS * (groups // GROUPS_PER_EPOCH_CHUNK)

    def _begin(self, final: bool) -> None:
        refs = self._sink.refs[self._base :]
        write_order(self._sink.parts, refs, self._base, self._sizes, final)
        placings = plan(refs, self._job.shards, by_hash=self._job.compress is not None, base=self._base)
        self._unsent = [place_span(placing) for placing in placings]
        self._waiting = set(self._unsent)
        self._end = self._base + len(refs) if placings else None  # None: no block to place

    def placed(self, span: Span, payload: PlaceResult) -> None:
        """A placing's result (a copy of one done again repeats the first's counts)."""
        if span in self._done or span not in self._waiting:
            return
        self._waiting.discard(span)
        self._done.add(span)
        groups = payload.groups
        self._collector.placed(groups)
        sizes, placing = self._sizes, placing_of(span)
        assert self._end is not None
        # Shards of hashes (``plan``) never share a group, nor does a placing over the whole epoch.
        if placing.shards > 1 or placing.last - placing.first == self._end - self._base:
            sizes.update(zip(groups, map(itemgetter(1), groups.values())))  # its groups are its alone this epoch
        else:
            for group, (_, size) in groups.items():  # by ranges of blocks, the last range's end is the file's
                sizes[group] = max(sizes.get(group, 0), size)
        if not self._waiting:
            self._base, self._end = self._end, None
            if self._mid_run:  # (a --resume run's journal names every block until the output is in)
                (self._sink.parts / ORDER_NAME).unlink()  # a copy done again finds its epoch placed
                self._sink.remove_placed(self._base)

    def last(self) -> None:
        """Once every span is in: place the rest, and count what the placings wrote."""
        job, refs = self._job, self._sink.refs
        # The dashboard's "group files" line, from now: every line is checked,
        # and what is left is placing, the epoch in flight included (it may
        # take most of the run's end). TO_PLACE last: it turns the line on.
        board = job.board
        board.set_collector(CollectorField.PLACED_BEFORE, board.placed())
        board.set_collector(CollectorField.PLACE_START_NS, time.monotonic_ns())
        board.set_collector(CollectorField.TO_PLACE, sum(ref.size for ref in refs))
        while self._end is not None:  # the epoch being placed first
            self._wait()
        self._begin(final=True)
        while self._end is not None:
            self._wait()
        self._collector.finish(sum(ref.size for ref in refs))

    def _wait(self) -> None:
        for span in self._unsent:  # the queue holds no more spans: it will have room
            self._job.work.put_direct(span)
        self._unsent = []
        result: Result = self._job.results.get()
        span, payload = result
        if isinstance(payload, PlaceResult):
            self.placed(span, payload)
        else:  # a dead worker's last span, handed to its replacement: a repeat
            self._collector.add(span, payload)
