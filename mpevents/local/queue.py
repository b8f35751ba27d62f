"""Queue: the bounded multiprocessing.Queue that carries spans and results.

Talks to: nothing of ours; readers put spans and workers get them, workers
put results and the collector gets them, each through a
:class:`MessageQueue`, typed by what it carries (``local.messages``).

It is a ``multiprocessing.Queue`` in every way that matters (bound, locks,
pickling, the framing of messages on the pipe) with three changes:

* ``put_direct()`` pickles and writes a small message in the calling thread,
  where ``put()`` hands it to a feeder thread. A worker's feeder thread has
  to win the GIL from the worker's own main thread, busy checking the next
  chunk, before a result can leave: with small chunks (a file each) results
  queued up behind it and the workers waited on a full result queue (2,000
  files of 1,000 lines: 2.5-2.7 s, then 2.2-2.4 s). A large message still
  goes through the feeder, whose write overlaps the next chunk's work;
* its pipe is widened to 1 MiB, so a chunk takes a turn or two of writer and
  reader instead of a dozen;
* a blocking ``get()`` reads each message straight into one buffer that the
  process keeps. The stock one reads with ``os.read`` calls of the whole
  remaining size, each allocating (and faulting in) a buffer that large, and
  copies the pieces into a ``BytesIO``. Receiving 2.4 MB messages through a
  1 MiB pipe cost 1.83 s of CPU per GB the stock way and 0.54 s this way
  (tests/benchmarks/test_bench_queue.py, on this project's 2-core machine).
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing.connection
import multiprocessing.context
import multiprocessing.queues
import os
import struct
import types
from multiprocessing.reduction import ForkingPickler
from typing import TYPE_CHECKING, Any, Final, TypeVar

PIPE_BYTES: Final = 1 << 20
"""Pipe size asked for: a whole chunk, and Linux's default cap
(/proc/sys/fs/pipe-max-size)."""
_F_SETPIPE_SZ: Final = 1031
KEEP_BUFFER_BYTES: Final = 64 << 20
"""A receive buffer up to this size is kept for the next message; a larger one
(a message of an unusually large chunk) is dropped after use."""

# How multiprocessing.connection frames a message: a signed 32-bit big-endian
# length, or -1 and then an unsigned 64-bit length for messages of 2 GiB and more.
_LENGTH: Final = struct.Struct("!i")
_LONG_LENGTH: Final = struct.Struct("!Q")

T = TypeVar("T")

if TYPE_CHECKING:
    _Queue = multiprocessing.queues.Queue
else:

    class _Queue(multiprocessing.queues.Queue):
        """The stdlib's queue, subscriptable at run time too, as it is from Python 3.12."""

        __class_getitem__ = classmethod(types.GenericAlias)


class MessageQueue(_Queue[T]):
    """A bounded queue of messages of type ``T``, small or large; see the module docstring."""

    # The base class's own attributes, which typeshed does not declare.
    _reader: multiprocessing.connection.Connection
    _writer: multiprocessing.connection.Connection
    _rlock: Any
    _wlock: Any
    _sem: Any
    _closed: bool
    _inbox: bytearray  # this process's receive buffer; never pickled

    def __init__(self, maxsize: int, *, ctx: multiprocessing.context.BaseContext) -> None:
        super().__init__(maxsize, ctx=ctx)
        # Where the call is refused (other systems, a lower pipe-max-size),
        # the queue keeps its default pipe.
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(self._reader.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)

    def put_direct(self, obj: T, block: bool = True) -> bool:
        """Put a small message now, from this thread; while the queue is full,
        wait, or with ``block`` false, put nothing and return False."""
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if not self._sem.acquire(block):
            return False
        message = ForkingPickler.dumps(obj)
        with self._wlock:
            self._writer.send_bytes(message)
        return True

    def break_mid_transfer(self) -> None:
        """Test failpoint: start a message and never finish it, as a process
        killed in the middle of a put does (the caller then kills itself). The
        reader of the queue is left waiting for the rest, with its lock held."""
        self._sem.acquire()
        self._wlock.acquire()
        os.write(self._writer.fileno(), _LENGTH.pack(1 << 20) + b"cut short")

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        if not block or timeout is not None or self._closed:
            return super().get(block, timeout)
        with self._rlock:
            message = self._receive(self._reader.fileno())
        self._sem.release()
        # unpickled after the lock is released, as the base class does
        obj: T = ForkingPickler.loads(message)
        return obj

    def _receive(self, fd: int) -> memoryview:
        (size,) = _LENGTH.unpack(_read_exactly(fd, _LENGTH.size))
        if size == -1:
            (size,) = _LONG_LENGTH.unpack(_read_exactly(fd, _LONG_LENGTH.size))
        buffer: bytearray | None = getattr(self, "_inbox", None)
        if buffer is None or len(buffer) < size:
            buffer = bytearray(size)
            if size <= KEEP_BUFFER_BYTES:
                self._inbox = buffer
        message = memoryview(buffer)[:size]
        _read_into(fd, message)
        return message


def _read_exactly(fd: int, size: int) -> bytes:
    data = bytearray(size)
    _read_into(fd, memoryview(data))
    return bytes(data)


def _read_into(fd: int, view: memoryview) -> None:
    while view:
        count = os.readv(fd, [view])
        if count == 0:
            raise EOFError
        view = view[count:]
