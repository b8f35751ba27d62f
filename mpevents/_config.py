"""Run configuration: one frozen value built by the command line.

Owns the defaults (each with the reason for its value) and the discovery of
input files. Every other module reads a :class:`Config`; none parses argv.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from mpevents.core.compression import check_available, compression_of
from mpevents.core.errors import UsageError
from mpevents.core.inputs import FileList, InputFile
from mpevents.core.live import unread_tail
from mpevents.core.schema import V1, Schema
from mpevents.output.frames import Compress

DEFAULT_INPUT: Final = Path("data/input")
DEFAULT_OUTPUT: Final = Path("data/output")
DEFAULT_PATTERNS: Final = ("*.log", "*.log.gz", "*.log.zst")
"""Plain logs and compressed ones. Numbered rotations (``app.log.1.gz``) need
their own ``--pattern``, so that a directory's old rotations are never read
by surprise."""
DEFAULT_READERS: Final = 4


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity, which a container,
    taskset or a batch scheduler may make fewer than the machine's. The
    default worker count, as DuckDB and Polars use every core unless told."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on this system
        return os.cpu_count() or 1


# A chunk is the unit of work and of every queue message. 1 MiB holds about
# 25,000 seed lines: per-message costs vanish, yet a queue slot stays small
# enough that the bounded queues cap memory at a few tens of MiB.
DEFAULT_CHUNK_BYTES: Final = 1 << 20
DEFAULT_MAX_RETRIES: Final = 2
"""Retries of one thing (a span, a file's reader, the data plane, a Dask
task): it fails the run on its third failure."""
DEFAULT_PROFILE_DIR: Final = Path("profiles")
# A writer that puts out a line in two writes (a buffer flushed mid-line) or
# logs in bursts is done with a line within milliseconds; 2 s leaves ample
# room for a slow or paused one, and a run on finished logs never waits.
DEFAULT_SETTLE_S: Final = 2.0
# A line is committed within about this plus a batch's run after it is
# written; a look at the input directory costs a listing, so once a second
# costs nothing while no data comes.
DEFAULT_INTERVAL_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class Config:
    """Everything a run needs to know; built once, read by every process."""

    input_dir: Path = DEFAULT_INPUT
    input_url: str | None = None  # --input as a URL (s3://bucket/prefix/), read by the Dask engine
    output_dir: Path = DEFAULT_OUTPUT
    workers: int = field(default_factory=usable_cores)
    readers: int = DEFAULT_READERS
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    max_retries: int = DEFAULT_MAX_RETRIES
    progress: str = "auto"  # "auto": dashboard on a terminal, lines otherwise; "off"; "quiet"
    cpu_profile: bool = False
    mem_profile: bool = False
    profile_dir: Path = DEFAULT_PROFILE_DIR
    debug: bool = False
    engine: str = "local"  # "local": processes on this machine; "dask": a Dask cluster
    scheduler: str | None = None  # the Dask scheduler's address; None: a LocalCluster
    fsync: bool = False  # sync the output to disk before and after the swap
    resume: bool = False  # journal progress; go on from an interrupted --resume run
    trace: bool = False  # write trace.json, a timeline of every process, into profile_dir
    settle: float = DEFAULT_SETTLE_S  # seconds a file must be unchanged for its last line without a line end to count
    schema: Schema = V1  # the record format (--schema FILE); by default the built-in v1
    compress: Compress | None = None  # --compress and its level (``output.frames.make_compress``); None: plain
    incremental: bool = False  # read only what the output has not read yet, and append it (output.incremental)
    follow: bool = False  # after the first pass, read what is new every --interval, a batch at a time
    interval: float = DEFAULT_INTERVAL_S  # --follow: seconds between looks at the input directory

    def __post_init__(self) -> None:
        for name in ("workers", "readers", "chunk_bytes"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_retries < 0:
            raise UsageError("--max-retries must be at least 0")
        if not (math.isfinite(self.settle) and self.settle >= 0):
            raise UsageError(f"--settle must be a number of seconds, at least 0, got {self.settle}")
        if self.resume and self.engine != "local":
            raise UsageError("--resume works with the local engine only")
        if self.compress is not None and self.engine != "local":
            # Its tasks' part files are copied to offsets the client computes,
            # which a frame cut at fixed offsets of the content does not allow.
            raise UsageError("--compress works with the local engine only")
        if self.incremental and self.engine != "local":
            raise UsageError("--incremental and --follow work with the local engine only")
        if self.incremental and self.resume:
            raise UsageError("--resume and --incremental do not go together: an --incremental run commits what it read")
        if self.follow and not self.incremental:
            raise UsageError("--follow needs --incremental")
        if not (math.isfinite(self.interval) and self.interval > 0):
            raise UsageError(f"--interval must be a number of seconds above 0, got {self.interval}")
        if self.input_url and self.engine != "dask":
            raise UsageError(f"{self.input_url} is a URL: the local engine reads directories; use --engine dask")

    @property
    def profiling(self) -> bool:
        return self.cpu_profile or self.mem_profile


SIZE_UNITS: Final = {"": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}
"""What a size option accepts after its number (any case): powers of 1,024 only,
so that 1M and 1MiB are the same and nothing is left to guess."""


def parse_size(text: str) -> int:
    """A positive byte count from ``text``: a whole number, optionally followed
    by K, KiB, M, MiB, G or GiB. Raises ValueError quoting ``text`` otherwise."""
    stripped = text.strip()
    number = stripped.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    unit = SIZE_UNITS.get(stripped[len(number) :].lower())
    if unit is None or not number.isdigit() or not number.isascii():
        raise ValueError(f"{text!r} is not a size: give a whole number of bytes, or one with K, KiB, M, MiB, G or GiB")
    value = int(number) * unit
    if value < 1:
        raise ValueError(f"must be at least 1, got {text!r}")
    return value


def find_inputs(config: Config) -> Sequence[InputFile]:
    """The regular files directly in the input directory matching any of the patterns.

    Sorted by the bytes of their names. A plain file modified within
    ``--settle`` whose last line has no line end yet gets that line left
    unread (``core.live``). Raises :class:`UsageError` for a missing or unreadable
    directory, an input that is a file, no match, or a matching file that
    cannot be read.
    """
    if config.input_url is not None:
        return _find_url_inputs(config.input_url, config.patterns)
    directory = config.input_dir
    if not directory.exists():
        raise UsageError(f"input directory {str(directory)!r} does not exist")
    if not directory.is_dir():
        raise UsageError(f"input {str(directory)!r} is a file, not a directory")
    try:
        entries = list(os.scandir(directory))
    except OSError as exc:
        raise UsageError(f"cannot list input directory {str(directory)!r}: {exc.strerror}") from exc
    matches = [
        entry
        for entry in entries
        if any(fnmatch.fnmatchcase(entry.name, pattern) for pattern in config.patterns)
        and entry.is_file(follow_symlinks=True)
    ]
    if not matches:
        patterns = ", ".join(map(repr, config.patterns))
        raise UsageError(f"no file matching {patterns} in {str(directory)!r}")
    matches.sort(key=lambda entry: os.fsencode(entry.name))
    files = []
    for index, entry in enumerate(matches):
        path = entry.path
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                unread = 0
                if compression_of(entry.name) is None:
                    read = functools.partial(os.pread, handle.fileno())
                    unread = unread_tail(read, stat.st_size, stat.st_mtime_ns, time.time_ns(), config.settle)
        except OSError as exc:
            raise UsageError(f"cannot read input file {str(path)!r}: {exc.strerror}") from exc
        # A name that is not UTF-8 is shown (and written to JSON) with \xNN escapes.
        name = os.fsencode(entry.name).decode("utf-8", "backslashreplace")
        files.append(InputFile(index, name, path, stat.st_size, (stat.st_dev, stat.st_ino), None, unread))
    check_available(info.name for info in files)
    return FileList.of(files)


def _find_url_inputs(url: str, patterns: Sequence[str]) -> Sequence[InputFile]:
    from mpevents.core.sources import list_url

    found = list_url(url, patterns)
    check_available(name for name, _, _, _ in found)
    return FileList.of(
        InputFile(index, name, path, size, None, tag) for index, (name, path, size, tag) in enumerate(found)
    )


def check(config: Config) -> Sequence[InputFile]:
    """Everything that can be refused before any work: the inputs, and an
    output directory that is not ours. Returns the input files."""
    from mpevents.output.directory import check_output

    # A path the system refuses even to look at (a name over 255 bytes, a loop
    # of links) is bad input too, not a failure of the run.
    try:
        files = find_inputs(config)
    except OSError as exc:
        raise UsageError(f"{exc.strerror}: input {str(config.input_dir)!r}") from exc
    try:
        check_output(config.output_dir)
    except OSError as exc:
        raise UsageError(f"{exc.strerror}: output {str(config.output_dir)!r}") from exc
    return files
