"""Files still being written: where each file's lines end, decided once, and what a run left unread.

Owns the *settle* rule and the account of unread bytes. An application
appending ``494|live|ev|u|123456|9|15875`` and, a few milliseconds later,
``83122\\n`` must not get a record with timestamp 15875 from a run that came
in between. So when the input is listed (``_config.find_inputs``), a plain
local file's last line without a line end is taken as a line only if the
file is *quiet*: last modified at least ``--settle`` seconds before
(:func:`unread_tail`). Otherwise that tail is left unread, and the file's
lines end at its last line end (``InputFile.unread``). Only a file modified
within ``--settle`` has its last byte read to find out, so old files cost
nothing more.

The decision is made once, in main, and travels with the file list: to every
reader (a restarted one too), every worker, every Dask task, and into the
journal of a ``--resume`` run (``output.journal``), so that all of them agree where
each file's lines end.

After the run (:func:`unread`) each local file is looked at again: what it
gained since it was listed is not read either, and is reported the same way.
A file whose last line was read without its line end (it was quiet) and that
then grew may have had that line cut short: the run fails rather than commit
a record its writer may never have written.

Compressed files are read whole whatever their age: a compressed file still
being written is a truncated stream, which fails the run naming the file
(``core.compression``). Objects named by a URL cannot change once written: the
rule does not apply to them.

Talks to: ``_config`` (the listing), ``_run`` (after the engine's report:
the warnings, the failure) and ``_summary`` (``unread_bytes`` and
``unread_reasons`` in summary.json).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, NamedTuple

from mpevents.core.errors import RunError
from mpevents.core.framing import lines_end

if TYPE_CHECKING:
    from mpevents.core.inputs import InputFile

log = logging.getLogger("mpevents")

UNFINISHED_LINE: Final = "unfinished_line"
"""Why a file's tail was not read: its last line had no line end yet, and the
file was modified less than --settle before it was listed."""
GREW: Final = "grew"
"""Why: the file grew during the run; what it gained was not read."""
WARNED_FILES: Final = 20
"""Files named in a warning line each; beyond these, one line counts the rest
(summary.json lists them all), so that a directory of busy logs does not
flood the terminal."""


def quiet(mtime_ns: int, now_ns: int, settle_s: float) -> bool:
    """Whether a file last modified at ``mtime_ns`` is quiet at ``now_ns``:
    unchanged for at least ``settle_s`` seconds. With ``settle_s`` 0 every
    file is, even one whose time is ahead of this machine's clock."""
    return settle_s == 0 or now_ns - mtime_ns >= round(settle_s * 1e9)


def unread_tail(read: Callable[[int, int], bytes], size: int, mtime_ns: int, now_ns: int, settle_s: float) -> int:
    """How many bytes at the end of a file of ``size`` bytes are not taken as
    a line: none if the file is quiet or ends with a line end; otherwise its
    last line, which has no line end yet. ``read(size, offset)`` reads the
    file, and is called only for a file that is not quiet."""
    if size == 0 or quiet(mtime_ns, now_ns, settle_s):
        return 0
    return size - lines_end(read, size)


class Unread(NamedTuple):
    """What a run did not read of one file, and why (UNFINISHED_LINE, GREW)."""

    bytes: int
    reasons: list[str]


def unread(files: Sequence[InputFile], warn: bool = True) -> dict[int, Unread]:
    """After the run: every file with unread bytes, by index, each named in a
    warning line (unless not ``warn``: a --follow batch, whose next batch reads
    them). Raises RunError for a file whose last line, read without its line
    end, may have been cut short (see the module docstring)."""
    found = {}
    for info in files:
        grown = _grown(info)
        if grown and not info.unread:
            _check_last_line(info)
        if info.unread or grown:
            reasons = [UNFINISHED_LINE] * bool(info.unread) + [GREW] * bool(grown)
            found[info.index] = Unread(info.unread + grown, reasons)
    if warn:
        _warn(files, found)
    return found


def _grown(info: InputFile) -> int:
    """The bytes a local file gained since it was listed; 0 for a URL's
    object, a file that is gone, or another file now in its place."""
    if info.identity is None:
        return 0
    try:
        stat = os.stat(info.path)
    except OSError:  # gone since: what was read of it stands
        return 0
    if (stat.st_dev, stat.st_ino) != info.identity:
        return 0
    return max(0, stat.st_size - info.size)


def _check_last_line(info: InputFile) -> None:
    """A file that grew after its last line was read without a line end: the
    line was whole only if what came after it starts with its line end."""
    if info.compression is not None or info.size == 0:
        return  # a compressed file's stream ended where it was listed, whole
    fd = os.open(info.path, os.O_RDONLY)
    try:
        last, after = os.pread(fd, 1, info.size - 1), os.pread(fd, 2, info.size)
    finally:
        os.close(fd)
    if last == b"\n" or after.startswith(b"\n") or (after == b"\r\n" and last != b"\r"):
        return
    raise RunError(
        f"{info.name} grew during the run after its last line, which had no line end, was read: "
        "that line may be cut short, so nothing was written (run again, or give a longer --settle)"
    )


def _warn(files: Sequence[InputFile], found: dict[int, Unread]) -> None:
    """One short line per file: a log line is folded at the terminal's width
    (80 columns in a pipe)."""
    for index in list(found)[:WARNED_FILES]:
        info, (count, reasons) = files[index], found[index]
        why = []
        if UNFINISHED_LINE in reasons:
            why.append("last line unfinished")
        if GREW in reasons:
            why.append(f"grew by {count - info.unread:,}")
        log.warning("%s: %s bytes unread: %s", info.name, f"{count:,}", ", ".join(why))
    if len(found) > WARNED_FILES:
        log.warning("and %s more files with bytes unread (summary.json lists them)", f"{len(found) - WARNED_FILES:,}")
