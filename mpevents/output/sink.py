"""Sink: what the collector core asks of an engine's results and of where their records go.

Owns two protocols. :class:`Payload` is what every engine's result tells
the collector whatever holds its records: its lines, blank lines, records
and bytes per group, and rejects. :class:`Sink` takes the records of each
result in input order and puts them in the group files: the local
collector keeps where each result's block of records lies, for the
workers to place at the end (``local.collector.LocalSink``), the Dask
client has a task place a part file (``dask.engine.PartFiles``). Each engine's sink is typed by its
own payloads, so the collector core (``output.collector``) never branches
on a kind of result, and no engine is handed a kind it does not know.

Talks to: nothing; the protocols are implemented in ``local`` and ``dask``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

from mpevents.core.framing import Span
from mpevents.output.parts import PartRef
from mpevents.output.rejects import SpanRejects


class Payload(Protocol):
    """The counts of one span's result, wherever its records are."""

    @property
    def lines(self) -> int: ...
    @property
    def blank(self) -> int: ...
    @property
    def groups(self) -> Mapping[bytes, tuple[int, object]]:
        """Each group's records: their count, and the records themselves or
        their size (in bytes), as the payload holds them."""
        ...

    @property
    def rejects(self) -> SpanRejects:
        """Numbered from the span's first line, encoded by whoever checked it (``output.rejects``)."""
        ...


P = TypeVar("P", bound=Payload)
P_contra = TypeVar("P_contra", bound=Payload, contravariant=True)


class Sink(Protocol[P_contra]):
    """Where the records of an engine's results go, in input order."""

    def write(self, span: Span, payload: P_contra) -> None:
        """Put the records of ``span``'s result at the end of their group files,
        have them put there, or keep where they are for a later placing; the
        span is then written."""

    def drop(self, span: Span, payload: P_contra) -> None:
        """``span``'s result is a repeat of one already written or held: let go of what it holds."""

    def flush(self, groups: Iterable[bytes]) -> dict[bytes, int]:
        """Hand what was written of ``groups`` to the kernel; the sizes of their
        group files, for a checkpoint of the journal."""

    def durable(self) -> tuple[list[str], list[PartRef]]:
        """What a checkpoint must sync beside the group files, and the blocks
        it records (``output.parts``), since the last call: the local
        engine's part logs; nothing for an engine whose records are in the
        group files by then."""

    def close(self) -> None: ...
