"""The scoreboard: counters in shared memory, written by children, read by main.

Progress never travels as messages: each child bumps plain int64 cells in a
``multiprocessing.RawArray`` that main (the dashboard and the summary) reads
whenever it likes. Each cell has one writer, so no lock is needed; a reader
may see a value a moment old, which is all a dashboard needs.

It only counts. What recovery needs (the span each worker holds, where each
file resumes, credits) is the ledger's (``local.ledger``); the counts in
``summary.json`` come from the collector's report, not from here.
"""

from __future__ import annotations

import enum
from multiprocessing.sharedctypes import RawArray
from typing import Any, Final

from mpevents.core.spec import REASONS

TOP_GROUPS: Final = 5
"""How many of the largest groups the collector publishes for the dashboard."""
TOP_NAME_BYTES: Final = 64
"""Of each of those groups' names (their canonical text), the bytes kept for the dashboard."""


class FileField(enum.IntEnum):
    """Byte counts are of the file on disk, so that compressed files count as they weigh."""

    BYTES_READ = 0  # bytes framed by its reader
    STATE = 1  # FileState
    WRITTEN = 2  # bytes whose lines the collector has written (for a compressed file, an estimate)
    LINES = 3  # lines written
    INFLATED = 4  # a compressed file: the decompressed bytes of what was read


class FileState(enum.IntEnum):
    WAITING = 0
    READING = 1
    READ = 2
    WRITTEN = 3


class WorkerField(enum.IntEnum):
    CHUNKS = 0
    LINES = 1
    BUSY_NS = 2
    RESTARTS = 3
    SKIPPED = 4  # decompressed bytes passed over to read a dead worker's span again
    PLACED = 5  # blocks read by its placings, once every span is in (output.parts)
    # Per placing, in the cell of the worker slot of the placing's number, set
    # (not added) by whichever worker runs it: a placing done again after a
    # death starts its counts over instead of adding to its predecessor's.
    PLACE_READ = 6  # bytes it has read from the part logs
    OUT_PLAIN = 7  # bytes of records it has written (decompressed)
    OUT_WRITTEN = 8  # the bytes it has written (compressed, with --compress)


class ReaderField(enum.IntEnum):
    FILE = 0  # the file being read, plus one (0: none)
    BYTES = 1  # bytes framed so far, all files together
    SKIPPED = 2  # decompressed bytes passed over to reach a restart point


class CollectorField(enum.IntEnum):
    RESULTS = 0
    RECORDS = 1
    REJECTED = 2
    BLANK = 3
    LINES = 4
    HEAD = 5  # files written (the index of the file being written)
    GROUPS = 6  # distinct groups so far
    BUSY_NS = 7  # time spent ordering and writing
    BYTES = 8  # input bytes whose lines are written
    TO_PLACE = 9  # bytes of records the placings write in the whole run, once every span is in (0: not yet)
    PLACE_START_NS = 10  # when every span was in (time.monotonic_ns, shared by every process)
    PLACED_BEFORE = 11  # Board.placed() then: what the epochs placed while the run went on had done
    REASONS = 12  # a cell per reason of the schema, then TOP_GROUPS (name length, count) pairs


_FILE_WIDTH: Final = len(FileField)
_WORKER_WIDTH: Final = len(WorkerField)
_READER_WIDTH: Final = len(ReaderField)


class Board:
    """Shared int64 counters for ``files`` input files, ``workers`` worker
    slots and ``readers`` reader slots. What main reads on every tick (the
    progress, the dashboard's totals) is kept per slot or in the collector's
    cells, never summed over the files, so a tick costs the same for 4 files
    as for 20,000."""

    def __init__(self, files: int, workers: int, readers: int = 1, reasons: tuple[str, ...] = REASONS) -> None:
        self.n_files = files
        self.n_workers = workers
        self.n_readers = readers
        self._files: Any = RawArray("q", files * _FILE_WIDTH)
        self._workers: Any = RawArray("q", workers * _WORKER_WIDTH)
        self._readers: Any = RawArray("q", readers * _READER_WIDTH)
        self.reason_names = reasons
        """The schema's reason codes, in check order: a cell each."""
        self._top_start = CollectorField.REASONS + len(reasons)
        self._collector: Any = RawArray("q", self._top_start + 2 * TOP_GROUPS)
        self._top_names: Any = RawArray("c", TOP_GROUPS * TOP_NAME_BYTES)

    # files
    def file(self, index: int, field: FileField) -> int:
        return int(self._files[index * _FILE_WIDTH + field])

    def set_file(self, index: int, field: FileField, value: int) -> None:
        self._files[index * _FILE_WIDTH + field] = value

    # workers
    def worker(self, slot: int, field: WorkerField) -> int:
        return int(self._workers[slot * _WORKER_WIDTH + field])

    def add_worker(self, slot: int, field: WorkerField, value: int) -> None:
        self._workers[slot * _WORKER_WIDTH + field] += value

    def set_worker(self, slot: int, field: WorkerField, value: int) -> None:
        self._workers[slot * _WORKER_WIDTH + field] = value

    # readers
    def reader(self, slot: int, field: ReaderField) -> int:
        return int(self._readers[slot * _READER_WIDTH + field])

    def set_reader(self, slot: int, field: ReaderField, value: int) -> None:
        self._readers[slot * _READER_WIDTH + field] = value

    def add_reader(self, slot: int, field: ReaderField, value: int) -> None:
        self._readers[slot * _READER_WIDTH + field] += value

    def read_bytes(self) -> int:
        return sum(self.reader(slot, ReaderField.BYTES) for slot in range(self.n_readers))

    def placed(self) -> int:
        """The placings' work so far, as bytes of records: half of what they
        have read from the part logs and half of what they have written
        (reads alone would say all is done before a round's writes)."""
        slots = range(self.n_workers)
        read = sum(self.worker(slot, WorkerField.PLACE_READ) for slot in slots)
        written = sum(self.worker(slot, WorkerField.OUT_PLAIN) for slot in slots)
        return (read + written) // 2

    # collector
    def collector(self, field: CollectorField) -> int:
        return int(self._collector[field])

    def set_collector(self, field: CollectorField, value: int) -> None:
        self._collector[field] = value

    def reasons(self) -> dict[str, int]:
        base = CollectorField.REASONS
        return {reason: int(self._collector[base + i]) for i, reason in enumerate(self.reason_names)}

    def set_reason(self, index: int, count: int) -> None:
        self._collector[CollectorField.REASONS + index] = count

    def top_groups(self) -> list[tuple[str, int]]:
        """The largest groups, (name, records); a name may be cut, or a moment older than its count."""
        cells, names, top = self._collector, self._top_names, self._top_start
        found = []
        for i in range(TOP_GROUPS):
            length, count = int(cells[top + 2 * i]), int(cells[top + 2 * i + 1])
            if count > 0:
                name = names[i * TOP_NAME_BYTES : i * TOP_NAME_BYTES + length]
                found.append((name.decode("utf-8", "replace"), count))
        return found

    def set_top_groups(self, pairs: list[tuple[bytes, int]]) -> None:
        """Publish the largest groups, (canonical text, records)."""
        cells, names, top = self._collector, self._top_names, self._top_start
        for i in range(TOP_GROUPS):
            group, count = pairs[i] if i < len(pairs) else (b"", 0)
            name = group[:TOP_NAME_BYTES]
            names[i * TOP_NAME_BYTES : i * TOP_NAME_BYTES + len(name)] = name
            cells[top + 2 * i] = len(name)
            cells[top + 2 * i + 1] = count

    def reset(self) -> None:
        """Zero every counter but the worker restart counts (for a fresh attempt)."""
        restarts = [self.worker(slot, WorkerField.RESTARTS) for slot in range(self.n_workers)]
        for cells in (self._files, self._workers, self._readers, self._collector):
            for i in range(len(cells)):
                cells[i] = 0
        for slot, count in enumerate(restarts):
            self._workers[slot * _WORKER_WIDTH + WorkerField.RESTARTS] = count

    def progress(self) -> tuple[int, ...]:
        """A value that changes whenever any stage moves (for stall detection):
        a span framed, checked or written, a block placed, and also each MiB that a reader or
        worker decompresses to get back to where it is to go on, which for a
        big compressed file is seconds of work that frames nothing."""
        readers, workers = range(self.n_readers), range(self.n_workers)
        return (
            self.read_bytes(),
            sum(self.worker(k, WorkerField.CHUNKS) for k in workers),
            self.collector(CollectorField.RESULTS),
            sum(self.reader(k, ReaderField.SKIPPED) for k in readers),
            sum(self.worker(k, WorkerField.SKIPPED) for k in workers),
            sum(self.worker(k, WorkerField.PLACED) for k in workers),
        )
