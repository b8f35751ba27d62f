"""Ledger: what the local engine must remember to recover from a death, in shared memory.

Owns, each cell with one writer:

* per worker slot, the span it holds and the one it sent before it (written
  by the worker): when a worker dies, main hands both to its replacement;
* per input file, the reader slot that took it (written by the reader, under
  the file queue's lock) and its first unwritten span (written by the
  collector): when a reader dies, its replacement resumes each of its files
  there;
* the head, the file being written (collector), and the credits.

Credits: the collector writes files in order, so spans of a later file that
arrive early must wait in its memory. A reader whose file is not yet being
written takes credits for each span it sends, one per 64 KiB of it
(:func:`credit_units`), and flags the span CREDIT; the collector gives them
back for every CREDIT span it takes, written or dropped as a repeat (a
restarted reader sends again what its predecessor had sent), except a REDO
span (a dead worker's span handed to its replacement) that repeats one it
already had: those credits came back with the first copy. Both flags are the
ledger's (:class:`LedgerFlag`), kept in the span's ``flags`` beside
framing's own. This bounds the
bytes the collector holds back, whatever the file sizes, while the current
file's reader never waits for a credit; and counting bytes rather than spans
lets a hundred small files be in flight where a span count would allow a
handful.

The scoreboard (``observe.board``) only counts, for the dashboard and the summary;
nothing here is shown to the user.
"""

from __future__ import annotations

import enum
import multiprocessing.context
from multiprocessing.sharedctypes import RawArray, RawValue
from typing import Any, Final

from mpevents.core.framing import Flag, Span
from mpevents.output.parts import Placing

CREDIT_BYTES: Final = 1 << 16
"""One credit per this many bytes of a span: small enough that a file of a
few lines takes one credit, not a whole span's worth."""
CREDIT_POLL_S: Final = 0.005
"""How often a reader waiting for a credit looks whether its file's turn came:
often, because until it does the workers may run dry; a wake-up costs microseconds."""


class LedgerFlag(enum.IntFlag):
    """The ledger's bits in a span's ``flags``, beside framing's own
    (``core.framing.Flag``: LAST 1, TRUNCATED 4), which it leaves free."""

    CREDIT = 2
    """Sent ahead of its file's turn: it holds credits, which the collector returns."""
    REDO = 8
    """Handed again to a replacement worker: whatever credits it holds were taken for an earlier copy."""
    PLACE = 16
    """Not a span of input: a placing, put on the work queue by the collector once
    every span is in (its shard, shards, first and last block in the span's
    four numbers: :func:`place_span`, ``output.parts.Placing``). Held in a
    worker's slot like a span, so that a dead placer's is done again."""


def place_span(placing: Placing) -> Span:
    """The work queue's message for ``placing``."""
    return Span(*placing, Flag(LedgerFlag.PLACE))


def placing_of(span: Span) -> Placing:
    """The placing a PLACE span stands for."""
    return Placing(span.file, span.seq, span.start, span.end)


def credit_units(span: Span) -> int:
    """How many credits a span takes: one per 64 KiB of what a worker reads."""
    if span.flags & Flag.TRUNCATED:
        return 1  # a long line of which only the start is read
    return max(1, -(-(span.end - span.start) // CREDIT_BYTES))


def credit_budget(chunks: int, chunk_bytes: int) -> int:
    """The credits for ``chunks`` whole chunks ahead of the file being written."""
    return chunks * credit_units(Span(0, 0, 0, chunk_bytes))


class _Held(enum.IntEnum):
    """A worker slot's cells: the span it holds, and the one it sent before."""

    BUSY = 0  # 1 while it holds the span below
    FILE = 1
    SEQ = 2
    START = 3
    END = 4
    FLAGS = 5
    PREV_SET = 6  # 1 once the span below is set; 0 while it is rewritten
    PREV_FILE = 7
    PREV_SEQ = 8
    PREV_START = 9
    PREV_END = 10
    PREV_FLAGS = 11


class _File(enum.IntEnum):
    READER = 0  # the reader slot that took it, plus one (0: none yet)
    NEXT_SEQ = 1  # its first unwritten span,
    NEXT_START = 2  # and where that span starts


_SPAN_WIDTH: Final = 5
_WORKER_WIDTH: Final = len(_Held)
_FILE_WIDTH: Final = len(_File)


class Ledger:
    """The recovery state of one attempt of the local engine; see the module docstring.

    ``credits`` is a semaphore made with the run's multiprocessing context,
    or None where nothing runs ahead (the Dask engine's collector).
    """

    def __init__(self, files: int, workers: int, credits: Any = None, budget: int = 0) -> None:
        self.budget = budget
        self._workers: Any = RawArray("q", max(1, workers) * _WORKER_WIDTH)
        self._files: Any = RawArray("q", max(1, files) * _FILE_WIDTH)
        self._head: Any = RawValue("q", 0)
        self._credits = credits

    @classmethod
    def make(cls, ctx: multiprocessing.context.BaseContext, files: int, workers: int, budget: int) -> Ledger:
        return cls(files, workers, ctx.Semaphore(budget), budget)

    # --- workers ----------------------------------------------------------------

    def hold(self, slot: int, span: Span) -> None:
        """A worker starts on ``span``; BUSY is written last."""
        base = slot * _WORKER_WIDTH
        cells = self._workers
        cells[base + 1 : base + 1 + _SPAN_WIDTH] = list(span)
        cells[base + _Held.BUSY] = 1

    def sent(self, slot: int) -> None:
        """The held span's result is queued: remember it as the one sent before."""
        base = slot * _WORKER_WIDTH
        cells = self._workers
        cells[base + _Held.PREV_SET] = 0
        cells[base + _Held.PREV_FILE : base + _Held.PREV_FILE + _SPAN_WIDTH] = cells[base + 1 : base + 1 + _SPAN_WIDTH]
        cells[base + _Held.PREV_SET] = 1
        cells[base + _Held.BUSY] = 0

    def held(self, slot: int) -> tuple[list[Span], Span | None]:
        """What a dead worker may not have delivered, flagged REDO, and of
        those the span it was working on when it died (None if it was idle)."""
        base = slot * _WORKER_WIDTH
        cells = self._workers
        spans = []
        if cells[base + _Held.PREV_SET]:
            spans.append(_span(cells[base + _Held.PREV_FILE : base + _Held.PREV_FILE + _SPAN_WIDTH]))
        busy = _span(cells[base + 1 : base + 1 + _SPAN_WIDTH]) if cells[base + _Held.BUSY] else None
        if busy is not None:
            spans.append(busy)
        return spans, busy

    # --- files --------------------------------------------------------------------

    def took(self, file: int, slot: int) -> None:
        self._files[file * _FILE_WIDTH + _File.READER] = slot + 1

    def unwritten_files_of(self, slot: int) -> list[int]:
        """The files reader ``slot`` took that are not written yet, in input order."""
        cells, head = self._files, self.head()
        files = len(cells) // _FILE_WIDTH
        return [file for file in range(head, files) if cells[file * _FILE_WIDTH + _File.READER] == slot + 1]

    def resume_point(self, file: int) -> tuple[int, int]:
        """The sequence number and start of ``file``'s first unwritten span."""
        base = file * _FILE_WIDTH
        return int(self._files[base + _File.NEXT_SEQ]), int(self._files[base + _File.NEXT_START])

    def head(self) -> int:
        return int(self._head.value)

    # --- the collector ------------------------------------------------------------

    def resume_from(self, head: int, seq: int, start: int) -> None:
        """A --resume run: every file before ``head`` is written, and ``head`` up to span ``seq`` at ``start``."""
        self._head.value = head
        if head * _FILE_WIDTH < len(self._files):
            self._files[head * _FILE_WIDTH + _File.NEXT_SEQ] = seq
            self._files[head * _FILE_WIDTH + _File.NEXT_START] = start

    def written(self, span: Span) -> None:
        """The collector wrote ``span``: move its file on, and return its credits."""
        base = span.file * _FILE_WIDTH
        self._files[base + _File.NEXT_SEQ] = span.seq + 1
        self._files[base + _File.NEXT_START] = span.end
        if span.flags & Flag.LAST:
            self._head.value = span.file + 1
        self._release(span)

    def dropped(self, span: Span) -> None:
        """The collector dropped ``span`` as a repeat of one it already had."""
        if not span.flags & LedgerFlag.REDO:
            self._release(span)

    def _release(self, span: Span) -> None:
        if span.flags & LedgerFlag.CREDIT:
            for _ in range(credit_units(span)):
                self._credits.release()

    # --- readers ------------------------------------------------------------------

    def take_credits(self, span: Span) -> Span:
        """``span``, flagged CREDIT if credits had to be taken for it.

        None are needed once its file is being written. Credits are taken one
        at a time; a reader whose file's turn comes while it waits gives back
        those it holds, so readers waiting with some in hand can never hold up
        the file being written.
        """
        units, taken = credit_units(span), 0
        while taken < units:
            if self.head() >= span.file:
                for _ in range(taken):
                    self._credits.release()
                return span
            if self._credits.acquire(timeout=CREDIT_POLL_S):
                taken += 1
        return span._replace(flags=span.flags | LedgerFlag.CREDIT)

    def credits_free(self) -> int:
        """Credits not taken now (the budget, when nothing is in flight)."""
        return int(self._credits.get_value())


def _span(cells: Any) -> Span:
    file, seq, start, end, flags = (int(value) for value in cells)
    return Span(file, seq, start, end, Flag(flags) | LedgerFlag.REDO)
