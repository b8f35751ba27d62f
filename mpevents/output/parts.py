"""Parts: the local engine's records between the workers and the group files.

Owns the part logs' format and both ends of it: :class:`PartLog`, to which
a worker appends each span's records (one ``writev`` per span, whatever
the number of groups), and :func:`place`, with which a worker writes its
share of an epoch's blocks into the group files (a :class:`Placing`, one
per worker: :func:`plan`) from all the logs. An epoch is a run of blocks in
order (:class:`Order`: which, and where each group file ends before them);
the local collector has each placed in turn while the run goes on, and the
rest once every span is in.

    worker --(span's records, one block)--> its part log --+
    worker --(span's records, one block)--> its part log --+--> place(placing k) --> its share of the group files
                 |  PartRef (where the block is)            |    (every worker takes a placing)
                 v                                          |
    collector: the PartRefs in input order ---(order file)--+

A block holds the span's groups sorted by the CRC-32 of their names, then
an index of arrays side by side: per group that hash, where its bytes end
in the block, its records, where its name ends, then the names. A shard is
a range of hashes, so its groups lie together in every block: placing a
shard reads the hashes of each block once, and in each round the range of
every array it needs and one range of the block's records (``pread``),
gathers each group's pieces from all blocks in memory, and writes each group
file with one ``pwritev`` per
``PLACE_BYTES`` it gathered. Where a range's pieces are 32 KiB or more on
average (a few groups), each such piece is copied in the kernel instead,
never read into memory. Nothing serial touches a record: the collector
only keeps the blocks' order, and the group files are written by all the
workers at once, each of their files once whatever the number of blocks.

With a few groups, shards of hashes would leave most workers idle, so the
placings share the blocks instead, each writing its blocks' bytes of every
group where the blocks before leave off (it reads their indexes to know).

With --compress a placing cuts each group file into frames at fixed offsets
of its content as it writes it (``output.frames``), so that compression is
done by every worker too, and its bytes depend on no placing or budget;
then the placings share hash ranges whatever the groups (a range of blocks
would begin in the middle of a frame).

A placing writes at offsets it works out itself, with ``pwritev``, never
truncating: done again (its worker died, the placing handed to a
replacement), it writes the same bytes to the same places, so a copy of it
still running, or killed, can never make a file shorter. A copy done again
after its epoch is placed (its worker died having sent the result) finds
the order file gone or another epoch's, and writes nothing: the part log
files it would read may be gone. A file a killed placing left half written
is written whole by its copy; ``--resume`` cuts every group file back to its
journaled size (``output.journal``).

Talks to: nothing but the files and the frames (``output.frames``); the worker (``local.worker``) appends and
places, the local collector (``local.collector``) keeps the refs and
writes the order file (:func:`write_order`), the journal keeps refs for
``--resume``.
"""

from __future__ import annotations

import errno
import itertools
import os
import zlib
from array import array
from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from operator import itemgetter, sub
from pathlib import Path
from typing import Final, NamedTuple

import msgspec

from mpevents.core.spec import ChunkParts
from mpevents.core.system import SMALL_COPY, copy_range, write_all
from mpevents.output.frames import Compress, Framer, codec
from mpevents.output.names import group_file_name

HASHES: Final = 1 << 32
"""A group's place among the shards is its name's CRC-32: a shard is a range
of them, so that shards share many groups evenly, whatever their names."""
PLACE_BYTES: Final = 4 << 20
"""What a placing gathers in memory before it writes. A shard bigger than
this is placed in rounds, each a range of its hashes, so that each group
file is still written once (a round costs a look at its range of every block's index,
not a read of its records), and every worker placing at once adds only this
and INDEX_CACHE_BYTES to the run's memory, whatever the size of the output."""
INDEX_CACHE_BYTES: Final = 8 << 20
"""The most memory a placing may keep of the blocks' indexes once read (a
small index whole, a big one's hashes: 4 bytes a group and _HASHES_OVERHEAD
a block): every round of a placing looks up its range in each block's
hashes. The rest of a big index is read a round's range at a time: a whole
index read and decoded each round, as 100,000 groups' blocks (560 KiB each)
were, took 0.46 s of a placing's 3.0 s of CPU."""
_HASHES_OVERHEAD: Final = 100
"""About what a block's array of hashes takes beyond its items."""
_COLUMNS: Final = ("I", "Q", "Q", "Q")
"""A block index's arrays, side by side, then its names: each group's hash,
where its bytes end, its records and where its name ends."""
_ITEMS_BEFORE: Final = tuple(itertools.accumulate((array(kind).itemsize for kind in _COLUMNS), initial=0))
"""Bytes a group takes in the arrays before each (and, last, before the names)."""
WHOLE_INDEX_BYTES: Final = 64 << 10
"""An index of at most this many bytes (some 2,000 groups) is read whole
and kept whole, within INDEX_CACHE_BYTES: read by ranges, a placing of 200
groups in 28 rounds of 112 blocks spent twice the CPU of one that kept its
indexes (0.069 s against 0.034 s), in small reads."""
FEW_GROUPS: Final = 64
"""Blocks of at most this many groups are placed by ranges of blocks (:func:`plan`):
reading the indexes of every block before a range, to know where its bytes
go, costs little with so few groups."""
FEW_PIECES: Final = 32
"""A block range of fewer pieces than this is held a piece at a time: the
C-level passes cost more to set up than such a range's Python steps (200
groups in 28 rounds meet 3 or 4 pieces a block each round)."""
ORDER_NAME: Final = "order"
"""The file in the parts directory that lists the blocks to place, in input order (an :class:`Order`)."""
SEGMENT_CHUNKS: Final = 4
"""A part log is a series of files of about this many chunks' records (4 MiB
at the default --chunk-bytes; a block is never split, and the one that takes
a file past the size is its last): once every block in a file is placed, the
file can go (``local.collector``'s epochs), and its pages are the next ones
written. A placing reads a block with one ``pread`` whatever the file, so
files cost nothing but a name each."""

JOIN_OVER: Final = 1024
"""A block of more groups than this is joined into one buffer before it is
written: the kernel walks each buffer of a ``writev`` on its own, and a
block of 17,000 groups' records (100,000 groups in all) took 1.6 ms as
17,000 buffers against 0.25 ms joined and written at once; at 1,000 they
cost the same, at 200 the join is the dearer."""


class PartRef(NamedTuple):
    """Where a span's block lies: in part log ``log``, ``size`` bytes of
    records from ``offset``, then ``index_size`` bytes of index."""

    log: str
    offset: int
    size: int
    index_size: int
    groups: int = 0
    """How many groups the block holds."""


class Order(msgspec.Struct, array_like=True, frozen=True):
    """What the placings of one epoch read (:func:`write_order`): blocks
    ``base`` to ``base + len(refs)`` of the run's order, and where each
    group's file ends before them."""

    base: int
    refs: list[PartRef]
    starts: dict[bytes, int] = {}
    """Where each group file placed by an earlier epoch ends: its bytes go on from there."""
    final: bool = True
    """The run's last epoch: no part log file of it is removed before the
    run ends, so one missing is an error, never a sign that a copy of a
    placing of an earlier epoch is running late."""


class Placing(NamedTuple):
    """Placing ``number`` of a plan (from 0): the groups of hash range ``number``
    of ``shards`` (every group when ``shards`` is 1: only a plan by hashes has
    more than one shard), from blocks ``first``
    to ``last`` (not included) of the order, each group's bytes written after
    what the blocks before ``first`` hold of it."""

    number: int
    shards: int
    first: int
    last: int
    """``first`` and ``last`` count from the run's first block, not the epoch's."""

    @property
    def hashes(self) -> tuple[int, int]:
        """The range ``[low, high)`` of the hashes of its groups' names."""
        if self.shards == 1:
            return 0, HASHES
        return self.number * HASHES // self.shards, (self.number + 1) * HASHES // self.shards

    def describe(self) -> str:
        if self.shards > 1:
            return f"shard {self.number + 1} of {self.shards} of the group files"
        return f"blocks {self.first + 1}-{self.last} of the group files"


def plan(refs: Sequence[PartRef], workers: int, by_hash: bool = False, base: int = 0) -> list[Placing]:
    """The placings that write ``refs`` (blocks ``base`` on of the run's
    order) into the group files, one per worker.

    Blocks of many groups are shared by hash ranges, each placing all the
    blocks of its groups, so that each group file is written once. Blocks
    of a few groups (FEW_GROUPS at most) are shared by ranges of blocks of
    about equal bytes instead: hash ranges of three groups would leave most
    workers idle and one writing a third of the output. ``by_hash`` (the
    output compressed, in frames that must begin at fixed offsets) shares
    hash ranges whatever the groups.
    """
    if not refs:
        return []
    if by_hash or max(ref.groups for ref in refs) > FEW_GROUPS:
        return [Placing(shard, workers, base, base + len(refs)) for shard in range(workers)]
    ends = list(itertools.accumulate(ref.size for ref in refs))  # bytes up to each block's end
    cuts = [0]
    for share in range(1, workers):
        target = ends[-1] * share / workers
        after = bisect_left(ends, target)  # the first block that ends at or past the target
        cut = (
            after + 1
            if after < len(ends) and (after == 0 or ends[after] - target < target - ends[after - 1])
            else after
        )
        cuts.append(max(cut, cuts[-1]))
    cuts.append(len(refs))
    ranges = [(first, last) for first, last in itertools.pairwise(cuts) if first < last]
    return [Placing(index, 1, base + first, base + last) for index, (first, last) in enumerate(ranges)]


class _Entries(NamedTuple):
    """The entries of one range of hashes of a block: its groups, in the block's order."""

    start: int
    """Where the first entry's bytes begin in the block."""
    ends: array[int]
    """Where each entry's bytes end in the block."""
    counts: array[int]
    """Each entry's records."""
    names: list[bytes]


class PartLog:
    """One worker process's part log, appended to (a single writer; a
    killed one's torn last block is simply never referred to): files
    ``<name>-0``, ``<name>-1``, ..., the next begun once one holds
    ``segment_bytes`` (SEGMENT_CHUNKS chunks)."""

    def __init__(self, directory: Path, name: str, segment_bytes: int = 1 << 62) -> None:
        self._directory = directory
        self.segment_bytes = segment_bytes
        self._prefix = name
        self._segment = 0
        self.name = f"{name}-0"
        self._fd: int | None = None
        self._size = 0

    def append(self, result: ChunkParts) -> PartRef | None:
        """Write ``result``'s records as one block; where it lies (None: no records)."""
        groups = result.groups
        if not groups:
            return None
        if self._fd is None:
            self._directory.mkdir(exist_ok=True)
            path = self._directory / self.name
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            self._size = os.fstat(self._fd).st_size
        # Every step is one C-level pass over the groups, not a Python step per
        # group: a chunk of 100,000 groups' lines holds some 17,000 of them. (Two
        # names with one hash keep the chunk's order; the block's layout is
        # not the output's, which placing writes group by group.)
        names = sorted(groups, key=zlib.crc32)
        values = list(map(groups.__getitem__, names))
        records = list(map(b"".join, map(itemgetter(1), values)))  # cheaper than summing the pieces' sizes
        # Arrays made from lists: from an iterator, array appends item by item (twice the time).
        ends = array("Q", list(itertools.accumulate(map(len, records))))
        index = b"".join(
            (
                array("I", list(map(zlib.crc32, names))).tobytes(),
                ends.tobytes(),
                array("Q", list(map(itemgetter(0), values))).tobytes(),
                array("Q", list(itertools.accumulate(map(len, names)))).tobytes(),
                *names,
            )
        )
        records.append(index)
        if len(records) > JOIN_OVER:
            records = [b"".join(records)]
        write_all(self._fd, records)
        ref = PartRef(self.name, self._size, ends[-1], len(index), len(names))
        self._size += ref.size + len(index)
        if self._size >= self.segment_bytes:  # this file is whole: the next block begins the next
            self.close()
            self._segment += 1
            self.name = f"{self._prefix}-{self._segment}"
        return ref

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def write_order(
    directory: Path,
    refs: Sequence[PartRef | None],
    base: int = 0,
    starts: dict[bytes, int] | None = None,
    final: bool = True,
) -> None:
    """Write the order for an epoch's placings (:class:`Order`; a None in
    ``refs``: a span without records), whole or not at all: a placing done
    again reads it while the collector may be replacing it."""
    directory.mkdir(exist_ok=True)
    order = Order(base, [ref for ref in refs if ref is not None], starts or {}, final)
    partial = directory / f"{ORDER_NAME}.partial"
    partial.write_bytes(msgspec.msgpack.encode(order))
    os.replace(partial, directory / ORDER_NAME)


def read_order(directory: Path) -> Order | None:
    """The order the placings read now (None: none, between epochs)."""
    try:
        return msgspec.msgpack.decode((directory / ORDER_NAME).read_bytes(), type=Order)
    except FileNotFoundError:
        return None


def _covers(order: Order | None, placing: Placing) -> bool:
    """Whether ``order`` is the epoch of ``placing``: if not, its epoch is placed, and
    this is a copy of one of its placings, done again after its worker died
    having sent its result."""
    return order is not None and order.base <= placing.first <= placing.last <= order.base + len(order.refs)


def place(
    parts: Path,
    output: Path,
    placing: Placing,
    moved: Callable[[], object] | None = None,
    budget: int = PLACE_BYTES,
    compress: Compress | None = None,
    wrote: Callable[[int, int, int], object] | None = None,
) -> dict[bytes, tuple[int, int]]:
    """Write ``placing``'s part of the group files into ``output`` from the
    blocks listed in ``parts``' order file; each of its groups' records and
    where its file now ends. ``moved`` is called for each block read,
    ``wrote`` with what each read and each write moved (progress): bytes
    read from the part logs, bytes of records written, bytes written (compressed).

    With ``compress`` (a placing by hashes: :func:`plan`), each group file is
    cut into frames at fixed offsets of its content (``output.frames``): a
    write in the middle of a round gives out only whole frames and keeps the
    rest, so the compressed bytes depend on no placing, round or budget, and
    a placing done again still writes the same bytes to the same places."""
    if compress is not None and placing.first:
        raise ValueError("compressed output is placed by hashes, over every block")
    order = read_order(parts)
    if not _covers(order, placing):
        return {}  # a copy of a placing whose epoch is placed: its bytes are written
    assert order is not None
    try:
        return _place(parts, output, placing, order, moved, budget, compress, wrote)
    except FileNotFoundError:
        # A part log gone: the collector removes an epoch's once its placings
        # are in. This copy's epoch is placed if its order is gone too.
        if order.final or _covers(read_order(parts), placing):
            raise
        return {}


def _place(
    parts: Path,
    output: Path,
    placing: Placing,
    order: Order,
    moved: Callable[[], object] | None,
    budget: int,
    compress: Compress | None,
    wrote: Callable[[int, int, int], object] | None,
) -> dict[bytes, tuple[int, int]]:
    blocks = _Blocks(parts)
    refs, existing = order.refs, order.starts
    # Every placing makes its files in ``output`` itself, opened relative to
    # it, not by a whole path walked (and built) as many times. Making them
    # in a directory of each placing's own and renaming them into ``output``
    # at the end, which spares the placings waiting on one directory's lock
    # while each file is made, was slower (100,000 groups, N=2, 4
    # interleaved pairs: 7.59 s against 6.12 s; 1,000 groups, 6 pairs: 1.84
    # against 1.63 s): a rename takes that lock too, and for longer.
    directory = os.open(output, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        low, high = placing.hashes
        first, last = placing.first - order.base, placing.last - order.base
        # Where each group's bytes begin: after the earlier epochs', and the blocks before the placing's.
        starts = dict(existing)
        for ref in refs[:first]:
            entries = blocks.entries(ref, low, high, keep=False)  # read once: room for the placing's own
            if entries is not None:
                begins = itertools.chain((entries.start,), entries.ends)
                for group, begin, end in zip(entries.names, begins, entries.ends):
                    starts[group] = starts.get(group, 0) + end - begin
        mine = refs[first:last]
        # The placing's share in ranges of hashes sized to the budget.
        total = 0
        for ref in mine:
            bounds = blocks.bounds(ref, low, high)
            if bounds is not None:
                total += bounds[1] - bounds[0]
        rounds = max(1, -(-total // budget))
        placed: dict[bytes, list[int]] = {}  # records, where the file's next bytes go
        for round_ in range(rounds):
            sub_low = low + (high - low) * round_ // rounds
            sub_high = low + (high - low) * (round_ + 1) // rounds
            writer = _Writer(directory, placed, starts, compress, wrote)
            _place_range(blocks, mine, sub_low, sub_high, budget, moved, writer)
    finally:
        blocks.close()
        os.close(directory)
    return {group: (count, size) for group, (count, size) in placed.items()}


def _file_name(group: bytes, compress: Compress | None) -> str:
    name = group_file_name(group)
    return name if compress is None else compress.name(name)


class _Blocks:
    """A placing's way to the blocks: the part logs it opened, and what it
    read of their indexes, kept while it fits in INDEX_CACHE_BYTES: a small
    index whole, a big one's hashes."""

    def __init__(self, parts: Path) -> None:
        self._parts = parts
        self._logs: dict[str, int] = {}
        self._hashes: dict[PartRef, array[int]] = {}
        self._whole: dict[PartRef, tuple[list[array[int]], list[bytes]]] = {}  # small indexes: arrays, names
        self._kept = 0

    def log(self, ref: PartRef) -> int:
        """The descriptor of ``ref``'s part log."""
        fd = self._logs.get(ref.log)
        if fd is None:
            fd = self._logs[ref.log] = os.open(self._parts / ref.log, os.O_RDONLY | os.O_CLOEXEC)
        return fd

    def _range(self, ref: PartRef, low: int, high: int, keep: bool) -> tuple[int, int]:
        """The entries ``[first, last)`` of ``ref``'s block whose hashes are in ``[low, high)``."""
        hashes = self._hashes.get(ref)
        if hashes is None:
            whole = ref.index_size <= WHOLE_INDEX_BYTES
            size = _HASHES_OVERHEAD + 4 * ref.groups + (ref.index_size if whole else 0)
            keep = keep and self._kept + size <= INDEX_CACHE_BYTES
            if keep and whole:
                self._whole[ref] = self._decode(ref)
            hashes = self._read(ref, 0, 0, ref.groups)
            if keep:
                self._hashes[ref] = hashes
                self._kept += size
        return bisect_left(hashes, low), bisect_left(hashes, high)

    def _decode(self, ref: PartRef) -> tuple[list[array[int]], list[bytes]]:
        """``ref``'s whole index, read at once: its arrays and its names."""
        data = _pread_exact(self.log(ref), ref.index_size, ref.offset + ref.size, ref)
        arrays, at = [], 0
        for column in range(len(_COLUMNS)):
            items = array(_COLUMNS[column])
            size = ref.groups * items.itemsize
            items.frombytes(data[at : at + size])
            arrays.append(items)
            at += size
        return arrays, _split(data[at:], 0, arrays[3])

    def _read(self, ref: PartRef, column: int, first: int, last: int) -> array[int]:
        """Items ``[first, last)`` of array ``column`` of ``ref``'s index (_COLUMNS)."""
        whole = self._whole.get(ref)
        if whole is not None:
            return whole[0][column][first:last]
        items = array(_COLUMNS[column])
        at = _column_at(ref, column)
        items.frombytes(_pread_exact(self.log(ref), (last - first) * items.itemsize, at + first * items.itemsize, ref))
        return items

    def _names(self, ref: PartRef, first: int, last: int) -> list[bytes]:
        """The names of entries ``[first, last)`` of ``ref``'s block."""
        whole = self._whole.get(ref)
        if whole is not None:
            return whole[1][first:last]
        before = 1 if first else 0  # the entry before: where the range's names begin
        name_ends = self._read(ref, 3, first - before, last)
        name_start = name_ends[0] if before else 0
        at = _column_at(ref, len(_COLUMNS)) + name_start
        return _split(_pread_exact(self.log(ref), name_ends[-1] - name_start, at, ref), name_start, name_ends[before:])

    def bounds(self, ref: PartRef, low: int, high: int) -> tuple[int, int] | None:
        """Where the bytes of hashes ``[low, high)`` begin and end in ``ref``'s block (None: it has none)."""
        first, last = self._range(ref, low, high, keep=True)
        if first == last:
            return None
        ends = self._read(ref, 1, max(first - 1, 0), last)
        return (ends[0] if first else 0), ends[-1]

    def entries(self, ref: PartRef, low: int, high: int, keep: bool = True) -> _Entries | None:
        """The entries of hashes ``[low, high)`` in ``ref``'s block (None: it has
        none); with ``keep``, what was read of its index kept for later while there is room."""
        first, last = self._range(ref, low, high, keep)
        if first == last:
            return None
        before = 1 if first else 0  # the entry before: where the range's bytes begin
        ends = self._read(ref, 1, first - before, last)
        start = ends[0] if before else 0
        return _Entries(start, ends[before:], self._read(ref, 2, first, last), self._names(ref, first, last))

    def close(self) -> None:
        for fd in self._logs.values():
            os.close(fd)


def _column_at(ref: PartRef, column: int) -> int:
    """Where array ``column`` of ``ref``'s index begins in its part log (``len(_COLUMNS)``: the names)."""
    return ref.offset + ref.size + ref.groups * _ITEMS_BEFORE[column]


def _split(names: bytes, start: int, ends: array[int]) -> list[bytes]:
    """``names``, which begin at ``start`` of an index's names, cut where ``ends`` say."""
    shift = itertools.repeat(start)
    return list(
        map(names.__getitem__, map(slice, map(sub, itertools.chain((start,), ends), shift), map(sub, ends, shift)))
    )


def _pread_exact(fd: int, size: int, at: int, ref: PartRef) -> bytes:
    """``size`` bytes of ``ref``'s part log (open as ``fd``) from ``at``."""
    data = os.pread(fd, size, at)
    if len(data) != size:
        raise OSError(errno.EIO, f"part log {ref.log} is shorter than its blocks say")
    return data


def _place_range(
    blocks: _Blocks,
    refs: Sequence[PartRef],
    low: int,
    high: int,
    budget: int,
    moved: Callable[[], object] | None,
    writer: _Writer,
) -> None:
    """Gather the groups of hashes ``[low, high)`` from every block, in order,
    and write them: a group's pieces held until the round ends (or holds
    ``budget``) and written together; in a block range of big pieces on
    average, a big piece copied in the kernel straight from its part log
    (compressed output has every piece read, to be framed)."""
    held, counted = writer.held, writer.counted
    for ref in refs:
        entries = blocks.entries(ref, low, high)
        if entries is not None:
            fd, (start, ends, counts, groups) = blocks.log(ref), entries
            # Small pieces on average (many groups, or compressed output): the
            # range read at once, and each piece held by C-level passes over
            # the range, not a Python step per piece (at 100,000 groups a
            # placing meets a million of them). Otherwise each run of small
            # pieces is read at once, and each big piece copied in the kernel.
            if writer.framing or ends[-1] - start < SMALL_COPY * len(groups):
                whole = writer.read(fd, ref, start, ends[-1])
                if len(groups) < FEW_PIECES:
                    for group, begin, end, count in zip(groups, itertools.chain((start,), ends), ends, counts):
                        held[group].append(whole[begin - start : end - start])
                        counted[group].append(count)
                else:
                    shift = itertools.repeat(start)
                    # Each piece begins where the one before ends, both counted from the range's start.
                    starts = map(sub, itertools.chain((start,), ends), shift)
                    pieces = map(whole.__getitem__, map(slice, starts, map(sub, ends, shift)))
                    deque(map(list.append, map(held.__getitem__, groups), pieces), maxlen=0)
                    deque(map(list.append, map(counted.__getitem__, groups), counts), maxlen=0)
            else:
                run: list[tuple[bytes, int, int]] = []  # small pieces side by side, read at once
                for group, begin, end, count in zip(groups, itertools.chain((start,), ends), ends, counts):
                    counted[group].append(count)
                    if end - begin >= SMALL_COPY:
                        writer.hold_run(fd, ref, run)
                        run = []
                        writer.copy(group, fd, ref.offset + begin, end - begin, ref.log)
                    else:
                        run.append((group, begin, end))
                writer.hold_run(fd, ref, run)
            if writer.held_bytes >= budget:
                writer.write_held()
        if moved is not None:
            moved()
    writer.write_held(last=True)


class _Writer:
    """What a round of a placing has gathered, and its writes into the group
    files (``output``: a descriptor of their directory); ``placed``
    says of each group its records so far and where its file ends, ``starts``
    where the file of a group not yet in ``placed`` begins. With ``compress``, each group's
    bytes go through a :class:`~mpevents.output.frames.Framer`, which keeps
    its unframed tail."""

    def __init__(
        self,
        output: int,
        placed: dict[bytes, list[int]],
        starts: dict[bytes, int],
        compress: Compress | None = None,
        wrote: Callable[[int, int, int], object] | None = None,
    ) -> None:
        self._output = output
        self._placed = placed
        self._starts = starts
        self._held: defaultdict[bytes, list[memoryview]] = defaultdict(list)
        self._counted: defaultdict[bytes, list[int]] = defaultdict(list)
        self.held_bytes = 0
        self._compress = compress
        self._codec = codec(compress) if compress is not None else None
        self._framers: dict[bytes, Framer] = {}  # the round's groups' unframed tails
        self._wrote = wrote

    @property
    def framing(self) -> bool:
        return self._codec is not None

    @property
    def held(self) -> defaultdict[bytes, list[memoryview]]:
        """Each group's pieces read so far and not yet written, in order."""
        return self._held

    @property
    def counted(self) -> defaultdict[bytes, list[int]]:
        """Each group's records in the pieces met since its last write: added
        to ``placed`` when it is written (:meth:`_totals`)."""
        return self._counted

    def read(self, fd: int, ref: PartRef, begin: int, end: int) -> memoryview:
        """Bytes ``[begin, end)`` of ``ref``'s block, counted as held: their
        pieces go to :attr:`held`."""
        block = memoryview(_pread_exact(fd, end - begin, ref.offset + begin, ref))
        self.held_bytes += end - begin
        if self._wrote is not None:  # a round may write only at its end: its reads show it moving
            self._wrote(end - begin, 0, 0)
        return block

    def hold_run(self, fd: int, ref: PartRef, run: list[tuple[bytes, int, int]]) -> None:
        """Hold pieces that lie side by side in ``ref``'s block: (group, begin, end)."""
        if not run:
            return
        start = run[0][1]
        block, held = self.read(fd, ref, start, run[-1][2]), self._held
        for group, begin, end in run:
            held[group].append(block[begin - start : end - start])

    def copy(self, group: bytes, source: int, at: int, size: int, name: str) -> None:
        """Append ``size`` bytes of ``source`` from ``at`` to ``group``'s file,
        after what is held of it (plain output only)."""
        with self._open(group) as target:
            self._write(group, target, last=False)
            totals = self._placed[group]
            copy_range(source, at, target.fd, totals[1], size, name)
            totals[1] += size
        if self._wrote is not None:
            self._wrote(size, size, size)

    def write_held(self, last: bool = False) -> None:
        """Write what is held; with ``last`` (the round's end), every group's last frame too."""
        if self._codec is None:
            self._write_plain()
            return
        groups = list(self._held)
        if last:  # a group whose tail waits with no piece since
            groups += [group for group in self._framers if group not in self._held]
        for group in groups:
            with self._open(group) as target:
                self._write(group, target, last)
        self.held_bytes = 0

    def _write_plain(self) -> None:
        """Write each held group's pieces after its file's bytes: one open, one
        ``pwritev`` and one close a group, its progress told once for all."""
        output, totals_of = self._output, self._totals
        taken = 0
        for group, pieces in self._held.items():
            totals = totals_of(group)
            fd = os.open(group_file_name(group), _CREATE, 0o644, dir_fd=output)
            try:
                given = write_all(fd, pieces, totals[1])
            finally:
                os.close(fd)
            totals[1] += given
            taken += given
        self._held.clear()
        self.held_bytes = 0
        if self._wrote is not None and taken:
            self._wrote(0, taken, taken)

    def _totals(self, group: bytes) -> list[int]:
        """``group``'s entry in ``placed``, its records counted since added."""
        totals = self._placed.get(group)
        if totals is None:
            totals = self._placed[group] = [0, self._starts.get(group, 0)]
        counts = self._counted.pop(group, None)
        if counts is not None:
            totals[0] += sum(counts)
        return totals

    def _write(self, group: bytes, target: _Fd, last: bool) -> None:
        pieces = self._held.pop(group, [])
        totals = self._totals(group)
        taken = sum(map(len, pieces))
        self.held_bytes -= taken
        if self._codec is None:
            given = write_all(target.fd, pieces, totals[1]) if pieces else 0
            totals[1] += given
        else:
            framer = self._framers.get(group)
            if framer is None:
                framer = self._framers[group] = Framer(self._codec)
            frames = framer.take(pieces, last)
            given = write_all(target.fd, frames, totals[1]) if frames else 0
            totals[1] += given
        if self._wrote is not None and (taken or given):
            self._wrote(0, taken, given)

    def _open(self, group: bytes) -> _Fd:
        name = _file_name(group, self._compress)
        return _Fd(os.open(name, _CREATE, 0o644, dir_fd=self._output))


_CREATE: Final = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC
"""How a placing opens a group file: made if new, never truncated (a placing
done again writes the same bytes at the same offsets)."""


class _Fd:
    """An open file descriptor, closed on leaving a ``with``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> _Fd:
        return self

    def __exit__(self, *_: object) -> None:
        os.close(self.fd)
