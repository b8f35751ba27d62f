"""System: what a process of either engine asks of the kernel and the C library.

Owns writing a list of buffers whole (:func:`write_all`: ``writev`` or
``pwritev``, again for what a short write left), copying a range of one
file into another (:func:`copy_range`), and having malloc keep freed memory
for reuse (:func:`keep_freed_memory`). Starts no process and holds no state. Talks to:
nothing of ours; the local children (``local.child``, ``local.spool``,
``output.parts``) and the Dask tasks (``dask.tasks``) call them.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Sequence
from typing import Final

_IOV_MAX: Final = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024
"""Buffers one writev may take."""
KEEP_FREED_BYTES: Final = 64 << 20
"""Freed memory a process keeps for reuse rather than handing back to the
kernel. Every chunk allocates a few MiB (its bytes, its output, the pickles)
that are freed once it is sent; by glibc's defaults the top of the heap goes
back to the kernel each time and the next chunk faults it in again. Keeping
it cut the page faults of a 10M-line run from 141k to 94k and its CPU by 4%."""
_M_TRIM_THRESHOLD: Final = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD: Final = -3


def write_all(fd: int, buffers: Sequence[bytes | memoryview], offset: int | None = None) -> int:
    """Write every buffer, in order (``writev``, again for what a short write
    left), at the file's position, or from ``offset`` with ``pwritev``.
    Returns the bytes written. A batch written whole, as almost every one
    is, costs no Python step per buffer (a block of 20,000 groups' records
    is 20,000 buffers)."""
    pending: Sequence[bytes | memoryview] = buffers
    total = 0
    while pending:
        batch = pending[:_IOV_MAX]
        written = os.writev(fd, batch) if offset is None else os.pwritev(fd, batch, offset + total)
        total += written
        if written == sum(map(len, batch)):
            pending = pending[_IOV_MAX:]
            continue
        rest = list(pending)  # a short write: go on from the first byte not written
        first = 0
        while written >= len(rest[first]):
            written -= len(rest[first])
            first += 1
        rest[first] = memoryview(rest[first])[written:]
        pending = rest[first:]
    return total


SMALL_COPY: Final = 1 << 15
"""A range smaller than this is copied with a read and a write: the kernel's
copy costs more per call than such a range's bytes."""
_NO_COPY_RANGE: Final = (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF)


def copy_range(source: int, source_at: int, target: int, target_at: int, size: int, name: str) -> None:
    """Copy ``size`` bytes of file ``source`` from ``source_at`` into file
    ``target`` at ``target_at``: with ``os.copy_file_range`` where the kernel
    can (a reflink on XFS or btrfs, a server-side copy on NFS 4.2, an
    in-kernel copy elsewhere: the bytes never come up to Python), else read
    and written. ``name`` names the source in an error."""
    done = 0
    if size >= SMALL_COPY:
        try:
            while done < size:
                copied = os.copy_file_range(source, target, size - done, source_at + done, target_at + done)
                if copied == 0:
                    raise OSError(errno.EIO, "a file is shorter than its index says", name)
                done += copied
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE:
                raise
    while done < size:
        block = os.pread(source, min(size - done, 1 << 20), source_at + done)
        if not block:
            raise OSError(errno.EIO, "a file is shorter than its index says", name)
        done += os.pwrite(target, block, target_at + done)


def keep_freed_memory() -> None:
    """Have malloc keep up to KEEP_FREED_BYTES of freed memory (glibc only)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # another C library: its own defaults
        return
    mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES // 4)  # a fixed value also stops glibc adjusting the trim one
    mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
