"""The input files of a run: what was listed, fixed at start-up.

Owns :class:`InputFile` (one file: its name, path, size, identity, and where
its lines end) and :class:`FileList`, the compact form in which the whole
list travels to every child process and Dask task. Nothing here lists a
directory (``_config`` does) or reads a file.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, overload

from mpevents.core.compression import compression_of


@dataclass(frozen=True, slots=True)
class InputFile:
    """One input file, fixed at start-up."""

    index: int
    name: str
    path: str
    size: int
    identity: tuple[int, int] | None = None
    """(device, inode) at start-up: workers refuse a file that was replaced since."""
    tag: str | None = None
    """For an input named by a URL: its ETag (or generation) when it was listed; None for a local file."""
    unread: int = 0
    """Bytes at its end not read: the last line of a file still being written,
    which has no line end yet (``core.live``). Decided once, when it was listed."""
    start: int = 0
    """Where its reading starts: an --incremental run reads only what an earlier
    one did not (``output.incremental``); in decompressed bytes for a compressed file."""
    first_line: int = 0
    """The lines before ``start``: its rejects are numbered from the file's first line."""

    @property
    def end(self) -> int:
        """Where its lines end: what readers, workers and tasks read up to."""
        return self.size - self.unread

    @property
    def compression(self) -> str | None:
        """ "gzip" or "zstd" by the name's suffix; None for a plain file."""
        return compression_of(self.name)


class FileList(Sequence[InputFile]):
    """The input files, in input order, as compact columns.

    Every child process gets the whole list when it starts, and keeps it. As a
    list of dataclasses holding ``Path`` objects, 20,000 files cost each child
    0.37 s of CPU to unpickle and about 6 MiB to hold (measured); as columns
    (names, one directory, sizes and identities in int64 arrays; the few
    files with a path of their own, a tag or an unread tail in dicts) they
    cost milliseconds and about 1.5 MiB, and each file is rebuilt when asked for.
    An --incremental run's files that start past their first byte have their
    start and first line in a dict too.
    """

    def __init__(
        self,
        directory: str,
        names: list[str],
        numbers: array[int],
        paths: dict[int, str] | None = None,
        tags: dict[int, str] | None = None,
        unread: dict[int, int] | None = None,
        starts: dict[int, tuple[int, int]] | None = None,
    ) -> None:
        self._directory = directory
        self._names = names
        self._numbers = numbers  # size, device, inode of each file in turn; device -1: no identity
        self._paths = paths or {}  # files whose path is not the directory and the name
        self._tags = tags or {}  # the objects' tags, for input named by a URL
        self._unread = unread or {}  # files still being written: the bytes at their end not read
        self._starts = starts or {}  # files read from past their start: (start, first_line)

    @classmethod
    def of(cls, files: Iterable[InputFile]) -> FileList:
        listed = list(files)
        directory = os.path.dirname(listed[0].path) if listed else ""
        numbers = array("q")
        paths, tags, unread, starts = {}, {}, {}, {}
        for index, info in enumerate(listed):
            numbers.extend((info.size, *(info.identity or (-1, -1))))
            if info.path != os.path.join(directory, info.name):
                paths[index] = info.path
            if info.tag is not None:
                tags[index] = info.tag
            if info.unread:
                unread[index] = info.unread
            if info.start or info.first_line:
                starts[index] = (info.start, info.first_line)
        return cls(directory, [info.name for info in listed], numbers, paths, tags, unread, starts)

    def __len__(self) -> int:
        return len(self._names)

    @overload
    def __getitem__(self, index: int) -> InputFile: ...
    @overload
    def __getitem__(self, index: slice) -> list[InputFile]: ...
    def __getitem__(self, index: int | slice) -> InputFile | list[InputFile]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        name = self._names[index]
        size, device, inode = self._numbers[3 * index : 3 * index + 3]
        path = self._paths.get(index) or os.path.join(self._directory, name)
        identity = None if device < 0 else (device, inode)
        start, first_line = self._starts.get(index, (0, 0))
        return InputFile(
            index, name, path, size, identity, self._tags.get(index), self._unread.get(index, 0), start, first_line
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            FileList,
            (self._directory, self._names, self._numbers, self._paths, self._tags, self._unread, self._starts),
        )
