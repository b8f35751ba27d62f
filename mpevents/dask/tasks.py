"""Dask tasks: what runs on the Dask workers, for the client engine (``dask.engine``).

Owns the two kinds of task and what they share only with each other:
:func:`process_range` checks and encodes the lines that start in a byte
range of one file (a local file, which the Dask workers must see at the same
path, or any fsspec URL: ``core.sources``) with the very same
:func:`~mpevents.core.spec.process_chunk` as the local workers, writes
their records, group by group, into one part file of its own
(:class:`_Parts`: its format) and returns only its counts, its rejects and
the bytes of each group (:class:`PartsResult`); :func:`place_parts` copies a
part file's records into the group files at the offsets the client worked
out, then removes it.

Talks to: the input (``core``), the staging directory (which the Dask
workers must be able to write: the part files under ``output.names.PARTS_DIR``
and the group files). Imports nothing of the local engine, of the client
engine, of the run or of the dashboard (an import-linter contract says so):
every Dask worker imports this module, and with it only what a task runs.
"""

from __future__ import annotations

import errno
import functools
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Final, NamedTuple

import msgspec

from mpevents.core import failpoints as _failpoints
from mpevents.core.compression import Decompressed
from mpevents.core.framing import Span, frames, line_start, read_chunk, read_span, stream_frames
from mpevents.core.inputs import InputFile
from mpevents.core.schema import V1, Schema
from mpevents.core.sources import open_url, reader_of
from mpevents.core.spec import ChunkResult, Reject, process_chunk
from mpevents.core.system import copy_range, keep_freed_memory, write_all
from mpevents.output.names import group_file_name, part_file_name
from mpevents.output.rejects import SpanRejects, encode

HOLD_BYTES: Final = 32 << 20
"""Records a task holds in memory before it writes them out, each group's one
after another: a task of up to 12 chunks writes them once, in one run, and a
bigger one in a few runs, so that its memory stays bounded."""


class PartsResult(NamedTuple):
    """A Dask task's result: a ChunkResult whose records stay in the task's part file.

    ``groups`` maps each group to (records, bytes), in the order the part
    file's index lists them; ``path`` is that file ("" when the task had no
    records).
    """

    lines: int
    blank: int
    groups: dict[bytes, tuple[int, int]]
    rejects: SpanRejects
    path: str


class TaskOutcome(NamedTuple):
    end: int
    """Where the task's lines end in its file (decompressed, for a compressed file)."""
    result: PartsResult
    busy_ns: int
    started_ns: int
    """When it started, by its machine's wall clock (time.time_ns), for --trace."""
    where: str
    """Its Dask worker: host and process id."""


def process_range(info: InputFile, task: Span, chunk_bytes: int, parts_root: str, schema: Schema = V1) -> TaskOutcome:
    """The task: check and encode the lines that start in the task's byte
    range against ``schema``, and write their records into a part file of its own under ``parts_root``."""
    started, started_wall = time.perf_counter_ns(), time.time_ns()
    _maybe_die(info.path, task.start)
    _settle_in()
    parts = _Parts(os.path.join(parts_root, part_file_name(task.file, task.seq)))
    try:
        if info.compression is not None:
            raw = open_url(info.path, info.tag) if info.tag is not None else None
            with Decompressed(info.path, info.compression, info.identity, info.size, raw) as stream:
                for span, data in stream_frames(stream, info.index, chunk_bytes):
                    parts.add(process_chunk(data, file_start=span.start == 0, schema=schema))
                end = stream.position
        else:
            handle = open_url(info.path, info.tag) if info.tag is not None else open(info.path, "rb")  # noqa: SIM115
            with handle:
                # Never past where the file's lines ended when it was listed
                # (``core.live``): a line_start beyond it is in bytes written since.
                first = min(info.end, line_start(handle, task.start))
                end = info.end if task.end >= info.end else min(info.end, line_start(handle, task.end))
                for span in frames(handle, info.index, info.end, chunk_bytes, first, stop=end):
                    if info.tag is None:
                        data = read_chunk(info.path, span, info.identity)
                    else:
                        data = read_span(reader_of(handle), span, info.path)
                    parts.add(process_chunk(data, file_start=span.start == 0, schema=schema))
        result = parts.finish()
    finally:
        parts.close()
    where = f"{socket.gethostname()}:{os.getpid()}"
    return TaskOutcome(end, result, time.perf_counter_ns() - started, started_wall, where)


@functools.cache
def _settle_in() -> None:
    """Once per Dask worker process: have malloc keep freed memory, as the
    local children do. Dask's nanny starts workers with
    ``MALLOC_TRIM_THRESHOLD_=65536``, which also pins glibc's mmap threshold
    at 128 KiB, so every chunk's buffers were mapped and faulted in afresh:
    71,000 page faults per 8 MiB task instead of 11,000, and 1.4 times its
    CPU (measured)."""
    keep_freed_memory()


_INDEX: Final = msgspec.msgpack.Encoder()
_TRAILER: Final = 8
"""The last bytes of a part file: how long its index is, little-endian."""


class _Parts:
    """A task's output: its records in one part file, its rejects numbered
    from the task's first line.

    The file holds runs, each the records held at the time (up to
    HOLD_BYTES), group after group, then its index: the task's groups in
    order, and each run's pieces as (group's position in that order, bytes),
    in file order. One file per task, however many groups: a file per group
    and task cost thousands of files, and with more groups than the file
    descriptors a task keeps open, an open and a close for almost every write.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._groups: dict[bytes, list[int]] = {}  # position, records, bytes
        self._held: dict[bytes, list[bytes]] = {}
        self._held_bytes = 0
        self._pieces: list[int] = []  # position, bytes, position, bytes, ...
        self._rejects: list[Reject] = []
        self._lines = self._blank = 0

    def add(self, result: ChunkResult) -> None:
        groups, held = self._groups, self._held
        for group, (count, data) in result.groups.items():
            totals = groups.get(group)
            if totals is None:
                totals = groups[group] = [len(groups), 0, 0]
            totals[1] += count
            totals[2] += len(data)
            waiting = held.get(group)
            if waiting is None:
                held[group] = [data]
            else:
                waiting.append(data)
            self._held_bytes += len(data)
        lines = self._lines
        self._rejects.extend(reject._replace(line=reject.line + lines) for reject in result.rejects)
        self._lines += result.lines
        self._blank += result.blank
        if self._held_bytes >= HOLD_BYTES:
            self._write_run()

    def _write_run(self) -> None:
        if not self._held:
            return
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        buffers: list[bytes] = []
        for group, records in self._held.items():
            buffers += records
            self._pieces += (self._groups[group][0], sum(map(len, records)))
        write_all(self._fd, buffers)
        self._held, self._held_bytes = {}, 0

    def finish(self) -> PartsResult:
        """Write what is held and the index; the task's result."""
        self._write_run()
        if self._fd is not None:
            index = _INDEX.encode((list(self._groups), self._pieces))
            write_all(self._fd, [index, len(index).to_bytes(_TRAILER, "little")])
        groups = {group: (count, size) for group, (_, count, size) in self._groups.items()}
        return PartsResult(self._lines, self._blank, groups, encode(self._rejects), self.path if groups else "")

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_index(fd: int, path: str) -> tuple[list[bytes], list[list[tuple[int, int]]]]:
    """A part file's groups, and for each its pieces as (offset in the file, bytes), in order."""
    end = os.fstat(fd).st_size - _TRAILER
    length = int.from_bytes(os.pread(fd, _TRAILER, end), "little") if end >= 0 else -1
    if not 0 <= length <= end:
        raise OSError(errno.EIO, "a task's part file has no index", path)
    index = os.pread(fd, length, end - length)
    groups, flat = msgspec.msgpack.decode(index, type=tuple[list[bytes], list[int]])
    pieces: list[list[tuple[int, int]]] = [[] for _ in groups]
    at = 0
    for position, size in zip(flat[::2], flat[1::2]):
        pieces[position].append((at, size))
        at += size
    if at != end - length:
        raise OSError(errno.EIO, "a task's part file does not hold what its index says", path)
    return groups, pieces


def place_parts(part: str, directory: str, offsets: Sequence[int]) -> int:
    """The task that writes a task's records from its part file into the
    group files in ``directory``, the ``i``-th group of its index at
    ``offsets[i]``, then removes the part file: freeing a GB of parts costs a
    tenth of a second of CPU, which the client should not pay. Big pieces go
    with ``os.copy_file_range`` (a reflink on XFS or btrfs, a server-side
    copy on NFS 4.2, an in-kernel copy elsewhere). Returns the bytes placed.

    Done again (its Dask worker lost after it ran), it writes the same bytes
    to the same places; the part file is removed only once all is placed, so
    a second run that finds it gone has nothing left to do.
    """
    try:
        source = os.open(part, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0  # placed and removed by an earlier run of this placing
    placed = 0
    try:
        groups, pieces = _read_index(source, part)
        if len(groups) != len(offsets):
            raise ValueError(f"{len(offsets)} offsets for the {len(groups)} groups of {part}")
        for group, start, group_pieces in zip(groups, offsets, pieces, strict=True):
            target = os.open(
                os.path.join(directory, group_file_name(group)), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644
            )
            try:
                at = start
                for offset, size in group_pieces:
                    copy_range(source, offset, target, at, size, part)
                    at += size
                placed += at - start
            finally:
                os.close(target)
    finally:
        os.close(source)
    os.unlink(part)
    return placed


def _maybe_die(path: str, start: int) -> None:
    """Failpoint ``dask_task_kill=NAME:START:MARKER``: the first task on that
    range (the one that creates MARKER) kills its Dask worker process."""
    value = _failpoints.POINTS.get("dask_task_kill")
    if value is None:
        return
    name, offset, marker = value.split(":", 2)
    if Path(path).name == name and int(offset) == start:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
        _failpoints.kill_self()
