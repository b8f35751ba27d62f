"""Report: the counts behind ``summary.json``, as the collector gives them at the end.

Owns :class:`FileCounts` (one input file's lines by outcome, also what the
journal records per file) and :class:`Report`. Talks to: nothing; the
collector's tally (``output.tally``) makes a report, an engine hands it to
the run (``_engine``, ``_run``), and the summary (``_summary``) is built
from it. A msgspec Struct, typed end to end: the local collector sends it
to main through a pipe.
"""

from __future__ import annotations

import msgspec


class FileCounts(msgspec.Struct, gc=False):
    """The lines of one input file, by outcome."""

    lines: int = 0
    valid: int = 0
    rejected: int = 0
    blank: int = 0


class Report(msgspec.Struct, gc=False):
    """What the collector reports at the end: the counts behind summary.json."""

    files: list[FileCounts]
    """Per input file, in input order."""
    ends: list[int]
    """Per input file, the bytes of its lines: its size, or decompressed, its decompressed size."""
    reasons: list[int]
    """Rejected lines per reason, in the schema's check order (``Schema.reasons``)."""
    groups: dict[str, int]
    """Records per group id."""
    output_files: dict[str, tuple[int, int]] = {}
    """With --compress: each output file's records and bytes on disk, by name."""
    output_plain: int = 0
    """With --compress: the bytes of those files, decompressed."""
