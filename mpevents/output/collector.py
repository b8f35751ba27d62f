"""Collector core: results in, the output written in input order; the same for both engines.

Owns what the collector does whatever engine feeds it: the order
(:class:`~mpevents.output.reorder.Reorderer`: results arrive in any order,
span ``s`` of file ``f`` is written only after every earlier one, so each
group file and the rejects follow (file name, line number) whatever the
worker count or chunk size; a repeat, as after a restart, is dropped by its
(file, sequence) key); the counts (:class:`~mpevents.output.tally.Tally`,
behind the :class:`~mpevents.output.report.Report`); ``rejected.jsonl``
(with --compress ``.zst`` or ``.gz``, framed by ``output.frames``),
whose line numbers it makes absolute from the line counts of the spans
before (a worker or task only knows its own); a --resume run's checkpoints
(``output.journal``); and what the scoreboard shows of the writing, for
the dashboard.

Talks to: an engine's sink (``output.sink``), which puts each result's
records in the group files when its turn comes and lets go of a repeat's:
the local collector process (``local.collector``) and the Dask client
(``dask.engine``) each run a :class:`Collector` with a sink of their own;
the staging directory (``rejected.jsonl``, the journal); the scoreboard.
"""

from __future__ import annotations

import heapq
import os
import time
from collections.abc import Sequence
from operator import itemgetter
from pathlib import Path
from typing import BinaryIO, Final, Generic

from mpevents.core import failpoints as _failpoints
from mpevents.core.framing import Flag, Span
from mpevents.core.inputs import InputFile
from mpevents.observe import trace as _trace
from mpevents.observe.board import TOP_GROUPS, Board, CollectorField, FileField, FileState
from mpevents.output import journal
from mpevents.output.frames import Compress, FramedRejects
from mpevents.output.journal import CHECKPOINT_S, State
from mpevents.output.names import JOURNAL_NAME, REJECTS_NAME, group_file_name
from mpevents.output.rejects import jsonl
from mpevents.output.reorder import Reorderer
from mpevents.output.report import FileCounts, Report
from mpevents.output.sink import P, Sink
from mpevents.output.tally import Tally

_TOP_EVERY_S: Final = 0.25
"""How often the largest groups are republished for the dashboard."""


class Collector(Generic[P]):
    """Puts results in order, has ``sink`` write their records, and keeps the
    books; pure bookkeeping, no queues and no processes.

    ``resume``: where a --resume run's journal left off (the staging directory
    is cut back to it); with it, checkpoints are journaled. ``generation``
    counts restarts of the local data plane: test failpoints fire in the first.
    """

    def __init__(
        self,
        files: Sequence[InputFile],
        directory: Path,
        sink: Sink[P],
        board: Board,
        resume: State | None = None,
        generation: int = 0,
        compress: Compress | None = None,
    ) -> None:
        self.files = files
        self.board = board
        self._sink = sink
        if resume is None:
            self._order: Reorderer[P] = Reorderer(len(files))
            self._tally = Tally(len(files), board.reason_names)
        else:
            self._order = Reorderer(len(files), resume.head, resume.next_seq)
            self._tally = Tally.resumed(len(files), resume, board.reason_names)
            self._show_resumed(resume)
        self._directory = directory
        self._compress = compress
        self._rejects: BinaryIO | FramedRejects
        if compress is None:
            self._rejects = open(directory / REJECTS_NAME, "ab" if resume is not None else "wb")  # noqa: SIM115
        else:
            plain = resume.rejects_size if resume is not None else 0
            self._rejects = FramedRejects(directory, compress, resume is not None, plain)
        self._journaled_frames = 0  # the framed rejects' frames the last checkpoint submitted records
        self._sizes: dict[bytes, int] = {}  # the placed group files' sizes on disk
        self._finished_output: tuple[dict[str, tuple[int, int]], int] | None = None
        self._journal = journal.Syncer(directory / JOURNAL_NAME) if resume is not None else None
        self._dirty: set[bytes] = set()  # groups written since the last checkpoint
        self._finished: dict[int, tuple[FileCounts, int]] = {}  # files finished since then
        self._checkpoint_at = time.monotonic()
        self._checkpoint_s = _failpoints.number("checkpoint_s") or CHECKPOINT_S
        self._trace = _trace.tracer()
        self._arrived: dict[tuple[int, int], int] | None = {} if isinstance(self._trace, _trace.Tracer) else None
        self._results = 0
        self._top_at = 0.0
        self._fail_after = _failpoints.number("collector_write_error")
        self._kill_after = _failpoints.number("collector_kill") if generation == 0 else None

    def _show_resumed(self, state: State) -> None:
        """Show on the scoreboard what the interrupted run wrote."""
        board = self.board
        board.set_collector(CollectorField.HEAD, state.head)
        board.set_collector(CollectorField.LINES, state.lines)
        for file in range(state.head):
            board.set_file(file, FileField.STATE, FileState.WRITTEN)
            board.set_file(file, FileField.WRITTEN, self.files[file].size)

    @property
    def done(self) -> bool:
        return self._order.done

    def add(self, span: Span, payload: P) -> None:
        """Take the result of ``span``; write it and whatever it unblocks."""
        repeat = self._order.add(span, payload)
        if repeat is not None:  # after a restart
            self._sink.drop(span, repeat)
            return
        if self._arrived is not None:
            self._arrived[(span.file, span.seq)] = _trace.now_ns()
        for ready_span, ready in self._order.ready():
            self._write(ready_span, ready)

    def _write(self, span: Span, payload: P) -> None:
        if self._fail_after is not None and self._results >= self._fail_after:
            raise OSError(28, os.strerror(28), str(self._rejects.name))
        file = span.file
        if self._arrived is not None:  # the time it waited for the results before it
            self._trace.span("held", self._arrived.pop((file, span.seq)), _trace.now_ns(), tid=1, seq=span.seq)
        first_line = self.files[file].first_line + self._tally.lines(file)
        self._sink.write(span, payload)
        valid = self._tally.add(span, payload)
        if self._journal is not None:
            self._dirty.update(payload.groups)
        if payload.rejects.total:
            self._rejects.write(jsonl(self.files[file].name, first_line, payload.rejects))
        self._results += 1
        self._publish(span, valid, payload.rejects.total, payload.blank, payload.lines)
        if span.flags & Flag.LAST:
            if self._journal is not None:
                self._finished[file] = (self._tally.counts(file), span.end)
            self.board.set_file(file, FileField.STATE, FileState.WRITTEN)
            self.board.set_collector(CollectorField.HEAD, self._order.head)
        if self._kill_after is not None and self._results >= self._kill_after:
            _failpoints.kill_self()
        if self._journal is not None and time.monotonic() - self._checkpoint_at >= self._checkpoint_s:
            self.checkpoint()

    def checkpoint(self) -> None:
        """Have what was written since the last checkpoint synced, then where it
        ends journaled, by the journal's thread; none while one is under way."""
        assert self._journal is not None
        if self._journal.busy():
            return
        sizes = self._sink.flush(self._dirty)
        logs, refs = self._sink.durable()
        rejects = self._rejects
        rejects.flush()
        paths = [str(self._directory / group_file_name(group)) for group in sizes]
        paths += logs
        rejects_files: dict[str, int] = {}
        if isinstance(rejects, FramedRejects):
            # The checkpoint before this one is durable (one at a time): the
            # side files before the frames it records are needed no longer.
            rejects.forget(self._journaled_frames)
            self._journaled_frames = rejects.frames
            rejects_files = rejects.sizes()
            paths += [str(self._directory / name) for name in rejects_files]
        else:
            paths.append(str(self._directory / REJECTS_NAME))
        tally, head = self._tally, self._order.head
        whole = head < len(self.files)
        self._journal.submit(
            paths,
            journal.Checkpoint(
                head=head,
                next_seq=self._order.next_seq(head) if whole else 0,
                next_start=tally.end(head) if whole else 0,
                head_counts=tally.counts(head) if whole else FileCounts(),
                finished=self._finished,
                groups={group.decode(): (size, tally.groups[group]) for group, size in sizes.items()},
                rejects_size=rejects.tell(),
                reasons=list(tally.reasons),
                parts=refs,
                rejects_files=rejects_files,
            ),
        )
        self._dirty, self._finished = set(), {}
        self._checkpoint_at = time.monotonic()

    def _publish(self, span: Span, valid: int, rejected: int, blank: int, lines: int) -> None:
        """Show what was written on the scoreboard, for the dashboard."""
        board, tally = self.board, self._tally
        written = self._on_disk(span)
        before = board.file(span.file, FileField.WRITTEN)
        board.set_file(span.file, FileField.WRITTEN, written)
        board.set_file(span.file, FileField.LINES, tally.lines(span.file))
        board.set_collector(CollectorField.RESULTS, self._results)
        board.set_collector(CollectorField.RECORDS, board.collector(CollectorField.RECORDS) + valid)
        board.set_collector(CollectorField.REJECTED, board.collector(CollectorField.REJECTED) + rejected)
        board.set_collector(CollectorField.BLANK, board.collector(CollectorField.BLANK) + blank)
        board.set_collector(CollectorField.LINES, board.collector(CollectorField.LINES) + lines)
        board.set_collector(CollectorField.BYTES, board.collector(CollectorField.BYTES) + written - before)
        if rejected:
            for index, count in enumerate(tally.reasons):
                board.set_reason(index, count)
        now = time.monotonic()
        if now - self._top_at >= _TOP_EVERY_S or span.file + 1 >= len(self.files):
            self._top_at = now
            self._publish_groups()

    def placed(self, groups: dict[bytes, tuple[int, int]]) -> None:
        """Count the records of groups placed since (the local engine's, at the end)."""
        values = groups.values()  # (records, size): each taken by a C-level pass, not a step per group
        self._tally.add_groups(dict(zip(groups, map(itemgetter(0), values))))
        if self._compress is not None:  # (read only to list the compressed files)
            self._sizes.update(zip(groups, map(itemgetter(1), values)))
        self._publish_groups()

    def finish(self, group_bytes: int) -> None:
        """The output is whole (``group_bytes``: the group files' bytes,
        decompressed): with --compress, the rejects' last frame is written,
        their side files removed, and the files' sizes kept for the report."""
        rejects = self._rejects
        if not isinstance(rejects, FramedRejects):
            return
        if self._journal is not None:  # its thread may still sync a side file
            self._journal.close()
            self._journal = None
        plain = rejects.tell()
        rejects.close()
        assert self._compress is not None
        files = {
            self._compress.name(group_file_name(group)): (self._tally.groups[group], size)
            for group, size in self._sizes.items()  # in summary.json's order there (``_summary``)
        }
        files[rejects.path.name] = (sum(self._tally.reasons), rejects.path.stat().st_size)
        self._finished_output = (files, group_bytes + plain)

    def _publish_groups(self) -> None:
        """Show the groups counted so far, and the largest, on the scoreboard."""
        groups = self._tally.groups
        self.board.set_collector(CollectorField.GROUPS, len(groups))
        top = heapq.nlargest(TOP_GROUPS, groups.items(), key=itemgetter(1))
        self.board.set_top_groups(top)

    def _on_disk(self, span: Span) -> int:
        """How far into its file on disk ``span`` ends: its end, or for a
        compressed file an estimate from how much its reader's bytes inflated."""
        info = self.files[span.file]
        if info.compression is None or span.flags & Flag.LAST:
            return info.size if span.flags & Flag.LAST else span.end
        read, inflated = (
            self.board.file(span.file, FileField.BYTES_READ),
            self.board.file(span.file, FileField.INFLATED),
        )
        return min(info.size, span.end * read // inflated) if inflated else 0

    def close(self) -> None:
        try:
            self._sink.close()  # may raise what a removal on the sink's thread met
        finally:
            if isinstance(self._rejects, FramedRejects):
                self._rejects.abandon()  # unless finished: the side file is what a --resume run goes on from
            else:
                self._rejects.close()
            if self._journal is not None:
                self._journal.close()

    def report(self) -> Report:
        """The counts main needs for summary.json."""
        report = self._tally.report()
        if self._finished_output is not None:
            report.output_files, report.output_plain = self._finished_output
        return report
