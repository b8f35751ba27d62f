"""Rejects: a span's rejected lines as they travel to the collector, and as ``rejected.jsonl`` holds them.

Owns the bytes of a line of ``rejected.jsonl`` (``{"file","line","reason","raw"}``,
msgspec's compact JSON) and how they are split between the processes: whoever
checked the span (a local worker, a Dask task) encodes each reject but for its
line number (:func:`encode`), which only the collector knows, since it
counts the lines of the file before the span; the collector numbers them
and joins them (:func:`jsonl`) in C-level passes. So the collector's work
per reject is a number formatted, not a struct built, pickled and encoded:
at 1 line in 200 rejected that was half of its CPU, and a log with many
broken lines would have made it the one process every worker waits on.

Talks to: nothing; the workers and tasks encode, ``output.collector`` and
``output.tally`` read.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from operator import add, attrgetter
from typing import Final, NamedTuple

import msgspec

from mpevents.core.spec import Reject


class _Head(msgspec.Struct, gc=False):
    file: str


class _Tail(msgspec.Struct, gc=False):
    reason: str
    raw: str


_ENCODER: Final = msgspec.json.Encoder()
_LINE_KEY: Final = b',"line":'


class SpanRejects(NamedTuple):
    """A span's rejects, encoded but for their line numbers."""

    lines: list[int]
    """Each reject's line, counted from 1 within the span."""
    tails: list[bytes]
    """Each reject's JSON after its line number: ``,"reason":...,"raw":...}`` and its newline."""
    reasons: dict[str, int]
    """How many rejects of each reason."""

    @property
    def total(self) -> int:
        return len(self.lines)


def encode(rejects: Sequence[Reject]) -> SpanRejects:
    """``rejects`` as they travel: every byte of their lines but the file's name and their numbers."""
    if not rejects:
        return SpanRejects([], [], {})
    tails = [b"," + _ENCODER.encode(_Tail(reject.reason, reject.raw))[1:] + b"\n" for reject in rejects]
    return SpanRejects([reject.line for reject in rejects], tails, dict(Counter(map(attrgetter("reason"), rejects))))


def jsonl(name: str, first_line: int, rejects: SpanRejects) -> bytes:
    """The lines of ``rejected.jsonl`` for ``rejects`` of file ``name``, numbered from its line ``first_line`` + 1."""
    head = _ENCODER.encode(_Head(name))[:-1] + _LINE_KEY  # {"file":"...","line":
    numbers = map(b"%d".__mod__, map(add, rejects.lines, itertools.repeat(first_line)))
    return b"".join(itertools.chain.from_iterable(zip(itertools.repeat(head), numbers, rejects.tails)))
