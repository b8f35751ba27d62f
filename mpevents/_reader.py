"""Reader: up to ``--readers`` long-lived processes cutting files into chunks of whole lines.

Talks to: the work queue (puts :class:`Chunk`), the file queue (takes the next
input file), the scoreboard (bytes read, and which reader took each file),
and the credit semaphore. Each reader takes the next file in input order as it
finishes one, retitled ``mpevents: reader <file>`` for each, so thousands of
small files cost no process start each. Readers never parse lines; they only
frame them: a reader reads the tail of each chunk to find its last line end,
and sends where the chunk lies; the worker reads the chunk itself
(:func:`read_chunk`). A file that fits in one chunk is not even opened.

A chunk is a pure function of where it starts: from offset ``o`` it holds the
whole lines within ``[o, o + chunk_bytes)``, or the one line starting at ``o``
if that line is longer. So a reader restarted at any chunk boundary cuts
exactly the chunks its predecessor would have, and the collector can drop the
ones it already has by their sequence number.

A line too long for the spec (over 65,536 bytes) is never held whole: it is
kept to 65,538 bytes, enough for the worker to reject it as ``line_too_long``
and to quote its first 1,024 bytes, and the rest is skipped while reading.

Credits: the collector writes files in order, so chunks of a later file that
arrive early must wait in its memory. A reader whose file is not yet being
written takes credits for each chunk it sends, one per 64 KiB of it
(:func:`~mpevents._messages.credit_units`); the collector returns them when it
writes the chunk. This bounds the bytes the collector holds back, whatever
the file sizes, while the current file's reader never waits for a credit; and
counting bytes rather than chunks lets a hundred small files be in flight
where a chunk count would allow a handful.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence
from multiprocessing.sharedctypes import RawValue
from typing import Any, BinaryIO, Final, NamedTuple

import setproctitle

from . import _failpoints
from ._board import Board, CollectorField, FileField, FileState, ReaderField
from ._config import InputFile
from ._messages import FLAG_CREDIT, FLAG_LAST, FLAG_TRUNCATED, Chunk, credit_units
from ._spec import MAX_LINE_BYTES

KEEP_BYTES: Final = MAX_LINE_BYTES + 2
"""Of an over-long line, this much is kept: after one '\\r' is removed it is
still longer than the limit, so it is still rejected as too long."""

_SKIP_BLOCK: Final = 1 << 20
_TAIL_BYTES: Final = 1 << 16
"""Where a chunk's last line end is looked for first: the last 64 KiB of its
window, which holds a line end unless a line is longer than that."""
_CREDIT_POLL_S: Final = 0.005
"""How often a reader waiting for a credit looks whether its file's turn came:
often, because until it does the workers may run dry; a wake-up costs microseconds."""


class Piece(NamedTuple):
    offset: int
    end: int
    data: bytes
    truncated: bool


def iter_chunks(
    handle: BinaryIO, chunk_bytes: int, start: int = 0, stop: int | None = None, *, with_data: bool = True
) -> Iterator[Piece]:
    """Cut the lines of ``handle`` between the line starts ``start`` and ``stop``.

    ``stop`` None means the end of the file. Yields nothing for an empty range.
    Without ``with_data`` only where each piece starts and ends is found (its
    ``data`` is empty): whoever processes it reads it (:func:`read_chunk`).
    """
    end = handle.seek(0, os.SEEK_END) if stop is None else stop
    offset = start
    while offset < end:
        piece = _piece(handle, offset, chunk_bytes, end, with_data)
        yield piece
        offset = piece.end


def _piece(handle: BinaryIO, offset: int, chunk_bytes: int, end: int, with_data: bool) -> Piece:
    """The chunk that starts at ``offset``, in a range that ends at ``end``.

    The last line end is looked for in the window's tail first, so that the
    chunk itself is read once, at its size (``with_data``), or not at all.
    """
    if end - offset < chunk_bytes:  # the rest of the range, whole
        cut = end
    else:
        window_end = offset + chunk_bytes
        tail_start = max(offset, window_end - _TAIL_BYTES)
        cut = _read_at(handle, tail_start, window_end - tail_start).rfind(b"\n") + 1
        if cut:
            cut += tail_start
        elif tail_start > offset:  # no line ends in the tail: look in the whole window
            cut = _read_at(handle, offset, chunk_bytes).rfind(b"\n") + 1
            cut = offset + cut if cut else 0
        if not cut:
            return _long_line(handle, offset, window_end, end, with_data)
    return Piece(offset, cut, _read_at(handle, offset, cut - offset) if with_data else b"", False)


def _long_line(handle: BinaryIO, offset: int, search_from: int, end: int, with_data: bool) -> Piece:
    """A line that starts at ``offset`` and fills a whole window: find where
    it ends, and keep at most KEEP_BYTES of it (plus its newline)."""
    position = search_from
    while position < end:
        block = _read_at(handle, position, min(_SKIP_BLOCK, end - position))
        newline = block.find(b"\n")
        if newline >= 0:
            length = position + newline - offset  # without its newline
            kept = _read_at(handle, offset, min(length, KEEP_BYTES)) + b"\n" if with_data else b""
            return Piece(offset, offset + length + 1, kept, length > KEEP_BYTES)
        position += len(block)
    length = end - offset  # the range's last line, without a newline
    kept = _read_at(handle, offset, min(length, KEEP_BYTES)) if with_data else b""
    return Piece(offset, end, kept, length > KEEP_BYTES)


def _read_at(handle: BinaryIO, position: int, size: int) -> bytes:
    handle.seek(position)
    data = handle.read(size)
    if len(data) != size:
        raise OSError(errno.EIO, "the file changed while it was being read", getattr(handle, "name", None))
    return data


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


def read_chunk(path: str, chunk: Chunk, identity: tuple[int, int] | None = None) -> bytes:
    """The bytes of a chunk, read from its place in its file (what a worker works on).

    The reader saw a line end where the chunk ends (or the end of the file);
    a file that has changed since no longer shows it, and fails the run
    rather than giving lines that were never there. So does another file put
    in its place, when ``identity`` (device, inode) is given.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        if identity is not None:
            stat = os.fstat(fd)
            if (stat.st_dev, stat.st_ino) != identity:
                raise OSError(errno.EIO, "the file was replaced while it was being read", path)
        if chunk.flags & FLAG_TRUNCATED:
            kept = os.pread(fd, KEEP_BYTES, chunk.offset)
            ends_line = os.pread(fd, 1, chunk.end - 1) == b"\n"
            data, whole = (kept + b"\n" if ends_line else kept), len(kept) == KEEP_BYTES
        else:
            data = os.pread(fd, chunk.end - chunk.offset, chunk.offset)
            whole = len(data) == chunk.end - chunk.offset
            ends_line = data.endswith(b"\n") or not data
        if not whole or not (ends_line or chunk.flags & FLAG_LAST):
            raise OSError(errno.EIO, "the file changed while it was being read", path)
        return data
    finally:
        os.close(fd)


class FileQueue:
    """The input files still to read, taken in input order by the readers.

    A counter in shared memory under a lock: taking a file is a few
    microseconds, and the taker is recorded on the scoreboard before the lock
    is released, so when a reader dies main knows every file it had taken.
    """

    def __init__(self, ctx: Any, files: int) -> None:
        self.files = files
        self._next: Any = RawValue("q", 0)
        self._lock = ctx.Lock()

    def taken(self) -> int:
        return min(int(self._next.value), self.files)

    def take(self, slot: int, board: Board) -> int | None:
        with self._lock:
            file = int(self._next.value)
            if file >= self.files:
                return None
            self._next.value = file + 1
            board.set_file(file, FileField.READER, slot + 1)
        return file


class ReaderJob(NamedTuple):
    slot: int
    chunk_bytes: int
    resume: list[tuple[int, int, int]]
    """(file, first chunk, its offset) of files a dead reader had taken, read first."""
    generation: int  # 0 for the first reader of a slot, where test failpoints fire


def read_files(
    job: ReaderJob, files: Sequence[InputFile], file_queue: FileQueue, work_queue: Any, board: Board, credits: Any
) -> None:
    """The reader process body: the files to resume, then the next file in
    input order until none is left; each chunk is sent, the last one flagged."""
    kill_at = _failpoints.chunk_point("reader_kill") if job.generation == 0 else None
    slot = job.slot
    for index, seq, offset in job.resume:
        _read_file(files[index], slot, job.chunk_bytes, seq, offset, kill_at, work_queue, board, credits)
    while (taken := file_queue.take(slot, board)) is not None:
        _read_file(files[taken], slot, job.chunk_bytes, 0, 0, kill_at, work_queue, board, credits)
    board.set_reader(slot, ReaderField.FILE, 0)


def _read_file(
    info: InputFile,
    slot: int,
    chunk_bytes: int,
    seq: int,
    offset: int,
    kill_at: tuple[int, int] | None,
    work_queue: Any,
    board: Board,
    credits: Any,
) -> None:
    """Send every chunk of one file from chunk ``seq`` at ``offset``, the last one flagged.

    The file is read as it was listed at start-up (its size then): a worker
    that finds it changed fails the run.
    """
    file = info.index
    setproctitle.setproctitle(f"mpevents: reader {info.name}")
    board.set_file(file, FileField.STATE, FileState.READING)
    board.set_reader(slot, ReaderField.FILE, file + 1)

    def send(piece: Piece, last: bool) -> None:
        nonlocal seq
        if kill_at == (file, seq):
            _failpoints.kill_self()
        flags = (FLAG_LAST if last else 0) | (FLAG_TRUNCATED if piece.truncated else 0)
        units = credit_units(piece.offset, piece.end, flags)
        if _take_credits(file, units, board, credits):
            flags |= FLAG_CREDIT
        # Counted before the put, which waits while the work queue is full: the
        # dashboard shows the chunk as framed while it waits, not as unread.
        board.set_file(file, FileField.BYTES_READ, piece.end)
        board.add_reader(slot, ReaderField.BYTES, piece.end - piece.offset)
        work_queue.put_direct(Chunk(file, seq, piece.offset, piece.end, flags))
        seq += 1

    if info.size - offset <= chunk_bytes:  # one chunk, or none left: nothing to look for
        send(Piece(offset, info.size, b"", False), last=True)
    else:
        with open(info.path, "rb") as handle:
            held: Piece | None = None
            for piece in iter_chunks(handle, chunk_bytes, offset, info.size, with_data=False):
                if held is not None:
                    send(held, last=False)
                held = piece
            assert held is not None  # the range is longer than a chunk
            send(held, last=True)
    board.set_file(file, FileField.STATE, FileState.READ)


def _take_credits(file: int, units: int, board: Board, credits: Any) -> int:
    """Take ``units`` credits, or none once ``file`` is being written; how many were taken.

    Credits are taken one at a time; a reader whose file's turn comes while it
    waits gives back those it holds, so readers waiting with some in hand can
    never hold up the file being written.
    """
    taken = 0
    while taken < units:
        if board.collector(CollectorField.HEAD) == file:
            for _ in range(taken):
                credits.release()
            return 0
        if credits.acquire(timeout=_CREDIT_POLL_S):
            taken += 1
    return taken
