"""Frames: compressed output (``--compress``), cut where its bytes do not depend on the run.

Owns :class:`Compress` (the format and level asked for), the codecs that
make one zstd frame or one gzip member of some bytes, and the rule that
makes the compressed bytes the same for any worker count, chunk size or
placing budget: a file's decompressed content is cut into frames at fixed
offsets, every FRAME_BYTES, the last frame whatever remains at its end. A
file is the concatenation of its frames, which ``zstdcat``, ``zcat`` and
Python's ``gzip`` and ``zstandard`` read as one stream. :class:`Framer`
keeps one file's unframed tail and where its compressed bytes end (a
placing, ``output.parts``), :class:`FramedRejects` writes
``rejected.jsonl.zst`` (or ``.gz``) for the collector, its unframed tail
kept in a plain side file that a --resume checkpoint records.

The bytes must not depend on the clock or on what else is installed:
zstd through ``zstandard`` with a fixed parameter set (no threads, the
content size written, no checksum), gzip through the standard library's
zlib (mtime 0, no file name), never ISA-L, whose bytes differ from zlib's.

Talks to: nothing but the files it is given; the placings (``output.parts``),
the collector core (``output.collector``), the journal (``output.journal``)
and the config (``_config``) use it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import msgspec

from mpevents.core.compression import INSTALL_HINT
from mpevents.core.errors import UsageError
from mpevents.output.names import REJECTS_NAME, compressed_name, rejects_tail_name

FRAME_BYTES: Final = 256 << 10
"""Decompressed bytes per frame. On the group files of a real-shaped 2M-line
corpus (200 groups of 1.2 MB), zstd 3 in frames of 64 KiB made 1.014 times
what it made of each file whole, of 256 KiB 0.991 times, of 1 MiB 0.998
(gzip 6: 256 KiB 1.4% over 1 MiB), all at about the same speed; with
1,000 groups (48 KB each) every size gave one frame a file. The smallest of
the best: a placing holds at most one unframed tail per group of its round."""
LEVELS: Final = {"zstd": (1, 22), "gzip": (1, 9)}
DEFAULT_LEVELS: Final = {"zstd": 3, "gzip": 6}


class Compress(msgspec.Struct, frozen=True):
    """``--compress`` and ``--compress-level``: the format and its level."""

    kind: str
    """ "zstd" or "gzip"."""
    level: int

    def name(self, plain: str) -> str:
        """The output file ``plain`` compressed: with ``.zst`` or ``.gz``."""
        return compressed_name(plain, self.kind)


def make_compress(kind: str | None, level: int | None) -> Compress | None:
    """The compression asked for, checked (level in range, zstandard installed);
    None for plain output. Raises UsageError."""
    if kind is None:
        if level is not None:
            raise UsageError("--compress-level needs --compress zstd or --compress gzip")
        return None
    if kind not in LEVELS:
        raise UsageError(f"--compress must be zstd or gzip, not {kind!r}")
    low, high = LEVELS[kind]
    level = DEFAULT_LEVELS[kind] if level is None else level
    if not low <= level <= high:
        raise UsageError(f"--compress-level for {kind} must be from {low} to {high}, got {level}")
    if kind == "zstd":
        try:
            import zstandard  # noqa: F401
        except ImportError:
            raise UsageError(f"--compress zstd needs zstandard: {INSTALL_HINT}") from None
    return Compress(kind, level)


def codec(compress: Compress) -> Callable[[memoryview], bytes]:
    """What makes one frame (zstd) or member (gzip) of some bytes, the same bytes every time."""
    if compress.kind == "gzip":
        level = compress.level
        # wbits 31: a gzip member as zlib writes it, mtime 0 and no name.
        return lambda data: zlib.compress(data, level, wbits=31)
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(
        compress.level, threads=0, write_content_size=True, write_checksum=False, write_dict_id=False
    )
    return zstandard.ZstdCompressor(compression_params=params).compress


class Framer:
    """One file's compression as it is written in order: its unframed tail
    and where its compressed bytes end (its next frame goes there)."""

    __slots__ = ("_compress", "compressed", "plain", "tail")

    def __init__(self, compress: Callable[[memoryview], bytes]) -> None:
        self._compress = compress
        self.tail = bytearray()
        self.plain = 0
        """Decompressed bytes taken so far."""
        self.compressed = 0
        """Compressed bytes given out so far."""

    def take(self, pieces: Sequence[bytes | bytearray | memoryview], last: bool = False) -> list[bytes]:
        """The whole frames that ``pieces`` complete (with ``last``, the rest too)."""
        tail = self.tail
        for piece in pieces:
            tail += piece
            self.plain += len(piece)
        frames = []
        start = 0
        with memoryview(tail) as view:  # released before the tail is cut
            while len(tail) - start >= FRAME_BYTES or (last and len(tail) > start):
                end = min(len(tail), start + FRAME_BYTES)
                frames.append(self._compress(view[start:end]))
                start = end
        del tail[:start]
        self.compressed += sum(map(len, frames))
        return frames


class FramedRejects:
    """``rejected.jsonl.zst`` (or ``.gz``) written in order, for the collector.

    Whole frames go to the compressed file as they fill; the unframed tail
    (less than FRAME_BYTES) is also appended to a plain side file named by
    the number of frames before it (``names.rejects_tail_name``), so that a
    checkpoint can record a state the next --resume run goes on from: the
    compressed file's size, the side file's, and ``tell()``, the plain bytes
    of all the rejects. A side file a durable checkpoint no longer needs is
    removed (:meth:`forget`); the last one at :meth:`close`, once the tail is
    framed.
    """

    def __init__(self, directory: Path, compress: Compress, journaled: bool, plain_size: int = 0) -> None:
        """``journaled``: checkpoints are made (side files are kept until
        :meth:`forget`); ``plain_size``: the rejects a resumed run starts from
        (its files cut back to them)."""
        self._directory = directory
        self._journaled = journaled
        self._framer = Framer(codec(compress))
        self.path = directory / compress.name(REJECTS_NAME)
        self.name = str(self.path)
        self._frames = self._oldest = plain_size // FRAME_BYTES
        self._handle = open(self.path, "ab" if plain_size else "wb")  # noqa: SIM115  # closed by close()
        self._framer.plain = self._frames * FRAME_BYTES
        self._framer.compressed = self._handle.tell()
        self._tail = open(self.tail_path, "ab" if plain_size else "wb")  # noqa: SIM115
        if plain_size:
            self._framer.tail += self.tail_path.read_bytes()
            self._framer.plain = plain_size

    @property
    def tail_path(self) -> Path:
        return self._directory / rejects_tail_name(self._frames)

    def write(self, data: bytes | bytearray) -> None:
        frames = self._framer.take([data])
        if not frames:
            self._tail.write(data)
            return
        self._handle.write(b"".join(frames))
        self._frames += len(frames)
        self._tail.close()
        self._tail = open(self.tail_path, "wb")  # noqa: SIM115
        self._tail.write(self._framer.tail)
        if not self._journaled:  # else the old side file stays until no checkpoint needs it (forget)
            self.forget(self._frames)

    def flush(self) -> None:
        self._handle.flush()
        self._tail.flush()

    def tell(self) -> int:
        return self._framer.plain

    def sizes(self) -> dict[str, int]:
        """What a checkpoint records: the compressed file's size and the side file's, by name."""
        return {self.path.name: self._framer.compressed, self.tail_path.name: len(self._framer.tail)}

    def forget(self, frames: int) -> None:
        """Remove the side files before frame ``frames``: a durable checkpoint is past them."""
        for index in range(self._oldest, min(frames, self._frames)):
            (self._directory / rejects_tail_name(index)).unlink(missing_ok=True)
        self._oldest = max(self._oldest, min(frames, self._frames))

    @property
    def frames(self) -> int:
        return self._frames

    def close(self) -> None:
        """Frame the tail, and remove the side files."""
        if self._handle.closed:
            return
        self._handle.write(b"".join(self._framer.take([], last=True)))
        self._handle.close()
        self._tail.close()
        for index in range(self._frames + 1):
            (self._directory / rejects_tail_name(index)).unlink(missing_ok=True)

    def abandon(self) -> None:
        """Close without framing the tail: the run failed, and a --resume run goes on from the side file."""
        if self._handle.closed:
            return
        self._handle.close()
        self._tail.close()
