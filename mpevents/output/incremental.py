"""Incremental: what an output has read of its input, so that the next ``--incremental`` run reads only what is new.

Owns the state an incremental output keeps (:class:`Progress`, inside
``summary.json``: per input stream its fingerprint, how far its complete
lines were consumed and its counts; the committed size of every output
file), the fingerprints, the matching of a new listing against the state
(:func:`plan`), the cutting back of an output to its committed sizes
(:func:`cut_back`) and the commit of a run's new records into the output
(:func:`append`).

A stream is an input file followed across renames and compression: it is
known by its *fingerprint*, a hash of its first bytes (the first
FINGERPRINT_BYTES of its decompressed content, or all it had when it was
first read, if fewer). ``app.log`` renamed to ``app.log.1``, or compressed
into ``app.log.1.gz``, has the same first bytes, so it is read from where
the last run left it, and only its new lines. A file whose first bytes
changed, or a plain file now shorter than what was consumed of it
(copytruncate), is a new stream, read from its start (``restarted`` in the
summary). Of two files with one stream's first bytes (``gzip`` writing
``app.log.1.gz`` beside ``app.log.1``), one continues it (the same name
first, then a plain one) and the others are copies, not read
(``copies``), and so is a shorter plain file whose bytes are the start of
the one that continues it (copytruncate's copy, half made). A stream whose file is no longer among the input is
forgotten.

The commit point is ``summary.json``, which holds the state: a run appends
its records to the group files and ``rejected.jsonl`` past their committed
sizes, syncs them, then replaces ``summary.json`` in one rename. A run
killed at any moment leaves the last committed summary; the next run cuts
every file back to the sizes it lists (:func:`cut_back`) before it writes.

Talks to: the run (``_run``), which plans, cuts back and commits; the
input files (their first bytes; ``core.compression`` for compressed ones);
the output directory (``output.directory``: the syncs); the names on disk
(``output.names``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final, NamedTuple

import msgspec

from mpevents.core import failpoints as _failpoints
from mpevents.core.compression import Decompressed
from mpevents.core.errors import RunError
from mpevents.core.inputs import FileList, InputFile
from mpevents.core.system import copy_range
from mpevents.output.directory import fsync_path
from mpevents.output.names import REJECTS_NAME, SUMMARY_NAME
from mpevents.output.report import FileCounts

log = logging.getLogger("mpevents")

FINGERPRINT_BYTES: Final = 1024
"""A stream's fingerprint covers this many of its first bytes: a KiB holds
a dozen log lines, timestamps and all, where a first line alone is often a
banner that every restart of an application writes the same."""
VERSION: Final = 1


class Stream(msgspec.Struct, kw_only=True):
    """One input stream as the last committed run left it."""

    name: str
    """The name of its file when it was last read."""
    fingerprint: str
    """The BLAKE2b-64 of its first ``fingerprint_bytes`` bytes, in hex."""
    fingerprint_bytes: int
    consumed: int
    """The bytes of its complete lines read (decompressed, for a compressed file)."""
    tail_print: str = ""
    """For a stream last read from a plain file: the BLAKE2b-64 of the
    FINGERPRINT_BYTES before ``consumed``. A plain file is taken for the stream
    only if it has those too, so that two files that begin alike (one
    application's banner) are not taken for one."""
    counts: FileCounts
    """Its lines so far, by outcome: the next run numbers its rejects from ``counts.lines``."""
    compression: str = "none"
    size_on_disk: int = 0
    mtime_ns: int = 0
    inode: int = 0
    """Its file on disk when last read: a compressed file unchanged since is not decompressed again."""


class Progress(msgspec.Struct, kw_only=True):
    """What an incremental output holds: summary.json's ``incremental``."""

    version: int = VERSION
    runs: int = 0
    """Committed runs (a --follow batch is one)."""
    streams: list[Stream] = msgspec.field(default_factory=list)
    sizes: dict[str, int] = msgspec.field(default_factory=dict)
    """The committed size of every group file and of rejected.jsonl: a reader
    reads each only up to here (what lies past it is a run still writing)."""
    restarted: list[str] = msgspec.field(default_factory=list)
    """This run's files under a name the output had read that are new streams, read from their start:
    their first bytes changed (rotated, rewritten) or they are shorter than what was read (copytruncate)."""
    copies: list[str] = msgspec.field(default_factory=list)
    """This run's files not read: another file continues the stream whose first bytes they have."""
    unreadable: list[str] = msgspec.field(default_factory=list)
    """This run's compressed files whose first bytes could not be read (still being written?): left for the next."""


def read_progress(output: Path) -> tuple[Progress, bytes] | None:
    """The committed state of ``output`` and its summary's bytes; None if it has none."""
    try:
        data = (output / SUMMARY_NAME).read_bytes()
        raw = msgspec.json.decode(data)
    except (OSError, msgspec.DecodeError):
        return None
    if not isinstance(raw, dict) or "incremental" not in raw:
        return None
    try:
        return msgspec.convert(raw["incremental"], Progress), data
    except msgspec.ValidationError:
        return None


def cut_back(output: Path, progress: Progress) -> None:
    """Undo what a killed run appended: every output file cut to its committed
    size, and one the state does not know removed. Raises RunError for a
    file shorter than that, or gone: the output was changed by another hand."""
    for name, size in progress.sizes.items():
        try:
            found = (output / name).stat().st_size
        except FileNotFoundError:
            found = -1
        if found < size:
            raise RunError(
                f"{name} in {str(output)!r} is shorter than the {size:,} bytes committed to it: the output was "
                "changed since; run without --incremental to write it again"
            )
    for entry in os.scandir(output):
        if entry.name == SUMMARY_NAME:
            continue
        committed = progress.sizes.get(entry.name)
        if committed is None:
            os.unlink(entry.path)
        elif entry.stat().st_size > committed:
            os.truncate(entry.path, committed)


class Plan(NamedTuple):
    """What a run reads, and what it carries over."""

    files: FileList
    """The files with something new, each from where its stream was left."""
    continues: list[Stream | None]
    """Per file of ``files``: the stream it continues (None: a new one)."""
    heads: list[bytes]
    """Per file of ``files``: its first bytes, for a new stream's fingerprint."""
    tails: list[tuple[str, int]]
    """Per file of ``files``: the print of the KiB before where its lines end
    (plain files), and its modification time, read before the run: a file cut
    and written again during the run (copytruncate) must not lend its new
    bytes to the stream the run read."""
    kept: list[Stream]
    """Streams whose files have nothing new, under their files' names now."""
    progress: Progress
    """The state before the run, with this run's restarted, copies and unreadable."""


def _fingerprint(head: bytes) -> str:
    return hashlib.blake2b(head, digest_size=8).hexdigest()


def _open(info: InputFile) -> int | None:
    """A descriptor of the file ``info`` was listed as, wherever it is now: at its
    path, or renamed within its directory (a rotation under the run); None if gone."""
    candidates = [info.path]
    for path in candidates:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            fd = None
        if fd is not None:
            stat = os.fstat(fd)
            if info.identity is None or (stat.st_dev, stat.st_ino) == info.identity:
                return fd
            os.close(fd)
        if len(candidates) == 1 and info.identity is not None:
            with contextlib.suppress(OSError), os.scandir(os.path.dirname(info.path)) as entries:
                candidates += [
                    entry.path for entry in entries if entry.inode() == info.identity[1] and entry.path != info.path
                ]
    return None


def head_of(info: InputFile) -> bytes:
    """A file's first FINGERPRINT_BYTES bytes (decompressed), or all it has."""
    if info.compression is None:
        fd = _open(info)
        if fd is None:
            raise RunError(f"{info.name} went away while it was listed")
        try:
            return os.pread(fd, min(FINGERPRINT_BYTES, info.size), 0)
        finally:
            os.close(fd)
    with Decompressed(info.path, info.compression, info.identity, info.size) as stream:
        parts, left = [], FINGERPRINT_BYTES
        while left > 0 and (block := stream.read(left)):
            parts.append(block)
            left -= len(block)
        return b"".join(parts)


def plan(files: Sequence[InputFile], progress: Progress | None) -> Plan:
    """Match the listed ``files`` against the state's streams (see the module docstring)."""
    progress = Progress(runs=progress.runs, streams=progress.streams, sizes=progress.sizes) if progress else Progress()
    streams = progress.streams
    heads: dict[int, bytes] = {}
    for info in files:
        try:
            heads[info.index] = head_of(info)
        except OSError as exc:
            if info.compression is None:
                raise
            log.warning("%s: cannot read its first bytes (%s); left for the next run", info.name, exc.strerror)
            progress.unreadable.append(info.name)
    by_print: dict[tuple[int, str], list[int]] = {}
    for number, stream in enumerate(streams):
        by_print.setdefault((stream.fingerprint_bytes, stream.fingerprint), []).append(number)
    lengths = sorted({stream.fingerprint_bytes for stream in streams})
    matching: dict[int, list[int]] = {}  # stream -> the files with its first bytes
    for index, head in heads.items():
        for length in lengths:
            if len(head) >= length:
                for number in by_print.get((length, _fingerprint(head[:length])), ()):
                    matching.setdefault(number, []).append(index)
    taken: dict[int, int] = {}  # file -> the stream it continues
    matched: set[int] = set()
    for number, candidates in sorted(matching.items()):
        stream = streams[number]
        # A plain file shorter than what was read of the stream is not it (copytruncate),
        # nor one whose bytes before that point differ.
        eligible = [i for i in candidates if i not in taken and (files[i].compression or _has_tail(files[i], stream))]
        matched.update(eligible)
        if eligible:
            chosen = min(eligible, key=lambda i: (files[i].name != stream.name, files[i].compression is not None, i))
            taken[chosen] = number
            # A plain file shorter than the stream whose bytes are the first of the file that
            # continues it is a copy being made (copytruncate's cp, before the truncate).
            if files[chosen].compression is None:
                matched.update(
                    i for i in candidates
                    if i not in eligible and files[i].compression is None and _prefix_of(files[i], files[chosen])
                )  # fmt: skip
    names = {stream.name for stream in streams}
    reading: list[InputFile] = []
    continues: list[Stream | None] = []
    read_heads: list[bytes] = []
    kept: list[Stream] = []
    for info in files:
        if info.index not in heads:
            continue
        continued = taken.get(info.index)
        if continued is None:
            if info.index in matched:
                progress.copies.append(info.name)
                continue
            if info.name in names:
                progress.restarted.append(info.name)
            if info.end == 0:
                continue  # nothing to read, nothing to know it by
            reading.append(_from(info, len(reading), 0, 0))
            continues.append(None)
        else:
            stream = streams[continued]
            if _unchanged(info, stream):
                kept.append(msgspec.structs.replace(stream, name=info.name))
                continue
            reading.append(_from(info, len(reading), stream.consumed, stream.counts.lines))
            continues.append(stream)
        read_heads.append(heads[info.index])
    tails = [
        (_tail_print(info, info.end) if info.compression is None and info.end else "", _mtime(info)) for info in reading
    ]
    return Plan(FileList.of(reading), continues, read_heads, tails, kept, progress)


def _tail_print(info: InputFile, end: int) -> str:
    """The print of a plain file's FINGERPRINT_BYTES before ``end`` ("": it is gone)."""
    start = max(0, end - FINGERPRINT_BYTES)
    fd = _open(info)
    if fd is None:
        return ""
    try:
        return _fingerprint(os.pread(fd, end - start, start))
    finally:
        os.close(fd)


def _has_tail(info: InputFile, stream: Stream) -> bool:
    """Whether plain file ``info`` holds what was read of ``stream``, as far as its print of the end says."""
    if info.end < stream.consumed:
        return False
    return not stream.tail_print or _tail_print(info, stream.consumed) == stream.tail_print


def _prefix_of(copy: InputFile, whole: InputFile) -> bool:
    """Whether plain file ``copy``'s last FINGERPRINT_BYTES before its end are
    ``whole``'s at the same place (so, all but certainly, ``copy`` is its start)."""
    if copy.end > whole.end:
        return False
    tail = _tail_print(copy, copy.end)
    return tail != "" and tail == _tail_print(whole, copy.end)


def _unchanged(info: InputFile, stream: Stream) -> bool:
    """Whether ``info`` has nothing past what was read of ``stream``."""
    if info.compression is None:
        return info.end <= stream.consumed
    stat = (info.size, info.identity[1] if info.identity else 0)
    return stat == (stream.size_on_disk, stream.inode) and _mtime(info) == stream.mtime_ns


def _mtime(info: InputFile) -> int:
    fd = _open(info)
    if fd is None:
        return 0
    try:
        return os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)


def _from(info: InputFile, index: int, start: int, first_line: int) -> InputFile:
    return InputFile(index, info.name, info.path, info.size, info.identity, info.tag, info.unread, start, first_line)


def streams_after(planned: Plan, counts: Sequence[FileCounts], ends: Sequence[int]) -> list[Stream]:
    """The streams once the run read each planned file up to ``ends`` (decompressed)
    with ``counts`` (this run's lines), in input order by their names."""
    streams = list(planned.kept)
    for info, stream, head, (printed, mtime), count, end in zip(
        planned.files, planned.continues, planned.heads, planned.tails, counts, ends
    ):
        on_disk = {"size_on_disk": info.size, "inode": info.identity[1] if info.identity else 0, "mtime_ns": mtime}
        tail = printed if end == info.end else ""  # where the run was to end: a plain file's listed end
        if stream is None:
            if end == 0:
                continue
            length = min(FINGERPRINT_BYTES, end, len(head))
            streams.append(
                Stream(
                    name=info.name, fingerprint=_fingerprint(head[:length]), fingerprint_bytes=length, consumed=end,
                    tail_print=tail, counts=count, compression=info.compression or "none", **on_disk,
                )
            )  # fmt: skip
            continue
        total = FileCounts(
            *(a + b for a, b in zip(msgspec.structs.astuple(stream.counts), msgspec.structs.astuple(count)))
        )
        known = {"fingerprint": stream.fingerprint, "fingerprint_bytes": stream.fingerprint_bytes}
        if stream.fingerprint_bytes < FINGERPRINT_BYTES and end > stream.fingerprint_bytes:
            # A stream first read short is known by more of its bytes once it has them.
            length = min(FINGERPRINT_BYTES, end, len(head))
            known = {"fingerprint": _fingerprint(head[:length]), "fingerprint_bytes": length}
        streams.append(
            msgspec.structs.replace(
                stream,
                name=info.name,
                consumed=end,
                tail_print=tail,
                counts=total,
                compression=info.compression or "none",
                **on_disk,
                **known,
            )
        )
    streams.sort(key=lambda stream: os.fsencode(stream.name))
    return streams


def sizes_after(
    staging: Path, before: dict[str, int], names: Iterable[str], rejects: str = REJECTS_NAME
) -> dict[str, int]:
    """The committed sizes once the staging directory's files ``names`` (and
    ``rejects``: rejected.jsonl, or its compressed name) are appended to an
    output whose files are ``before``."""
    sizes = dict(before)
    for name in [*names, rejects]:
        with contextlib.suppress(FileNotFoundError):
            size = (staging / name).stat().st_size
            if size or name not in sizes:
                sizes[name] = sizes.get(name, 0) + size
    return dict(sorted(sizes.items()))


def append(
    staging: Path,
    output: Path,
    before: dict[str, int],
    names: Iterable[str],
    summary: bytes,
    rejects: str = REJECTS_NAME,
) -> None:
    """Append the staging directory's files ``names`` and its ``rejects`` to
    ``output``'s, each at its committed size in ``before``, sync them, then
    commit: ``summary`` replaces summary.json in one rename. Compressed
    files are whole frames (members) one after another, so the appended
    file is still one stream, and a cut back lands on a frame's end."""
    for name in [*names, rejects]:
        source_path = staging / name
        try:
            source = os.open(source_path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            size = os.fstat(source).st_size
            target = os.open(output / name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                copy_range(source, 0, target, before.get(name, 0), size, str(source_path))
                os.fsync(target)
            finally:
                os.close(target)
        finally:
            os.close(source)
    if _failpoints.number("incremental_kill"):
        _failpoints.kill_self()
    temp = staging / SUMMARY_NAME
    temp.write_bytes(summary)
    fsync_path(str(temp))
    fsync_path(str(output))  # the new group files' entries, before the summary that names them
    os.rename(temp, output / SUMMARY_NAME)
    fsync_path(str(output))
