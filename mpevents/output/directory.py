"""The output directory: refuse foreign ones, build beside, swap in atomically, leave nothing else.

Owns everything about ``--output DIR`` on disk. A run writes into a fresh
temporary directory next to the output (next to where a symlink points: same
filesystem, so a rename moves it), and only when the whole run has succeeded
is it exchanged with the old output in one ``renameat2(RENAME_EXCHANGE)``
call: a reader of the directory sees the old output or the new one, never a
mix. A failed or interrupted run removes its temporary directory and leaves
the old output as it was.

A run holds its output by ``flock`` on its own temporary directory, which
becomes the output at the swap (:func:`claim`): no lock file, and whatever a
killed run left beside the output is recognised by no one holding it, and
cleared by the next run. ``local.spool`` clears its leftovers in /dev/shm the same
way (:func:`remove_abandoned`).

Nothing but ``group-<id>.jsonl``, ``rejected.jsonl`` and ``summary.json`` goes
into the output (every name is ``output.names``'s). ``summary.json`` names mpevents as its tool, which is how a
later run knows the directory is its own to replace.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import platform
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, NamedTuple

import msgspec

from mpevents.core.errors import RunError, UsageError
from mpevents.output import names
from mpevents.output.names import SUMMARY_NAME

log = logging.getLogger("mpevents")

TOOL: Final = "mpevents"
_AT_FDCWD: Final = -100
_RENAME_EXCHANGE: Final = 2
_RENAMEAT2: Final = "renameat2"
"""libc's name for it (a test names one that is not there)."""
_SYS_RENAMEAT2: Final = {
    "x86_64": 316, "aarch64": 276, "riscv64": 276, "ppc64le": 357, "ppc64": 357, "s390x": 347,
    "i686": 353, "i386": 353, "armv7l": 382,
}  # fmt: skip
"""renameat2's system call number, by machine, for a libc without it."""


def check_output(directory: Path) -> None:
    """Refuse an output directory that exists, is not empty and is not ours,
    or that cannot be made because something on its path is a file."""
    for parent in real_path(directory).parents:
        if parent.exists():
            if not parent.is_dir():
                raise UsageError(f"output {str(directory)!r} cannot be made: {str(parent)!r} is a file")
            break
    if not directory.exists():
        return
    if not directory.is_dir():
        raise UsageError(f"output {str(directory)!r} exists and is not a directory")
    try:
        entries = os.listdir(directory)
    except OSError as exc:
        raise UsageError(f"cannot list output directory {str(directory)!r}: {exc.strerror}") from exc
    if not entries:
        return
    if is_ours(directory, entries):
        return
    raise UsageError(
        f"output directory {str(directory)!r} is not empty and was not written by mpevents; "
        "choose another --output or empty it"
    )


def is_ours(directory: Path, entries: list[str]) -> bool:
    if SUMMARY_NAME not in entries or not all(names.OUTPUT_NAMES.fullmatch(name) for name in entries):
        return False
    try:
        summary = msgspec.json.decode((directory / SUMMARY_NAME).read_bytes())
    except (OSError, msgspec.DecodeError):
        return False
    return isinstance(summary, dict) and summary.get("tool") == TOOL


class Claim(NamedTuple):
    """A run's hold on its output: the staging directory it builds in, and the
    descriptor that holds it (see :func:`claim`)."""

    staging: Path
    fd: int
    output_fd: int | None = None
    """An --incremental run's hold on the output itself, which it appends to in place."""

    def release(self) -> None:
        os.close(self.fd)
        if self.output_fd is not None:
            os.close(self.output_fd)


def real_path(directory: Path) -> Path:
    """Where the output really is: every symlink on the way resolved, so that an
    output given through a link is built and swapped beside the directory the
    link points to (on its filesystem), and the link itself stays as it is."""
    return Path(os.path.realpath(directory))


def claim(directory: Path, resume: bool = False, hold_output: bool = False) -> Claim:
    """Hold the output ``directory`` (a :func:`real_path`) for this run and make
    its staging directory beside it: ``.mpevents-tmp-<output>-<pid>``, or for
    --resume ``.mpevents-resume-<output>``, kept as it is if it is there.

    A run holds its staging directory with ``flock`` on the directory itself
    until it ends, however it ends; the commit renames that directory into the
    output, so the hold moves with it. No lock file is needed: the parent's own
    ``flock``, taken for a moment here and around the commit's renames, makes
    the look at every directory of the output and the making of this run's one
    step. So a second run on the same output is refused (exit 2), and what a
    run that was killed left beside the output, held by no one, is cleared:
    its staging directory removed, an old output that a commit had moved aside
    (:func:`commit`) put back where the new one never came, or removed.
    With ``hold_output`` (``--incremental``, which appends to the output in
    place) the output directory is held too, if it is there.
    """
    parent, name = directory.parent, directory.name
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with locked(parent):
            _clear_leftovers(directory)
            staging = resume_dir(directory) if resume else parent / names.staging_name(name, os.getpid())
            staging.mkdir(exist_ok=resume)
            fd = hold(staging)
            output_fd = hold(directory) if hold_output and directory.is_dir() else None
    except OSError as exc:
        raise RunError(f"cannot create the output beside {str(directory)!r}: {exc.strerror}") from exc
    assert fd is not None  # no other run makes or holds it while we have the parent
    return Claim(staging, fd, output_fd)


def resume_dir(directory: Path) -> Path:
    return directory.parent / names.resume_name(directory.name)


def _clear_leftovers(directory: Path) -> None:
    """Refuse an output that a live run holds; else clear what dead runs left
    beside it. Called with the parent locked."""
    parent, name = directory.parent, directory.name
    temps, olds = names.staging_names(name), names.old_names(name)
    entries = [path for path in parent.iterdir() if temps.fullmatch(path.name) or olds.fullmatch(path.name)]
    for path in [directory, resume_dir(directory), *entries]:
        try:
            fd = hold(path)
        except (FileNotFoundError, NotADirectoryError):  # not there (any more), or not a run's
            continue
        if fd is None:
            raise UsageError(f"another mpevents run is writing {str(directory)!r}")
        os.close(fd)
    aside = sorted((path for path in entries if olds.fullmatch(path.name)), key=lambda path: path.stat().st_mtime_ns)
    if aside and not directory.exists():  # killed between the commit's two renames: the old output goes back
        os.rename(aside.pop(), directory)
    for path in aside:
        remove(path)
    remove_abandoned(parent, temps)


_NO_FLOCK: Final = frozenset({errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINVAL})
"""What ``flock`` on a directory answers where the filesystem cannot lock one:
NFS emulates flock with byte-range locks, which need a descriptor open for
writing, and a directory opens read-only."""


LOCK_WAIT_S: Final = 10.0
"""How long a run waits for a directory that another holds: our runs hold one
for milliseconds, so a longer hold is someone else's (a shared ``/dev/shm``
that any user may ``flock``), and waiting on would hang the run."""
LOCK_POLL_S: Final = 0.005


def _flock(fd: int, flags: int, path: str | Path) -> None:
    """``flock``, or where the filesystem cannot lock a directory, one warning
    and no lock: runs on the same output are then not kept apart, but they run."""
    try:
        fcntl.flock(fd, flags)
    except OSError as exc:
        if exc.errno not in _NO_FLOCK:
            raise
        if not _warned:
            _warned.append(True)
            log.warning(
                "cannot lock directories in %s (%s): a second run on the same output is not refused",
                os.path.dirname(os.path.abspath(path)),
                exc.strerror,
            )


_warned: list[bool] = []  # one warning per process


def hold(path: str | Path) -> int | None:
    """A descriptor holding directory ``path`` (``flock``, let go when it is
    closed or its process ends, however it ends); None if a live process holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, path)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def locked(directory: Path | str) -> Iterator[None]:
    """``directory`` locked (``flock``, waiting for it) while the block runs:
    held only for a moment (a look at its entries, a few renames), by runs
    whose outputs or spools lie in it."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, directory)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:  # not one of ours: they hold it for milliseconds
                    raise OSError(
                        errno.ETIMEDOUT, f"locked by another process for {LOCK_WAIT_S:g} s", str(directory)
                    ) from None
                time.sleep(LOCK_POLL_S)
        yield
    finally:
        os.close(fd)


def remove_abandoned(directory: Path | str, pattern: re.Pattern[str]) -> None:
    """Remove what runs killed outright left in ``directory``: the entries whose
    names match ``pattern`` (its first group: the pid of the run that made the
    entry) that no live run holds (:func:`hold`) and whose pid is not a live
    mpevents process's, this one apart (a run of an earlier mpevents held
    none; a pid taken since by another program does not keep the entry)."""
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            match = pattern.fullmatch(entry.name)
            if match is None:
                continue
            pid = int(match.group(1))
            try:
                fd = hold(entry.path)
            except OSError:  # gone meanwhile, or another user's
                continue
            if fd is None:
                continue
            if pid == os.getpid() or not _a_run(pid):
                remove(Path(entry.path))
            os.close(fd)


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
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


_PF_KTHREAD: Final = 0x00200000
"""The kernel's flag of a kernel thread, in /proc/<pid>/stat's ninth field."""


def _a_run(pid: int) -> bool:
    """Whether ``pid`` is a live mpevents process (one we cannot look at counts as one)."""
    if not alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if cmdline:
            return b"mpevents" in cmdline
        # Empty: a kernel thread (the pid reused), or a process in the middle
        # of an exec (the kernel sets the new arguments after closing its
        # close-on-exec files), which cannot be told yet.
        flags = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[6])
    except (OSError, IndexError, ValueError):
        return True
    return not flags & _PF_KTHREAD


REMOVE_THREADS: Final = 8
"""How many threads unlink a directory's files at once. A file's blocks are
freed after the directory's lock is let go, and a filesystem that trims freed
blocks at once (ext4 without a journal, mounted with ``discard``, like the
machines this was measured on) waits on the disk for each file: 8 threads
removed a 100,000-group output in 4.2 and 5.2 s, one thread in 13.7 and 14.8 s,
with the same CPU."""
REMOVE_ALONE_UNDER: Final = 256
"""Fewer files than this are unlinked by the calling thread alone: starting
threads would cost more than they save."""


def remove(path: Path) -> None:
    """Remove a directory and all it holds (links are removed, never
    followed), or a file; nothing if it is not there. What cannot be removed
    is left, as ``shutil.rmtree(ignore_errors=True)`` leaves it."""
    if path.is_dir() and not path.is_symlink():
        with contextlib.suppress(OSError):
            _remove_tree(_AT_FDCWD, str(path))
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def empty(directory: Path) -> None:
    """Remove everything in ``directory``, keeping the directory (and so its
    hold). Raises OSError if it cannot be read or one of its files cannot be
    removed: a file left would keep bytes that the run writing there next
    does not expect (a subdirectory it cannot remove is left, as by :func:`remove`)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        failed = _remove_contents(fd)
    finally:
        os.close(fd)
    if failed is not None:
        raise failed


def _remove_tree(parent: int, name: str) -> None:
    """Remove directory ``name`` of the directory open as ``parent``, and all it
    holds. Each directory is opened relative to the one holding it, without
    following a link: one swapped for a link while the tree is removed is
    removed itself, not what it points to."""
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
    try:
        _remove_contents(fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


def _remove_contents(fd: int) -> OSError | None:
    """Remove what the directory open as ``fd`` holds; the first error met
    unlinking one of its files (what could not be removed is left)."""
    files: list[str] = []
    directories: list[str] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            (directories if entry.is_dir(follow_symlinks=False) else files).append(entry.name)
    for name in directories:
        with contextlib.suppress(OSError):
            _remove_tree(fd, name)
    return _unlink_all(fd, files)


def _unlink_all(directory: int, names: list[str]) -> OSError | None:
    """Unlink ``names`` in the directory open as ``directory``, REMOVE_THREADS
    at a time; the first error but a name gone already. Each thread has its
    own descriptor of the directory (a dup, which it closes), so that one still
    going after its caller was interrupted unlinks only there."""
    errors: list[OSError] = []

    def unlink(fd: int, batch: list[str]) -> None:
        try:
            for name in batch:
                try:
                    os.unlink(name, dir_fd=fd)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    errors.append(exc)
        finally:
            os.close(fd)

    size = len(names) if len(names) < REMOVE_ALONE_UNDER else -(-len(names) // REMOVE_THREADS)
    batches = [names[start : start + size] for start in range(0, len(names), size)] if names else []
    threads = []
    for batch in batches[1:]:
        fd = os.dup(directory)
        thread = threading.Thread(target=unlink, args=(fd, batch), name="mpevents-remove", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # no thread to be had (a container's limit): this one does it
            unlink(fd, batch)
            continue
        threads.append(thread)
    if batches:
        unlink(os.dup(directory), batches[0])
    for thread in threads:
        thread.join()
    return errors[0] if errors else None


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

    Where ``renameat2(RENAME_EXCHANGE)`` is not to be had (a filesystem
    without it, a kernel before 3.15), the old output is renamed aside to
    ``.mpevents-old-<output>-<pid>`` and the new one renamed in: a reader may
    find no output between the two, and a run killed there leaves the old
    output aside, which the next run on it puts back (:func:`claim`).
    """
    try:
        if fsync:
            sync_tree(temp)
        with locked(directory.parent):  # no other run looks while the output is aside
            if not directory.exists():
                os.rename(temp, directory)
                old = None
            elif _exchange(temp, directory):
                old = temp
            else:
                old = _swap_by_renames(temp, directory)
        if old is not None:
            remove(old)
        if fsync:
            fsync_path(str(directory.parent))
    except OSError as exc:
        raise RunError(f"cannot move the new output into {str(directory)!r}: {exc.strerror}") from exc


def _swap_by_renames(temp: Path, directory: Path) -> Path:
    """The swap in two renames, where they cannot be one; returns where the old output went."""
    aside = directory.with_name(names.old_name(directory.name, os.getpid()))
    os.rename(directory, aside)
    try:
        os.rename(temp, directory)
    except BaseException:
        os.rename(aside, directory)
        raise
    return aside


def _exchange(a: Path, b: Path) -> bool:
    """Exchange two paths in one step (Linux renameat2); False where unsupported."""
    return _renameat2(_AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE)


def _renameat2(source: int, old: str | Path, target: int, new: str | Path, flags: int) -> bool:
    """``renameat2``, relative to directory descriptors; False where the
    call or its flags are unsupported (raises OSError for any other failure).

    Through libc's ``renameat2``, or, where libc has none (glibc before 2.28),
    the system call itself."""
    libc = ctypes.CDLL(None, use_errno=True)
    args = (ctypes.c_int(source), os.fsencode(old), ctypes.c_int(target), os.fsencode(new))
    try:
        result = getattr(libc, _RENAMEAT2)(*args, ctypes.c_uint(flags))
    except AttributeError:
        number = _SYS_RENAMEAT2.get(platform.machine())
        if number is None:
            return False
        # syscall(2) takes longs: every argument widened, the descriptors sign-extended
        wide = (ctypes.c_long(source), args[1], ctypes.c_long(target), args[3])
        result = libc.syscall(ctypes.c_long(number), *wide, ctypes.c_long(flags))
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(new))
