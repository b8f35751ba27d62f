"""Sources: input files named by a URL (``s3://bucket/prefix/``, ``gs://``, any fsspec protocol).

Owns listing a URL's files (``--input s3://...``), opening one, reading a byte
range of it, and the check that an object has not changed since it was listed
(its ETag or generation). Local directories stay with ``_config``.

Talks to: the config (which lists inputs), the Dask engine's tasks (which
read the byte ranges on the Dask workers). Credentials come from where the
protocol's package looks (environment, profiles, instance roles), never from
flags. fsspec and the protocol's package (s3fs for S3) come with
``pip install 'mpevents[dask]'``.
"""

from __future__ import annotations

import errno
import fnmatch
import os
from collections.abc import Callable, Sequence
from typing import Any, BinaryIO, Final

from mpevents.core.errors import UsageError

INSTALL_HINT: Final = "pip install 'mpevents[dask]'"
_BLOCK_BYTES: Final = 1 << 22
"""Read-ahead of an open remote file: a few requests per chunk, not one per small read."""
_TAG_KEYS: Final = ("ETag", "etag", "generation", "version_id", "mtime", "LastModified")
"""Where fsspec's backends put what changes when an object does, in order of preference."""


def is_url(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def _filesystem(url: str) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"reading {url} needs fsspec: {INSTALL_HINT}") from None
    try:
        return fsspec.core.url_to_fs(url)  # type: ignore[no-any-return]
    except (ImportError, ValueError) as exc:
        raise UsageError(f"cannot read {url}: {exc}") from None


def tag_of(details: dict[str, Any]) -> str:
    for key in _TAG_KEYS:
        if details.get(key) is not None:
            return str(details[key])
    return str(details.get("size"))


def list_url(url: str, patterns: Sequence[str]) -> list[tuple[str, str, int, str]]:
    """(name, URL, size, tag) of each object directly under ``url`` whose name
    matches a pattern, in byte order of the names. Exit 2 for a missing bucket
    or prefix, or no match."""
    fs, root = _filesystem(url)
    try:
        entries = fs.ls(root.rstrip("/"), detail=True)
    except (FileNotFoundError, PermissionError, OSError) as exc:
        raise UsageError(f"cannot list {url}: {exc}") from None
    protocol = url.split("://", 1)[0]
    found = []
    for entry in entries:
        name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
        if entry.get("type") == "file" and any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            found.append((name, f"{protocol}://{entry['name']}", int(entry["size"]), tag_of(entry)))
    if not found:
        raise UsageError(f"no file matching {', '.join(map(repr, patterns))} in {url!r}")
    found.sort(key=lambda item: os.fsencode(item[0]))
    return found


def open_url(url: str, tag: str | None = None) -> BinaryIO:
    """The object at ``url``, opened for reading; OSError if it changed since
    it was listed with ``tag``."""
    fs, path = _filesystem(url)
    if tag is not None and tag_of(fs.info(path)) != tag:
        raise OSError(errno.EIO, "the object changed while it was being read", url)
    handle: BinaryIO = fs.open(path, "rb", block_size=_BLOCK_BYTES)
    return handle


def reader_of(handle: BinaryIO) -> Callable[[int, int], bytes]:
    """A pread for an open file object: ``read(size, offset)``."""

    def read(size: int, offset: int) -> bytes:
        handle.seek(offset)
        return handle.read(size)

    return read
