"""Journal: what a ``--resume`` run has durably written, so that the next one goes on from there.

Owns the journal file in the staging directory and its format, the check that
the input is the one the journal was started on, and the restoring of the
staging directory to the last checkpoint.

Talks to: the run (``_run``), which starts a journal or restores one before the
engine starts; the collector core (``output.collector``), which appends a
checkpoint every CHECKPOINT_S seconds of writing; the names on disk
(``output.names``); nothing else.

The collector writes files in input order, so everything it has written is
"all lines before span ``next_seq`` of file ``head``": one position. A
checkpoint records that position and, since the last checkpoint, the counts
of the files finished, the blocks of the local engine's part logs written
(``output.parts``: its group files are made from them once every span is
in; an engine that writes group files as it goes records their sizes and
record counts instead), the size of ``rejected.jsonl`` (with --compress, also those of the compressed
rejects and of their unframed tail's side file, ``output.frames``) and the rejects by
reason. Before it is
appended, every file it describes is flushed and synced; then the journal is.
So a checkpoint never claims bytes that a crash could lose, and a crash loses
at most the writing since the last one. The syncing happens on a thread of
the collector's (:class:`Syncer`), so that the collector goes on writing
meanwhile: fsync waits for the disk, not for the CPU.

Format: a sequence of records, each ``[length: u32][crc32: u32][msgpack]``;
the first is the :class:`Header`, the rest :class:`Checkpoint`. A record that
is cut short or fails its checksum (a crash in the middle of appending) ends
the journal there.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import struct
import threading
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Final

import msgspec

from mpevents.core.errors import UsageError
from mpevents.core.inputs import FileList, InputFile
from mpevents.core.schema import V1, Schema
from mpevents.output.directory import fsync_path, remove
from mpevents.output.frames import Compress
from mpevents.output.names import JOURNAL_NAME, PARTS_DIR, REJECTS_NAME, group_file_name
from mpevents.output.parts import PartRef
from mpevents.output.report import FileCounts

CHECKPOINT_S: Final = 0.5
"""How often the collector makes a checkpoint: a crash loses at most about
this much writing (a tenth of a 10M-line run would be 0.8 s), and syncing
twice a second, on a thread of its own, costs little (README)."""
VERSION: Final = 2
"""The journal's format, and that of the part logs its checkpoints name
(``output.parts``): 2 since their block indexes are arrays side by side. A
journal of another version is refused (:func:`check_version`)."""
_FRAME: Final = struct.Struct("<II")


class Header(msgspec.Struct, array_like=True):
    version: int
    inputs: list[tuple[str, int, int, int, int]]
    """Each input file: name, size (as listed), mtime_ns, device, inode."""
    unread: dict[int, int] = msgspec.field(default_factory=dict)
    """Files still being written, by index: the bytes at their end the run
    did not read (``core.live``), so that the next run reads them as this one did."""
    schema: str = ""
    """The digest of the schema the run read lines with (``Schema.digest``); "": v1's."""
    compress: str = ""
    """--compress and its level ("zstd 3"; "": plain): the next run must write the same bytes."""


class Checkpoint(msgspec.Struct, array_like=True):
    head: int
    """The file being written; every file before it is whole."""
    next_seq: int
    """The head file's first unwritten span,"""
    next_start: int
    """and where it starts."""
    head_counts: FileCounts
    """The head file's counts so far."""
    finished: dict[int, tuple[FileCounts, int]]
    """Files finished since the last checkpoint: their counts and their end (bytes of their lines)."""
    groups: dict[str, tuple[int, int]]
    """Group files written since the last checkpoint: their size and their record count."""
    rejects_size: int
    reasons: list[int]
    parts: list[PartRef] = []
    """The local engine's blocks written since the last checkpoint, in input
    order (``output.parts``): its group files are made from them at the end."""
    rejects_files: dict[str, int] = {}
    """With --compress: the compressed rejects' size and their unframed
    tail's side file's, by name (``output.frames.FramedRejects``);
    ``rejects_size`` is then the bytes of all the rejects, decompressed."""


class State(msgspec.Struct):
    """Where the journal leaves a run: what the collector starts from."""

    head: int = 0
    next_seq: int = 0
    next_start: int = 0
    counts: dict[int, FileCounts] = msgspec.field(default_factory=dict)
    ends: dict[int, int] = msgspec.field(default_factory=dict)
    groups: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)
    rejects_size: int = 0
    reasons: list[int] = msgspec.field(default_factory=list)
    parts: list[PartRef] = msgspec.field(default_factory=list)
    rejects_files: dict[str, int] = msgspec.field(default_factory=dict)

    @property
    def lines(self) -> int:
        return sum(counts.lines for counts in self.counts.values())

    def apply(self, checkpoint: Checkpoint) -> None:
        for file, (counts, end) in checkpoint.finished.items():
            self.counts[file], self.ends[file] = counts, end
        self.head, self.next_seq, self.next_start = checkpoint.head, checkpoint.next_seq, checkpoint.next_start
        self.counts[checkpoint.head] = checkpoint.head_counts
        self.ends[checkpoint.head] = checkpoint.next_start
        self.groups.update(checkpoint.groups)
        self.rejects_size, self.reasons = checkpoint.rejects_size, checkpoint.reasons
        self.rejects_files = checkpoint.rejects_files
        self.parts += checkpoint.parts


_encoder = msgspec.msgpack.Encoder()


def identify(files: Sequence[InputFile]) -> list[tuple[str, int, int, int, int]]:
    """What the journal remembers of each input file, to tell whether it changed:
    its size as listed (a file that grew since is read up to it, and its
    growth must not go unseen), and what it is now."""
    identities = []
    for info in files:
        stat = os.stat(info.path)
        identities.append((info.name, info.size, stat.st_mtime_ns, stat.st_dev, stat.st_ino))
    return identities


def append(handle: BinaryIO, record: Header | Checkpoint) -> None:
    """Append one record and sync it to disk."""
    payload = _encoder.encode(record)
    handle.write(_FRAME.pack(len(payload), zlib.crc32(payload)) + payload)
    handle.flush()
    os.fsync(handle.fileno())


class Syncer:
    """Makes checkpoints durable off the collector's thread: syncs the files a
    checkpoint describes, then appends it to the journal and syncs that. One
    at a time: while one is being synced the collector does not make the next
    (it goes on gathering what the next will describe)."""

    def __init__(self, path: Path) -> None:
        self._handle = open(path, "ab")  # noqa: SIM115  # closed by close()
        self._work: queue.Queue[tuple[list[str], Checkpoint] | None] = queue.Queue(maxsize=1)
        self._idle = threading.Event()
        self._idle.set()
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="mpevents-journal", daemon=True)
        self._thread.start()

    def busy(self) -> bool:
        return not self._idle.is_set()

    def submit(self, paths: list[str], checkpoint: Checkpoint) -> None:
        """Sync ``paths`` (flushed already), then journal ``checkpoint``; raises
        the error of an earlier checkpoint that could not be synced."""
        self._raise()
        self._idle.clear()
        self._work.put((paths, checkpoint))

    def _run(self) -> None:
        while (item := self._work.get()) is not None:
            paths, checkpoint = item
            try:
                for path in paths:
                    fsync_path(path)
                append(self._handle, checkpoint)
            except OSError as exc:
                self._error = exc
            finally:
                self._idle.set()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Wait for the checkpoint being synced, if any, and close the journal."""
        self._work.put(None)
        self._thread.join()
        self._handle.close()
        self._raise()


def start(directory: Path, files: Sequence[InputFile], schema: Schema = V1, compress: Compress | None = None) -> None:
    """A new journal in ``directory``, naming the input, the schema and the output's format."""
    unread = {info.index: info.unread for info in files if info.unread}
    with open(directory / JOURNAL_NAME, "wb") as handle:
        append(handle, Header(VERSION, identify(files), unread, schema.digest(), _described(compress)))


def check_version(header: Header) -> None:
    """Refuse (exit 2) to resume a run of another version of mpevents, whose
    part logs this one would misread."""
    if header.version != VERSION:
        raise UsageError(
            f"--resume: the interrupted run was made by another version of mpevents (journal format "
            f"{header.version}, this one reads {VERSION}); run again without --resume"
        )


def check_schema(header: Header, schema: Schema) -> None:
    """Refuse (exit 2) to resume with another schema than the journal's run's:
    the records written so far would be of the other format."""
    if (header.schema or V1.digest()) != schema.digest():
        raise UsageError("--resume: the interrupted run read its lines with another schema; give it the same --schema")


def _described(compress: Compress | None) -> str:
    return "" if compress is None else f"{compress.kind} {compress.level}"


def check_output(header: Header, compress: Compress | None) -> None:
    """Refuse (exit 2) to resume with another --compress or level than the interrupted run's."""
    if header.compress != _described(compress):
        then, now = header.compress or "plain output", _described(compress) or "plain output"
        raise UsageError(
            f"--resume: the interrupted run wrote {then}, this one would write {now}; give the same --compress"
        )


def read(path: Path) -> tuple[Header | None, State]:
    """The header and the state of the last whole checkpoint (none: a fresh state)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, State()
    header, state, offset = None, State(), 0
    while offset + _FRAME.size <= len(data):
        length, crc = _FRAME.unpack_from(data, offset)
        payload = data[offset + _FRAME.size : offset + _FRAME.size + length]
        if len(payload) != length or zlib.crc32(payload) != crc:
            break  # torn: the crash came while this record was being appended
        offset += _FRAME.size + length
        if header is None:
            header = msgspec.msgpack.decode(payload, type=Header)
        else:
            state.apply(msgspec.msgpack.decode(payload, type=Checkpoint))
    return header, state


def check_inputs(header: Header, files: Sequence[InputFile]) -> None:
    """Refuse (exit 2) to resume on input that is not what the journal started on."""
    then, now = {entry[0]: entry for entry in header.inputs}, {entry[0]: entry for entry in identify(files)}
    for name in sorted(then.keys() | now.keys(), key=os.fsencode):
        if name not in now:
            raise UsageError(f"--resume: {name} was read by the interrupted run and is gone")
        if name not in then:
            raise UsageError(f"--resume: {name} was added since the interrupted run")
        if tuple(then[name]) != tuple(now[name]):
            _, size, mtime, *_ = then[name]
            raise UsageError(
                f"--resume: {name} changed since the interrupted run "
                f"(size {size} then, {now[name][1]} now; modified {'again' if mtime != now[name][2] else 'in place'})"
            )


def as_listed(header: Header, files: Sequence[InputFile]) -> FileList:
    """The input as the interrupted run listed it (``check_inputs`` passed):
    each file's lines end where they ended for it, whatever ``--settle`` and
    the clock say now."""
    return FileList.of(dataclasses.replace(info, unread=header.unread.get(info.index, 0)) for info in files)


def restore(directory: Path, state: State) -> None:
    """Cut the staging directory back to ``state``: group files and rejects to
    their journaled sizes; group files the journal never saw removed, and so
    is anything else (the spool of the interrupted run, where /dev/shm had no
    room for it)."""
    wanted = {group_file_name(group.encode()): size for group, (size, _) in state.groups.items()}
    if state.rejects_files:  # compressed, and the tail not framed yet
        wanted.update(state.rejects_files)
    else:
        wanted[REJECTS_NAME] = state.rejects_size
    for path in directory.iterdir():
        if path.name == JOURNAL_NAME or (path.name == PARTS_DIR and state.parts):
            continue  # the part logs hold the journaled blocks: the order file is written again
        size = wanted.pop(path.name, None)
        if size is None or not path.is_file():
            remove(path)
        elif path.stat().st_size < size:
            raise UsageError(
                f"--resume: {path.name} is shorter than the journal says; remove {directory} to start over"
            )
        else:
            os.truncate(path, size)
    if any(wanted.values()):
        missing = next(name for name, size in wanted.items() if size)
        raise UsageError(f"--resume: {missing} is missing from {directory}; remove it to start over")
