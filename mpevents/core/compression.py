"""Compressed input: which files are compressed, and their decompressed bytes as a stream.

Owns the suffix rule (``.gz`` is gzip, ``.zst`` is zstd, anything else is
plain), opening a compressed file as a forward-only stream of its decompressed
bytes (multi-member gzip and multi-frame zstd, what ``cat a.gz b.gz`` makes,
are read whole), and turning a corrupt or truncated stream into one OSError
that names the decompressed offset where it broke.

Talks to: readers, which frame the stream into spans and send their bytes
(``core.framing.stream_frames``); a worker that replaces a dead one, which
decompresses a span again (:func:`read_compressed_span`); the Dask engine,
which takes a compressed file as one task.

gzip goes through ISA-L (``isal``) where it is installed: it decompressed the
2M-line template corpus at 945 MB/s against zlib's 254 MB/s on this project's
machine (tests/benchmarks/test_bench_compression.py); zlib otherwise. zstd
needs ``zstandard``. Both come with ``pip install 'mpevents[compressed]'``.
"""

from __future__ import annotations

import errno
import gzip
import os
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, BinaryIO, Final

from mpevents.core import failpoints as _failpoints
from mpevents.core.errors import UsageError
from mpevents.core.framing import KEEP_BYTES, Flag, Span

SUFFIXES: Final = {".gz": "gzip", ".zst": "zstd"}
"""Compression by the end of a file's name."""
INSTALL_HINT: Final = "pip install 'mpevents[compressed]'"
_RAW_BLOCK: Final = 1 << 14
"""Compressed bytes fed to a zstd decompressor at a time: small, because
what one feed gives out is only bounded by the compression ratio."""
_SKIP_BLOCK: Final = 1 << 20


def compression_of(name: str) -> str | None:
    """ "gzip", "zstd", or None for a plain file, by the name's suffix."""
    for suffix, kind in SUFFIXES.items():
        if name.endswith(suffix):
            return kind
    return None


def _zstandard() -> ModuleType | None:
    try:
        import zstandard
    except ImportError:
        return None
    return zstandard


def _gzip() -> Any:
    try:
        from isal import igzip
    except ImportError:
        return gzip
    return igzip


def check_available(names: Iterable[str]) -> None:
    """Refuse, before any work, input the installed packages cannot read."""
    for name in names:
        if compression_of(name) == "zstd" and _zstandard() is None:
            raise UsageError(f"{name} is zstd-compressed, and reading it needs zstandard: {INSTALL_HINT}")


class Decompressed:
    """A compressed file's decompressed bytes, read forwards only.

    ``position`` counts the bytes given out; ``raw_position`` how far into
    the file on disk the decompressor has read. A corrupt or truncated stream
    raises OSError (EIO) naming the decompressed offset where it broke.
    """

    def __init__(
        self,
        path: str,
        kind: str,
        identity: tuple[int, int] | None = None,
        size: int | None = None,
        raw: BinaryIO | None = None,
    ) -> None:
        """``raw``: the compressed bytes already opened (a URL's object); by default ``path`` is opened."""
        self.path, self.kind, self.size = path, kind, size
        self.position = 0
        self._raw: BinaryIO = raw if raw is not None else open(path, "rb")  # noqa: SIM115  # closed by close()
        if identity is not None and raw is None:
            stat = os.fstat(self._raw.fileno())
            if (stat.st_dev, stat.st_ino) != identity:
                self._raw.close()
                raise OSError(errno.EIO, "the file was replaced while it was being read", path)
        self._stream: Any = _gzip().GzipFile(fileobj=self._raw) if kind == "gzip" else _ZstdStream(self._raw)

    @property
    def raw_position(self) -> int:
        return self._raw.tell()

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (fewer now and then); empty at the end."""
        try:
            data: bytes = self._stream.read(size)
        except (OSError, EOFError, ValueError, zlib.error) as exc:
            raise self._broken(exc) from exc
        except Exception as exc:  # zstandard's and isal's own errors
            if type(exc).__module__.split(".")[0] not in ("zstandard", "isal"):
                raise
            raise self._broken(exc) from exc
        if not data and size > 0 and self.size is not None and self._raw.tell() != self.size:
            raise OSError(errno.EIO, "the file changed while it was being read", self.path)
        self.position += len(data)
        return data

    def read_exactly(self, size: int) -> bytes:
        """``size`` bytes; the stream ending sooner means the file changed."""
        parts = []
        while size > 0:
            block = self.read(size)
            if not block:
                raise OSError(errno.EIO, "the file changed while it was being read", self.path)
            parts.append(block)
            size -= len(block)
        return b"".join(parts)

    def skip(self, size: int, moved: Callable[[int], None] | None = None) -> None:
        """Read and drop ``size`` bytes; the stream ending sooner means the file changed.

        ``moved`` is told each MiB dropped: decompressing a big file up to a
        restart point takes seconds and sends nothing, and the supervisor
        must see it move (``observe.board``: a pipeline that stops moving after a
        crash is restarted)."""
        slow = _failpoints.number("skip_slow")
        while size > 0:
            block = self.read(min(size, _SKIP_BLOCK))
            if not block:
                raise OSError(errno.EIO, "the file changed while it was being read", self.path)
            size -= len(block)
            if slow is not None:
                time.sleep(slow)
            if moved is not None:
                moved(len(block))

    def _broken(self, exc: BaseException) -> OSError:
        """The error for a stream that broke: where, in decompressed bytes, as
        far as the decompressor got (which is past what was given out)."""
        why = str(exc) or type(exc).__name__
        try:
            where = max(self.position, int(self._stream.tell()))
        except Exception:  # a decompressor that cannot say after failing
            where = self.position
        return OSError(
            errno.EIO, f"corrupt or truncated {self.kind} data at decompressed byte {where} ({why})", self.path
        )

    def close(self) -> None:
        self._stream.close()
        self._raw.close()

    def __enter__(self) -> Decompressed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _ZstdStream:
    """zstd frames one after another, decompressed; a frame cut short is an
    error (zstandard's own stream reader ends quietly there). ``read`` gives
    what one feed of the decompressor made, up to ``size`` bytes, so that
    its output is passed on without being copied again."""

    def __init__(self, raw: BinaryIO) -> None:
        zstandard = _zstandard()
        if zstandard is None:
            raise OSError(errno.ENOPKG, f"reading zstd needs zstandard: {INSTALL_HINT}", getattr(raw, "name", None))
        self._context = zstandard.ZstdDecompressor()
        self._raw = raw
        self._frame: Any = None  # the decompressor of the frame being read
        self._outputs: deque[bytes] = deque()
        self._produced = 0  # decompressed bytes so far, given out or not
        self._ended = False

    def read(self, size: int) -> bytes:
        while not self._outputs and not self._ended:
            self._feed(self._raw.read(_RAW_BLOCK))
        if not self._outputs:
            return b""
        first = self._outputs[0]
        if len(first) <= size:
            return self._outputs.popleft()
        self._outputs[0] = first[size:]
        return first[:size]

    def _feed(self, block: bytes) -> None:
        if not block:
            self._ended = True
            if self._frame is not None:
                raise EOFError("the last zstd frame is cut short")
            return
        while block:
            if self._frame is None:
                self._frame = self._context.decompressobj()
            output = self._frame.decompress(block)
            if output:
                self._outputs.append(output)
                self._produced += len(output)
            if not self._frame.eof:
                return
            block, self._frame = self._frame.unused_data, None

    def tell(self) -> int:
        return self._produced

    def close(self) -> None:
        self._outputs.clear()


def read_compressed_span(
    path: str,
    kind: str,
    span: Span,
    moved: Callable[[int], None] | None = None,
    identity: tuple[int, int] | None = None,
    size: int | None = None,
) -> bytes:
    """A compressed span's bytes, as its reader sent them: decompressed again
    from the start of the file (for a worker replacing a dead one, which is
    handed the spans it held without their bytes); ``moved`` as for
    :meth:`Decompressed.skip`; ``identity`` and ``size`` as listed, checked as
    the reader checks them (a file rotated in place since is refused)."""
    with Decompressed(path, kind, identity, size) as stream:
        stream.skip(span.start, moved)
        if not span.flags & Flag.TRUNCATED:
            return stream.read_exactly(span.end - span.start)
        kept = stream.read_exactly(KEEP_BYTES)
        stream.skip(span.end - span.start - KEEP_BYTES - 1, moved)
        return kept + b"\n" if stream.read_exactly(1) == b"\n" else kept
