"""Parts: the local engine's records between the workers and the group files.

Owns the part logs' format and both ends of it: :class:`PartLog`, to which
a worker appends each span's records (one ``writev`` per span, whatever
the number of groups), and :func:`place_shard`, with which a worker, once
every span is in, writes one shard of the groups' files from all the logs.

    worker --(span's records, one block)--> its part log --+
    worker --(span's records, one block)--> its part log --+--> place_shard(k of K) --> group files of shard k
                 |  PartRef (where the block is)            |    (every worker takes a shard)
                 v                                          |
    collector: the PartRefs in input order ---(order file)--+

A block holds the span's groups sorted by the CRC-32 of their names, then
an index: per group that hash, its name, its records and where its bytes
end in the block. A shard is a range of hashes, so its groups lie together
in every block: placing a shard reads
one range of each block (``pread``), gathers each group's pieces from all
blocks in memory, and writes each group file with one ``pwritev`` per
``PLACE_BYTES`` it gathered. Nothing serial touches a record: the collector
only keeps the blocks' order, and the group files are written by all the
workers at once, each of their files once whatever the number of blocks.

With --compress a placing cuts each group file into frames at fixed offsets
of its content as it writes it (``output.frames``), so that compression is
done by every worker too, and its bytes depend on no shard or budget.

A group belongs to one shard, and a placing writes its files from offset 0
with ``pwritev``, never truncating: done again (its worker died, the span
handed to a replacement), it writes the same bytes to the same places, so a
copy of it still running, or killed, can never make a file shorter.

Talks to: nothing but the files and the frames (``output.frames``); the worker (``local.worker``) appends and
places, the local collector (``local.collector``) keeps the refs and
writes the order file (:func:`write_order`), the journal keeps refs for
``--resume``.
"""

from __future__ import annotations

import errno
import os
import zlib
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from itertools import accumulate, chain
from operator import itemgetter
from pathlib import Path
from typing import Final, NamedTuple

import msgspec

from mpevents.core.spec import ChunkParts
from mpevents.core.system import write_all
from mpevents.output.frames import Compress, Framer, codec
from mpevents.output.names import group_file_name

HASHES: Final = 1 << 32
"""A group's place among the shards is its name's CRC-32: a shard is a range
of them, so that shards share many groups evenly, whatever their names."""
PLACE_BYTES: Final = 4 << 20
"""What a placing gathers in memory before it writes. A shard bigger than
this is placed in rounds, each a range of its hashes, so that each group
file is still written once (a round costs a read of every block's index,
not of its records), and every worker placing at once adds only this to the
run's memory, whatever the size of the output."""
ORDER_NAME: Final = "order"
"""The file in the parts directory that lists every block in input order."""

_INDEX: Final = msgspec.msgpack.Encoder()


class PartRef(NamedTuple):
    """Where a span's block lies: in part log ``log``, ``size`` bytes of
    records from ``offset``, then ``index_size`` bytes of index."""

    log: str
    offset: int
    size: int
    index_size: int


class _Index(NamedTuple):
    hashes: array[int]
    """Each group's name's CRC-32, in order: the block is sorted by them."""
    ends: array[int]
    """Where each group's bytes end in the block."""
    counts: array[int]
    names: bytes
    name_ends: array[int]

    def name(self, entry: int) -> bytes:
        return self.names[self.name_ends[entry - 1] if entry else 0 : self.name_ends[entry]]

    def start(self, entry: int) -> int:
        """Where entry ``entry``'s bytes start in the block."""
        return self.ends[entry - 1] if entry else 0


def shard_hashes(shard: int, shards: int) -> tuple[int, int]:
    """The range ``[low, high)`` of group-name hashes of shard ``shard`` of ``shards``."""
    return shard * HASHES // shards, (shard + 1) * HASHES // shards


class PartLog:
    """One worker process's part log, appended to (a single writer; a
    killed one's torn last block is simply never referred to)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self._path = directory / name
        self._fd: int | None = None
        self._size = 0

    def append(self, result: ChunkParts) -> PartRef | None:
        """Write ``result``'s records as one block; where it lies (None: no records)."""
        groups = result.groups
        if not groups:
            return None
        if self._fd is None:
            self._path.parent.mkdir(exist_ok=True)
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            self._size = os.fstat(self._fd).st_size
        # Every step is one C-level pass over the groups, not a Python step per
        # group: a chunk of 100,000 groups' lines holds some 20,000 of them.
        names = sorted(groups)  # so that groups whose hashes collide keep one order
        names.sort(key=zlib.crc32)
        values = list(map(groups.__getitem__, names))
        pieces = list(map(itemgetter(1), values))
        ends = array("Q", accumulate(map(sum, map(partial(map, len), pieces))))
        index = _INDEX.encode(
            (
                array("I", map(zlib.crc32, names)).tobytes(),
                ends.tobytes(),
                array("Q", map(itemgetter(0), values)).tobytes(),
                b"".join(names),
                array("Q", accumulate(map(len, names))).tobytes(),
            )
        )
        buffers: list[bytes] = list(chain.from_iterable(pieces))
        buffers.append(index)
        write_all(self._fd, buffers)
        ref = PartRef(self.name, self._size, ends[-1], len(index))
        self._size += ref.size + len(index)
        return ref

    @property
    def path(self) -> str:
        return str(self._path)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_index(fd: int, ref: PartRef) -> _Index:
    data = os.pread(fd, ref.index_size, ref.offset + ref.size)
    if len(data) != ref.index_size:
        raise OSError(errno.EIO, f"part log {ref.log} is shorter than its blocks say")
    raw = msgspec.msgpack.decode(data, type=tuple[bytes, bytes, bytes, bytes, bytes])
    hashes, ends, counts, name_ends = array("I"), array("Q"), array("Q"), array("Q")
    hashes.frombytes(raw[0])
    ends.frombytes(raw[1])
    counts.frombytes(raw[2])
    name_ends.frombytes(raw[4])
    return _Index(hashes, ends, counts, raw[3], name_ends)


def write_order(directory: Path, refs: Sequence[PartRef | None]) -> None:
    """Write the blocks' order for the placings (None: a span without records)."""
    directory.mkdir(exist_ok=True)
    (directory / ORDER_NAME).write_bytes(msgspec.msgpack.encode([ref for ref in refs if ref is not None]))


def read_order(directory: Path) -> list[PartRef]:
    return msgspec.msgpack.decode((directory / ORDER_NAME).read_bytes(), type=list[PartRef])


def place_shard(
    parts: Path,
    output: Path,
    shard: int,
    shards: int,
    moved: Callable[[], object] | None = None,
    budget: int = PLACE_BYTES,
    compress: Compress | None = None,
    wrote: Callable[[int, int], object] | None = None,
) -> dict[bytes, tuple[int, int]]:
    """Write the group files of shard ``shard`` of ``shards`` into ``output``
    from the blocks listed in ``parts``' order file; each such group's
    (records, bytes on disk). ``moved`` is called for each block read,
    ``wrote`` with the bytes each write took and gave out (progress).

    With ``compress``, each group file is cut into frames at fixed offsets
    of its content (``output.frames``): a write in the middle of a round
    gives out only whole frames and keeps the rest, so the compressed bytes
    depend on no shard, round or budget, and a placing done again still
    writes the same bytes to the same places."""
    refs = read_order(parts)
    logs: dict[str, int] = {}
    try:
        low, high = shard_hashes(shard, shards)
        # First the size of the shard's share: its ranges sized to the budget.
        total = 0
        for ref in refs:
            index = _read_index(_log(parts, logs, ref.log), ref)
            first, last = bisect_left(index.hashes, low), bisect_left(index.hashes, high)
            if first < last:
                total += index.ends[last - 1] - index.start(first)
        rounds = max(1, -(-total // budget))
        placed: dict[bytes, list[int]] = {}  # records, bytes (= where the file's next bytes go)
        for round_ in range(rounds):
            sub_low = low + (high - low) * round_ // rounds
            sub_high = low + (high - low) * (round_ + 1) // rounds
            writer = _Writer(output, placed, compress, wrote)
            _place_range(parts, logs, refs, sub_low, sub_high, budget, placed, moved, writer)
    finally:
        for fd in logs.values():
            os.close(fd)
    return {group: (count, size) for group, (count, size) in placed.items()}


def _log(parts: Path, logs: dict[str, int], name: str) -> int:
    fd = logs.get(name)
    if fd is None:
        fd = logs[name] = os.open(parts / name, os.O_RDONLY | os.O_CLOEXEC)
    return fd


def _place_range(
    parts: Path,
    logs: dict[str, int],
    refs: Sequence[PartRef],
    low: int,
    high: int,
    budget: int,
    placed: dict[bytes, list[int]],
    moved: Callable[[], object] | None,
    writer: _Writer,
) -> None:
    """Gather the groups of hashes ``[low, high)`` from every block, in
    order, and write them; more than once per group only if they hold more
    than ``budget`` together."""
    held: defaultdict[bytes, list[memoryview]] = defaultdict(list)
    held_bytes = 0
    for ref in refs:
        fd = _log(parts, logs, ref.log)
        index = _read_index(fd, ref)
        first, last = bisect_left(index.hashes, low), bisect_left(index.hashes, high)
        if first < last:
            start = index.start(first)
            size = index.ends[last - 1] - start
            block = memoryview(os.pread(fd, size, ref.offset + start))
            if len(block) != size:
                raise OSError(errno.EIO, f"part log {ref.log} is shorter than its blocks say")
            ends, name_ends = index.ends[first:last], index.name_ends[first:last]
            starts = chain((start,), ends)  # each group's bytes start where the one before ends
            name_starts = chain((index.name_ends[first - 1] if first else 0,), name_ends)
            names = index.names
            for begin, end, name_begin, name_end, count in zip(
                starts, ends, name_starts, name_ends, index.counts[first:last]
            ):
                group = names[name_begin:name_end]
                held[group].append(block[begin - start : end - start])
                totals = placed.get(group)
                if totals is None:
                    placed[group] = [count, 0]
                else:
                    totals[0] += count
            held_bytes += size
            if held_bytes >= budget:
                writer.write(held)
                held, held_bytes = defaultdict(list), 0
        if moved is not None:
            moved()
    writer.write(held, last=True)


class _Writer:
    """Writes a round's held pieces to their group files: as they are, or
    through a :class:`~mpevents.output.frames.Framer` per group."""

    def __init__(
        self,
        output: Path,
        placed: dict[bytes, list[int]],
        compress: Compress | None,
        wrote: Callable[[int, int], object] | None,
    ) -> None:
        self._output, self._placed, self._wrote = output, placed, wrote
        self._compress = compress
        self._codec = codec(compress) if compress is not None else None
        self._framers: dict[bytes, Framer] = {}  # the round's groups' unframed tails

    def write(self, held: dict[bytes, list[memoryview]], last: bool = False) -> None:
        """Write ``held``; with ``last`` (the round's end), every group's last frame too."""
        taken = given = 0
        groups = list(held)
        if last and self._codec is not None:  # a group whose tail waits with no piece since
            groups += [group for group in self._framers if group not in held]
        for group in groups:
            pieces = held.get(group, [])
            totals = self._placed[group]
            if self._codec is not None:
                framer = self._framers.get(group)
                if framer is None:
                    framer = self._framers[group] = Framer(self._codec)
                taken += sum(map(len, pieces))
                start = framer.compressed
                frames = framer.take(pieces, last)
                if not frames:
                    continue
                given += framer.compressed - start
                totals[1] = self._write(group, frames, start)
            else:
                written = self._write(group, pieces, totals[1]) - totals[1]
                taken, given = taken + written, given + written
                totals[1] += written
        if self._wrote is not None and (taken or given):
            self._wrote(taken, given)

    def _write(self, group: bytes, buffers: Sequence[bytes | memoryview], offset: int) -> int:
        """Write ``buffers`` at ``offset`` of ``group``'s file; where they end."""
        name = group_file_name(group)
        if self._compress is not None:
            name = self._compress.name(name)
        fd = os.open(self._output / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            return offset + write_all(fd, buffers, offset)
        finally:
            os.close(fd)
