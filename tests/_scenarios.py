"""The shapes of input that the scenario matrix (tests/test_scenarios.py) runs
every engine over, as data, and the one seed-driven generator that writes them.

A :class:`Shape` says how many files, how many lines each, how many groups,
their line ends, byte-order marks, compression, long lines and so on; the
content is real traffic (``conftest.real_traffic``: text outside ASCII,
quotes, backslashes, U+2028, broken lines where they fall) with one more
broken line in :data:`BROKEN_ONE_IN` of every reason it lacks. The same
shape and seed always write the same bytes.

Files are dated an hour back, so that they are quiet (no writer touched them
within ``--settle`` seconds) and a last line without its line end is read.
A shape may end with a file that is still being written: :class:`Writer`
keeps its last line unfinished, and the file fresh, while a run reads it.
"""

from __future__ import annotations

import gzip
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from tests.conftest import real_traffic

LIMIT = 65_536
"""The spec's longest line, in bytes, without its line end."""
BROKEN = (
    b"1|a|b|c|+5|1|1",  # bad_value
    b"1|a|b|c|1|" + b"9" * 20 + b"|1",  # bad_group_id
    b"1|a|b|c|1|1|1 ",  # bad_timestamp
    b"\xef\xbb\xbf1|a|b|c|1|1|1",  # a BOM anywhere but at the start of a file is kept: bad_id
    "١|a|b|c|1|1|1".encode(),  # an Arabic-Indic digit: bad_id
    "1|a|b|ü\x7f|1|1|1".encode(),  # control_char
    b"1|caf\xe9|b|c|1|1|1",  # Latin-1, not UTF-8: invalid_utf8
    "1|a|b|c|1|1|1|Ω".encode(),  # field_count
    b"007|a|b|c|-0|0001|0000000000000000010",  # valid: written canonically, in group 1
)
"""Broken lines of the reasons real_traffic does not give, and one odd valid line."""
BROKEN_ONE_IN = 40
LINE_ENDS = {"lf": (b"\n",), "crlf": (b"\r\n",), "mixed": (b"\n",) * 4 + (b"\r\n",) * 4 + (b"\r\r\n",)}
"""A file's line ends; "mixed" draws each line's, "\\r\\r\\n" among them (one CR is removed, one is kept)."""
LAST_ENDS = {"end": None, "none": b"", "cr": b"\r"}
"""How a file's last line ends: as its other lines, with nothing, with a lone CR."""
LONG_ENDS = (b"\n", b"\r\n", b"\r\r\n")
"""Each long line comes with each of these: the CR is removed, and with two one CR counts."""
PARTIAL = b"494|live|ev|u|123456|9|15875"
"""The last line of a file still being written, as the issue found it; :class:`Writer` ends it."""
REST = b"83122"
QUIET_AGE_S = 3_600


@dataclass(frozen=True)
class Shape:
    """A kind of input directory. Per-file options are cycled over the files."""

    name: str
    seed: int
    files: int
    lines: tuple[int, ...] = (0,)
    """Lines of real traffic in file i: ``lines[i % len(lines)]``."""
    groups: int = 200
    roll_call: bool = False
    """One more valid line for each group 1..groups, so that every group has records."""
    line_ends: tuple[str, ...] = ("lf",)
    """Keys of LINE_ENDS."""
    last: tuple[str, ...] = ("end",)
    """Keys of LAST_ENDS."""
    bom: tuple[bool, ...] = (False,)
    """A UTF-8 byte-order mark at the start of the (decompressed) file."""
    compression: tuple[str, ...] = ("none",)
    """none, gzip or zstd."""
    members: tuple[int, ...] = (1,)
    """gzip members or zstd frames of a compressed file, cut at random bytes (mid-line too)."""
    long_lines: tuple[int, ...] = ()
    """Byte lengths of long lines: each file has one of each with each of LONG_ENDS, and ends with one."""
    stems: tuple[str, ...] = ("host",)
    """File names: ``<stem>-<index>.log[.gz|.zst]``."""
    decoys: bool = False
    """Add files the default patterns leave alone: a rotation, a text file, a directory named *.log."""
    growing: bool = False
    """The last file is still being written: it ends with PARTIAL, fresh."""

    def file_name(self, index: int) -> str:
        suffix = {"none": "", "gzip": ".gz", "zstd": ".zst"}[self.compression[index % len(self.compression)]]
        return f"{self.stems[index % len(self.stems)]}-{index:05d}.log{suffix}"

    @property
    def growing_name(self) -> str | None:
        return self.file_name(self.files - 1) if self.growing else None


def long_line(size: int, number: int, group: int) -> bytes:
    """A line of exactly ``size`` bytes, valid but for its length, its user
    name mostly two- and three-byte characters (a byte limit, not a character one)."""
    head, tail = b"%d|long|ev|" % number, b"|-1|%d|%d" % (group, number)
    room = size - len(head) - len(tail)
    user = ("é山" * (room // 5)).encode() + b"a" * (room % 5)
    line = head + user + tail
    assert len(line) == size
    return line


def content(shape: Shape, index: int) -> bytes:
    """The decompressed bytes of file ``index`` of ``shape``."""
    rng = random.Random(shape.seed * 1_000_003 + index)
    count = shape.lines[index % len(shape.lines)]
    traffic = real_traffic(rng.randrange(1 << 30), count, shape.groups).split(b"\n")[:-1] if count else []
    lines: list[tuple[bytes, bytes | None]] = [
        (rng.choice(BROKEN) if rng.randrange(BROKEN_ONE_IN) == 0 else line, None) for line in traffic
    ]
    if shape.roll_call:
        for group in range(index + 1, shape.groups + 1, shape.files):
            line = b"%d|roll call|here|%b %d|%d|%d|%d" % (group, "名前".encode(), group, group, group, group)
            lines.insert(rng.randint(0, len(lines)), (line, None))
    for size in shape.long_lines:
        for end in LONG_ENDS:
            lines.insert(rng.randint(0, len(lines)), (long_line(size, rng.randrange(10**9), 1), end))
    if shape.long_lines:
        lines.append((long_line(shape.long_lines[index % len(shape.long_lines)], index, 2), None))
    ends = LINE_ENDS[shape.line_ends[index % len(shape.line_ends)]]
    pieces = [line + (end if end is not None else rng.choice(ends)) for line, end in lines]
    last = LAST_ENDS[shape.last[index % len(shape.last)]]
    if pieces and last is not None:
        pieces[-1] = lines[-1][0] + last
    data = b"".join(pieces)
    if shape.bom[index % len(shape.bom)]:
        data = b"\xef\xbb\xbf" + data
    return data


def compress(data: bytes, kind: str, members: int, rng: random.Random) -> bytes:
    """``data`` as ``members`` gzip members or zstd frames, one after another (as ``cat`` makes them)."""
    if kind == "none":
        return data
    cuts = sorted(rng.sample(range(1, len(data)), members - 1)) if len(data) > members else []
    parts = [data[start:stop] for start, stop in zip([0, *cuts], [*cuts, len(data)])]
    if kind == "gzip":
        return b"".join(gzip.compress(part, mtime=0) for part in parts)
    import zstandard

    return b"".join(zstandard.ZstdCompressor().compress(part) for part in parts)


def write(shape: Shape, directory: Path) -> Path:
    """Write ``shape``'s files into ``directory`` (made here); returns it."""
    directory.mkdir(parents=True)
    quiet = time.time() - QUIET_AGE_S
    for index in range(shape.files):
        rng = random.Random(shape.seed * 7_919 + index)
        kind = shape.compression[index % len(shape.compression)]
        data = compress(content(shape, index), kind, shape.members[index % len(shape.members)], rng)
        path = directory / shape.file_name(index)
        if shape.growing and index == shape.files - 1:
            path.write_bytes(data + PARTIAL)
            continue  # fresh: written just now, and kept so by the Writer
        path.write_bytes(data)
        os.utime(path, (quiet, quiet))
    if shape.decoys:
        traffic = real_traffic(shape.seed, 50)
        (directory / "old.log.1.gz").write_bytes(gzip.compress(traffic, mtime=0))  # a rotation: its own --pattern
        (directory / "notes.txt").write_bytes(traffic)
        (directory / "sub.log").mkdir()
        for path in directory.iterdir():
            os.utime(path, (quiet, quiet))
    return directory


class Writer:
    """A writer appending to a file's unfinished last line while a run reads it.

    From ``__enter__`` it appends REST a byte every 50 ms, then touches the file
    every 20 ms: the line has no line end and the file stays modified within
    the last fraction of a second, however slowly the run starts, so that
    the run always lists and reads the file mid-line. ``__exit__``, after the
    run, ends the line with its line end.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="growing-file writer", daemon=True)

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()
        with open(self.path, "ab") as handle:
            handle.write(b"\n")

    def _write(self) -> None:
        for byte in REST:
            if self._stop.wait(0.05):
                return
            with open(self.path, "ab") as handle:
                handle.write(bytes([byte]))
        while not self._stop.wait(0.02):
            os.utime(self.path)
