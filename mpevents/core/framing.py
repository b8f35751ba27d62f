"""Framing: how a run of whole lines in a file is named, cut and read back.

Owns the one byte-range type of the pipeline, :class:`Span`, and the pure
functions around it. Readers cut files into spans (:func:`frames`), workers
read a span's bytes (:func:`read_chunk`), the collector orders results by a
span's (file, seq), a Dask task finds where its byte range's lines begin
(:func:`line_start`), and the listing of a file still being written finds
where its whole lines end (:func:`lines_end`, for ``core.live``). Nothing here
starts a process or touches a queue, so all of it is tested on its own
(``tests/test_framing.py``).

A span is a pure function of where it starts: from offset ``o`` it holds the
whole lines within ``[o, o + chunk_bytes)``, or the one line starting at ``o``
if that line is longer. So a reader restarted at any span boundary cuts
exactly the spans its predecessor would have, and the collector can drop the
ones it already has by their sequence number.

A line too long for the spec (over 65,536 bytes) is never held whole: it is
kept to KEEP_BYTES, enough for the worker to reject it as ``line_too_long``
and to quote its first 1,024 bytes, and the rest is skipped while framing.
"""

from __future__ import annotations

import enum
import errno
import os
from collections.abc import Callable, Iterator
from typing import BinaryIO, Final, NamedTuple, Protocol

from mpevents.core.spec import MAX_LINE_BYTES

KEEP_BYTES: Final = MAX_LINE_BYTES + 2
"""Of an over-long line, this much is kept: after one '\\r' is removed it is
still longer than the limit, so it is still rejected as too long."""

_SKIP_BLOCK: Final = 1 << 20
_TAIL_BYTES: Final = 1 << 16
"""Where a span's last line end is looked for first: the last 64 KiB of its
window, which holds a line end unless a line is longer than that."""


class Flag(enum.IntFlag):
    """What a span's ``flags`` say about where it lies in its file.

    Only these bits are framing's. The others are left to whoever carries
    spans (the local engine's ledger keeps its own in bits 2, 8 and 16,
    ``local.ledger.LedgerFlag``), in the same int, so that a span stays one
    small tuple of ints; nothing here sets or reads them.
    """

    NONE = 0
    LAST = 1
    """The last span of its file (an empty file has one empty last span)."""
    TRUNCATED = 4
    """A single over-long line, kept only as far as the spec needs to reject it."""


class Span(NamedTuple):
    """Whole lines of one input file: bytes ``[start, end)``, its ``seq``-th span."""

    file: int
    seq: int
    start: int
    end: int
    flags: Flag = Flag.NONE


def frames(
    handle: BinaryIO, file: int, size: int, chunk_bytes: int, start: int = 0, seq: int = 0, stop: int | None = None
) -> Iterator[Span]:
    """Cut the lines of ``handle`` between the line starts ``start`` and ``stop`` into spans.

    ``size`` is where the file's lines end (its size, or less for a file
    still being written: ``InputFile.end``) and ``stop`` None means it. The
    span ending at ``size`` is flagged LAST; when ``start`` is already the
    end of the file (an empty file, or a file resumed after its last span)
    one empty LAST span says so. Only where spans start and end is found here: whoever
    processes one reads it (:func:`read_chunk`).
    """
    end = size if stop is None else stop
    if stop is None and start >= size:
        yield Span(file, seq, start, size, Flag.LAST)
        return
    offset = start
    while offset < end:
        span = _span(handle, file, seq, offset, chunk_bytes, end, size)
        yield span
        offset, seq = span.end, seq + 1


def _span(handle: BinaryIO, file: int, seq: int, offset: int, chunk_bytes: int, end: int, size: int) -> Span:
    """The span that starts at ``offset``, in a range that ends at ``end``.

    The last line end is looked for in the window's tail first, so that the
    span's bytes are read once, by whoever processes it.
    """
    if end - offset <= chunk_bytes:  # the rest of the range, whole
        return Span(file, seq, offset, end, Flag.LAST if end == size else Flag.NONE)
    window_end = offset + chunk_bytes
    tail_start = max(offset, window_end - _TAIL_BYTES)
    cut = _read_at(handle, tail_start, window_end - tail_start).rfind(b"\n") + 1
    if cut:
        return Span(file, seq, offset, tail_start + cut, Flag.NONE)
    if tail_start > offset:  # no line ends in the tail: look in the whole window
        cut = _read_at(handle, offset, chunk_bytes).rfind(b"\n") + 1
        if cut:
            return Span(file, seq, offset, offset + cut, Flag.NONE)
    return _long_line(handle, file, seq, offset, window_end, end, size)


def _long_line(handle: BinaryIO, file: int, seq: int, offset: int, search_from: int, end: int, size: int) -> Span:
    """A line that starts at ``offset`` and fills a whole window: the span
    that holds it and its newline, flagged TRUNCATED when it is longer than
    what a worker keeps of it."""
    position = search_from
    line_end, length = end, end - offset  # the range's last line, without a newline, unless one is found
    while position < end:
        block = _read_at(handle, position, min(_SKIP_BLOCK, end - position))
        newline = block.find(b"\n")
        if newline >= 0:
            line_end = position + newline + 1
            length = line_end - 1 - offset
            break
        position += len(block)
    flags = (Flag.TRUNCATED if length > KEEP_BYTES else Flag.NONE) | (Flag.LAST if line_end == size else Flag.NONE)
    return Span(file, seq, offset, line_end, flags)


def _read_at(handle: BinaryIO, position: int, size: int) -> bytes:
    handle.seek(position)
    data = handle.read(size)
    if len(data) != size:
        raise OSError(errno.EIO, "the file changed while it was being read", getattr(handle, "name", None))
    return data


class Stream(Protocol):
    """What :func:`stream_frames` reads: bytes, forwards only (a decompressed file)."""

    def read(self, size: int, /) -> bytes: ...


_STREAM_BLOCK: Final = 1 << 16


def stream_frames(
    stream: Stream, file: int, chunk_bytes: int, seq: int = 0, start: int = 0
) -> Iterator[tuple[Span, bytes]]:
    """Cut a stream already read up to ``start`` into spans and their bytes.

    The same spans :func:`frames` cuts from the same bytes: whole lines within
    each window, or the one line starting there, kept to KEEP_BYTES and its
    newline when it is longer; so a reader restarted at a span boundary of a
    stream it must read again from the start cuts the same spans. The last
    span is flagged LAST; an empty stream (or one resumed at its end) gives
    one empty LAST span. At most about two windows are held at once.
    """
    buffer = bytearray()
    offset, ended = start, False
    while True:
        while not ended and len(buffer) <= chunk_bytes:
            block = stream.read(max(_STREAM_BLOCK, chunk_bytes + 1 - len(buffer)))
            ended = not block
            buffer += block
        if ended and len(buffer) <= chunk_bytes:  # the rest of the stream, whole
            yield Span(file, seq, offset, offset + len(buffer), Flag.LAST), bytes(buffer)
            return
        cut = buffer.rfind(b"\n", 0, chunk_bytes) + 1
        if cut:
            with memoryview(buffer) as view:  # one copy, where bytes(buffer[:cut]) makes two
                data = view[:cut].tobytes()
            span = Span(file, seq, offset, offset + cut)
            del buffer[:cut]
        else:
            span, data, buffer, ended = _stream_long_line(stream, file, seq, offset, chunk_bytes, buffer, ended)
        yield span, data
        if span.flags & Flag.LAST:
            return
        offset, seq = span.end, seq + 1


def _stream_long_line(
    stream: Stream, file: int, seq: int, offset: int, search_from: int, buffer: bytearray, ended: bool
) -> tuple[Span, bytes, bytearray, bool]:
    """The span of a line that fills a whole window, read on until its end;
    of its bytes only the first KEEP_BYTES + 1 are held. Returns the span,
    its bytes, what follows it, and whether the stream has ended."""
    head, length = bytearray(), 0  # the line's start, and its bytes before ``buffer``
    while (newline := buffer.find(b"\n", search_from)) < 0 and not ended:
        head += buffer[: KEEP_BYTES + 1 - len(head)]
        length += len(buffer)
        buffer = bytearray(stream.read(_STREAM_BLOCK))
        ended, search_from = not buffer, 0
    line = buffer[:newline] if newline >= 0 else buffer
    head += line[: KEEP_BYTES + 1 - len(head)]
    length += len(line)
    rest = buffer[newline + 1 :] if newline >= 0 else bytearray()
    if not rest and not ended:  # is anything left after this line?
        rest = bytearray(stream.read(_STREAM_BLOCK))
        ended = not rest
    newline_bytes = b"\n" if newline >= 0 else b""
    truncated = length > KEEP_BYTES
    flags = (Flag.TRUNCATED if truncated else Flag.NONE) | (Flag.LAST if ended and not rest else Flag.NONE)
    data = bytes(head[:KEEP_BYTES] if truncated else head) + newline_bytes
    return Span(file, seq, offset, offset + length + len(newline_bytes), flags), data, rest, ended


def line_start(handle: BinaryIO, position: int) -> int:
    """The first line start at or after ``position``: where a byte range's
    lines begin, a line belonging to the range in which it starts."""
    if position == 0:
        return 0
    handle.seek(position - 1)
    while True:
        block = handle.read(_SKIP_BLOCK)
        if not block:
            return handle.tell()
        newline = block.find(b"\n")
        if newline >= 0:
            return handle.tell() - len(block) + newline + 1


def lines_end(read: Callable[[int, int], bytes], size: int) -> int:
    """Where the whole lines of a file's first ``size`` bytes end: just after
    its last line end, or 0 if it has none. ``read(size, offset)`` reads the
    file; it is read backwards from ``size``, a block at a time, only as far
    as the last line end."""
    position = size
    while position > 0:
        block_start = max(0, position - _TAIL_BYTES)
        block = read(position - block_start, block_start)
        if len(block) != position - block_start:
            raise OSError(errno.EIO, "the file changed while it was being read")
        newline = block.rfind(b"\n")
        if newline >= 0:
            return block_start + newline + 1
        position = block_start
    return 0


def read_chunk(path: str, span: Span, identity: tuple[int, int] | None = None) -> bytes:
    """The bytes of a span, read from its place in its file (what a worker works on).

    A file that has changed since it was framed fails the run rather than
    giving lines that were never there (see :func:`read_span`); so does
    another file put in its place, when ``identity`` (device, inode) is given.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        if identity is not None:
            stat = os.fstat(fd)
            if (stat.st_dev, stat.st_ino) != identity:
                raise OSError(errno.EIO, "the file was replaced while it was being read", path)
        return read_span(lambda size, offset: os.pread(fd, size, offset), span, path)
    finally:
        os.close(fd)


def read_span(read: Callable[[int, int], bytes], span: Span, name: str) -> bytes:
    """The bytes of a span, through ``read(size, offset)``.

    A TRUNCATED span gives KEEP_BYTES of its line and the newline it ends
    with. Its framer saw a line end where the span ends (or the end of the
    file); a file that no longer shows it has changed, and raises OSError.
    """
    if span.flags & Flag.TRUNCATED:
        kept = read(KEEP_BYTES, span.start)
        ends_line = read(1, span.end - 1) == b"\n"
        data, whole = (kept + b"\n" if ends_line else kept), len(kept) == KEEP_BYTES
    else:
        data = read(span.end - span.start, span.start)
        whole = len(data) == span.end - span.start
        ends_line = data.endswith(b"\n") or not data
    if not whole or not (ends_line or span.flags & Flag.LAST):
        raise OSError(errno.EIO, "the file changed while it was being read", name)
    return data
