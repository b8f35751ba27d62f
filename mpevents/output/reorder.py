"""Reorder: results that arrive in any order, taken back in input order, each once.

Owns the order of the output. A result is keyed by its span: its file, its
sequence number within the file, and whether it is the file's LAST span.
:meth:`Reorderer.add` holds one; :meth:`Reorderer.ready` hands back, in
input order, those whose turn has come: span ``s`` of file ``f`` only after
every earlier span of ``f`` and every span of the files before ``f``. A
result for a span already handed back or already held (a repeat, as after a
worker or reader was restarted) is refused by its (file, seq) key and given
back to the caller, who lets go of what it holds (a reader's credits, a
spool file).

Pure: no I/O, no processes, no clock. Talks to: nothing; the collector core
(``output.collector``) runs one for either engine.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Generic, TypeVar

from mpevents.core.framing import Flag, Span

T = TypeVar("T")


class Reorderer(Generic[T]):
    """Results of ``files`` input files put back in input order; see the module docstring.

    ``head`` and ``next_seq``: where a --resume run goes on, every file before
    ``head`` written and ``head`` up to span ``next_seq``.
    """

    def __init__(self, files: int, head: int = 0, next_seq: int = 0) -> None:
        self.files = files
        self.head = head
        """The file whose turn it is; every file before it is handed back whole."""
        # A flat int64 array per file, and held results only for files that
        # have some: a few bytes per file, for 20,000 files too.
        self._next_seq = array("q", bytes(8 * files))
        if head < files:
            self._next_seq[head] = next_seq
        self._held: dict[int, dict[int, tuple[Span, T]]] = {}

    @property
    def done(self) -> bool:
        """Whether every file's LAST span has been handed back."""
        return self.head >= self.files

    def next_seq(self, file: int) -> int:
        """The sequence number of ``file``'s first span not handed back yet."""
        return self._next_seq[file]

    def add(self, span: Span, item: T) -> T | None:
        """Hold ``item``, the result of ``span``, until its turn; ``item`` itself
        if it is a repeat, which is not held (None when it is)."""
        file, seq = span.file, span.seq
        if file < self.head or seq < self._next_seq[file] or seq in self._held.get(file, ()):
            return item
        self._held.setdefault(file, {})[seq] = (span, item)
        return None

    def ready(self) -> Iterator[tuple[Span, T]]:
        """Hand back, in input order, every held result whose turn has come.

        Each is counted as handed back before it is yielded: what the caller
        sees of :attr:`head` and :meth:`next_seq` meanwhile includes it.
        """
        while self.head < self.files:
            held = self._held.get(self.head)
            entry = held.pop(self._next_seq[self.head], None) if held else None
            if entry is None:
                return
            if not held:
                del self._held[self.head]
            span = entry[0]
            self._next_seq[span.file] += 1
            if span.flags & Flag.LAST:
                self.head += 1
            yield entry
