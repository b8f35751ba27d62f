"""Tally: the counts of what the collector has written, behind the :class:`Report`.

Owns, per input file, its lines by outcome (:class:`FileCounts`) and where
its last written span ends; the rejects by reason; the records per group.
A --resume run's tally starts from where the journal left off
(:meth:`Tally.resumed`). Pure bookkeeping: no I/O. Talks to: nothing; the
collector core (``output.collector``) keeps one, reads it for its
checkpoints and the scoreboard, and makes the report from it
(:meth:`Tally.report`).
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from typing import Final

import msgspec

from mpevents.core.framing import Span
from mpevents.core.spec import REASONS
from mpevents.output.journal import State
from mpevents.output.report import FileCounts, Report
from mpevents.output.sink import Payload

_COUNTS: Final = 4
"""Counts kept per file: lines, valid, rejected, blank (FileCounts' order)."""


class Tally:
    """Counts for ``files`` input files; see the module docstring."""

    def __init__(self, files: int, reasons: tuple[str, ...] = REASONS) -> None:
        # Flat int64 arrays: a few dozen bytes per file, for 20,000 files too.
        self._counts = array("q", bytes(8 * _COUNTS * files))
        self._ends = array("q", bytes(8 * files))
        self._index = {reason: i for i, reason in enumerate(reasons)}
        self.reasons = [0] * len(reasons)
        """Rejected lines per reason, in the schema's check order (``reasons``)."""
        self.groups: dict[bytes, int] = {}
        """Records per group."""

    @classmethod
    def resumed(cls, files: int, state: State, reasons: tuple[str, ...] = REASONS) -> Tally:
        """The tally of what the interrupted run's journal says it wrote."""
        tally = cls(files, reasons)
        for file, counts in state.counts.items():
            tally._counts[_COUNTS * file : _COUNTS * file + _COUNTS] = array("q", msgspec.structs.astuple(counts))
        for file, end in state.ends.items():
            tally._ends[file] = end
        tally.groups = {group.encode(): count for group, (_, count) in state.groups.items()}
        tally.reasons = list(state.reasons) or tally.reasons
        return tally

    def lines(self, file: int) -> int:
        """The lines of ``file`` counted so far: where the next span's lines are numbered from."""
        return self._counts[_COUNTS * file]

    def counts(self, file: int) -> FileCounts:
        at = _COUNTS * file
        return FileCounts(*self._counts[at : at + _COUNTS])

    def end(self, file: int) -> int:
        """Where ``file``'s last written span ends."""
        return self._ends[file]

    def add(self, span: Span, payload: Payload) -> int:
        """Count the result of ``span``: its lines, its blank ones, its records
        per group if it says (a local one's are counted when placed:
        :meth:`add_groups`), its rejects by reason. Returns its records."""
        self.add_groups({group: count for group, (count, _) in payload.groups.items()})
        rejected = payload.rejects.total
        valid = payload.lines - rejected - payload.blank  # every line is one of the three
        reasons, index = self.reasons, self._index
        for reason, count in payload.rejects.reasons.items():
            reasons[index[reason]] += count
        counts, at = self._counts, _COUNTS * span.file
        counts[at] += payload.lines
        counts[at + 1] += valid
        counts[at + 2] += rejected
        counts[at + 3] += payload.blank
        self._ends[span.file] = span.end
        return valid

    def add_groups(self, counts: Mapping[bytes, int]) -> None:
        """Count records per group: groups none of which were counted before
        in one C-level update (a placing by hashes brings each of its groups
        once an epoch: at 100,000 groups, all of them at the end, while the
        workers wait), others one by one."""
        group_counts = self.groups
        if group_counts.keys().isdisjoint(counts):
            group_counts.update(counts)
            return
        for group, count in counts.items():
            group_counts[group] = group_counts.get(group, 0) + count

    def report(self) -> Report:
        """The counts main needs for summary.json."""
        counts = self._counts
        return Report(
            files=[FileCounts(*counts[at : at + _COUNTS]) for at in range(0, len(counts), _COUNTS)],
            ends=list(self._ends),
            reasons=list(self.reasons),
            groups=dict(zip(map(bytes.decode, self.groups), self.groups.values())),
        )
