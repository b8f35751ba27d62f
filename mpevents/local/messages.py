"""What travels between processes: one message per span of lines, never per line.

    work queue    reader -> worker      Span    (where a run of whole lines lies in its file)
                  collector -> worker   Span flagged PLACE (shard k of K: write those group files)
    result queue  worker -> collector   Result  (its span, its counts and rejects, and where its
                                                 records wait in the worker's part log: ``output.parts``;
                                                 for a placing, its groups' counts)
    report pipe   collector -> main     Report  (the counts for summary.json, once, at the end:
                                                 ``output.report``)

A span names its bytes rather than carrying them: the worker reads them
with one pread, so they are copied once, from the page cache, instead of
being read, pickled and piped by the reader and read and unpickled again by
the worker (3% of a run's CPU, measured on 10M lines). Its records do not
travel either: the worker appends them to its part log, and the result
says where, so the collector's cost per span does not grow with its groups.

A compressed file cannot be read at an offset, so its reader leaves each
span's decompressed bytes in a file in RAM for the worker (``local.spool``).

Spans and results are NamedTuples of plain values, cheap to pickle and plain
to read. ``None`` on the work queue tells a worker to stop.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from mpevents.core.framing import Span
from mpevents.output.parts import PartRef
from mpevents.output.rejects import SpanRejects


class PartResult(NamedTuple):
    """A span's result: its counts and rejects; its records wait in a part log at ``ref``."""

    lines: int
    blank: int
    rejects: SpanRejects
    ref: PartRef | None
    """None: the span has no records."""

    @property
    def groups(self) -> Mapping[bytes, tuple[int, int]]:
        """None here: each group's records are counted when they are placed."""
        return _NO_GROUPS


_NO_GROUPS: Mapping[bytes, tuple[int, int]] = MappingProxyType({})


class PlaceResult(NamedTuple):
    """A placing's result (its span flagged PLACE): each of its shard's groups' (records, bytes)."""

    groups: dict[bytes, tuple[int, int]]


class Result(NamedTuple):
    span: Span
    result: PartResult | PlaceResult
