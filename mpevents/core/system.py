"""System: what a process of either engine asks of the kernel and the C library.

Owns writing a list of buffers whole (:func:`write_all`: ``writev`` or
``pwritev``, again for what a short write left) and having malloc keep freed memory for reuse
(:func:`keep_freed_memory`). Starts no process and holds no state. Talks to:
nothing of ours; the local children (``local.child``, ``local.spool``) and
the Dask tasks (``dask.tasks``) call them.
"""

from __future__ import annotations

import ctypes
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


def keep_freed_memory() -> None:
    """Have malloc keep up to KEEP_FREED_BYTES of freed memory (glibc only)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # another C library: its own defaults
        return
    mallopt(_M_MMAP_THRESHOLD, KEEP_FREED_BYTES // 4)  # a fixed value also stops glibc adjusting the trim one
    mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
