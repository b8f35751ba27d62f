"""What travels between processes: one message per span of lines, never per line.

    work queue    reader -> worker      Span    (where a run of whole lines lies in its file)
    result queue  worker -> collector   Result  (its span, and per-group NDJSON, rejects, counts;
                                                 for a big result, only where its NDJSON waits, ``local.spool``)
    report pipe   collector -> main     Report  (the counts for summary.json, once, at the end:
                                                 ``output.report``)

A span names its bytes rather than carrying them: the worker reads them
with one pread, so they are copied once, from the page cache, instead of
being read, pickled and piped by the reader and read and unpickled again by
the worker (3% of a run's CPU, measured on 10M lines).

A compressed file cannot be read at an offset, so its reader leaves each
span's decompressed bytes in a file in RAM for the worker (``local.spool``).

Spans and results are NamedTuples of plain values, cheap to pickle and plain
to read. ``None`` on the work queue tells a worker to stop.
"""

from __future__ import annotations

from typing import NamedTuple

from mpevents.core.framing import Span
from mpevents.core.spec import ChunkResult, Reject


class SpooledResult(NamedTuple):
    """A ChunkResult whose records wait in a spool file (``local.spool``).

    ``parts`` says what the file holds, one part after another, as (group,
    bytes): each group's parts in order, but groups may take turns (see
    :class:`~mpevents.local.spool.ResultWriter`). ``groups`` maps each group to
    (records, bytes).
    """

    lines: int
    blank: int
    groups: dict[bytes, tuple[int, int]]
    rejects: list[Reject]
    path: str
    parts: list[tuple[bytes, int]]


LocalPayload = ChunkResult | SpooledResult
"""A local result's records: in its message, or in a spool file (the local
collector's sink takes both: ``local.collector.LocalSink``)."""


class Result(NamedTuple):
    span: Span
    result: LocalPayload
