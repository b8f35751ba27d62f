"""The output directory: refuse foreign ones, build beside, swap in atomically.

Owns everything about ``--output DIR`` on disk. A run writes into a fresh
temporary directory next to the output (same filesystem, so a rename moves
it), and only when the whole run has succeeded is it exchanged with the old
output in one ``renameat2(RENAME_EXCHANGE)`` call: a reader of the directory
sees the old output or the new one, never a mix. A failed or interrupted run
removes its temporary directory and leaves the old output as it was.

Nothing but ``group-<id>.jsonl``, ``rejected.jsonl`` and ``summary.json`` goes
into the output. ``summary.json`` names mpevents as its tool, which is how a
later run knows the directory is its own to replace.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import shutil
from pathlib import Path
from typing import Final

import msgspec

from ._errors import RunError, UsageError

SUMMARY_NAME: Final = "summary.json"
TOOL: Final = "mpevents"
TEMP_PREFIX: Final = ".mpevents-tmp-"
RESUME_PREFIX: Final = ".mpevents-resume-"
"""A --resume run's staging directory: named by its output alone, so that the
next --resume run finds it."""
LOCK_PREFIX: Final = ".mpevents-lock-"
_OUR_NAMES: Final = re.compile(r"group-[0-9]+\.jsonl|rejected\.jsonl|summary\.json")
_AT_FDCWD: Final = -100
_RENAME_EXCHANGE: Final = 2


def check_output(directory: Path) -> None:
    """Refuse an output directory that exists, is not empty and is not ours,
    or that cannot be made because something on its path is a file."""
    for parent in directory.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"output {str(directory)!r} cannot be made: {str(parent)!r} is a file")
            break
    if not directory.exists():
        return
    if not directory.is_dir():
        raise UsageError(f"output {str(directory)!r} exists and is not a directory")
    try:
        names = os.listdir(directory)
    except OSError as exc:
        raise UsageError(f"cannot list output directory {str(directory)!r}: {exc.strerror}") from exc
    if not names:
        return
    if is_ours(directory, names):
        return
    raise UsageError(
        f"output directory {str(directory)!r} is not empty and was not written by mpevents; "
        "choose another --output or empty it"
    )


def is_ours(directory: Path, names: list[str]) -> bool:
    if SUMMARY_NAME not in names or not all(_OUR_NAMES.fullmatch(name) for name in names):
        return False
    try:
        summary = msgspec.json.decode((directory / SUMMARY_NAME).read_bytes())
    except (OSError, msgspec.DecodeError):
        return False
    return isinstance(summary, dict) and summary.get("tool") == TOOL


def make_temp(directory: Path) -> Path:
    """Create the temporary output beside ``directory``; clear stale ones first."""
    parent = directory.absolute().parent
    _remove_stale(parent, directory.name)
    temp = parent / f"{TEMP_PREFIX}{directory.name}-{os.getpid()}"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove(temp)
        temp.mkdir()
    except OSError as exc:
        raise RunError(f"cannot create the output beside {str(directory)!r}: {exc.strerror}") from exc
    return temp


def lock(directory: Path) -> int:
    """Hold the output ``directory`` for this run: a lock file beside it, locked
    until the returned descriptor is closed (or this process ends, however it
    ends). A second run on the same output is refused (exit 2)."""
    parent = directory.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(parent / f"{LOCK_PREFIX}{directory.name}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RunError(f"cannot create the output beside {str(directory)!r}: {exc.strerror}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"another mpevents run is writing {str(directory)!r}") from None
    return fd


def resume_dir(directory: Path) -> Path:
    return directory.absolute().parent / f"{RESUME_PREFIX}{directory.name}"


def _remove_stale(parent: Path, name: str) -> None:
    """Remove temporary outputs left by runs that were killed (their pid is gone)."""
    prefix = f"{TEMP_PREFIX}{name}-"
    try:
        entries = list(parent.iterdir())
    except OSError:
        return
    for entry in entries:
        pid = entry.name[len(prefix) :]
        if entry.name.startswith(prefix) and pid.isdigit() and not alive(int(pid)):
            remove(entry)


def alive(pid: int) -> bool:
    """Whether the run that made a temporary directory still runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def write_summary(temp: Path, data: bytes) -> None:
    (temp / SUMMARY_NAME).write_bytes(data)


def sync_tree(directory: Path) -> None:
    """fsync every file in ``directory``, then the directory itself (its entries)."""
    for entry in os.scandir(directory):
        if entry.is_file(follow_symlinks=False):
            fsync_path(entry.path)
    fsync_path(str(directory))


def fsync_path(path: str) -> None:
    """fsync a file or a directory by its path."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(temp: Path, directory: Path, fsync: bool = False) -> None:
    """Swap the finished temporary output in for ``directory``, atomically.

    With ``fsync``, every output file and the temporary directory reach the
    disk before the swap, and the parent directory after it: after a power
    loss the output is the old one or the new one, whole.
    """
    try:
        if fsync:
            sync_tree(temp)
        if directory.exists():
            if not _exchange(temp, directory):
                old = temp.with_name(temp.name + "-old")
                os.rename(directory, old)
                os.rename(temp, directory)
                temp = old
            remove(temp)
        else:
            os.rename(temp, directory)
        if fsync:
            fsync_path(str(directory.absolute().parent))
    except OSError as exc:
        raise RunError(f"cannot move the new output into {str(directory)!r}: {exc.strerror}") from exc


def _exchange(a: Path, b: Path) -> bool:
    """Exchange two paths in one step (Linux renameat2); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))
