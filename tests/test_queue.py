"""The message queue: what goes in comes out, whatever the message size."""

from __future__ import annotations

import fcntl
import queue
from pathlib import Path

import pytest

from mpevents.local.child import context
from mpevents.local.queue import KEEP_BUFFER_BYTES, PIPE_BYTES, MessageQueue

# Around the framing's 16 KiB split, the pipe's size, and the kept buffer's.
SIZES = [0, 1, 16_383, 16_384, 16_385, PIPE_BYTES + 7, 3 * PIPE_BYTES, 10, KEEP_BUFFER_BYTES + 1, 5]


Message = tuple[int, bytes, dict[bytes, tuple[int, bytes]]]


def message(size: int) -> Message:
    body = bytes(range(256)) * (size // 256 + 1)
    return size, body[:size], {b"7": (size, body[:size:3])}


def send_all(q: MessageQueue[Message], sizes: list[int]) -> None:
    for size in sizes:
        q.put(message(size))
    q.close()
    q.join_thread()


@pytest.mark.timeout(60)
def test_messages_of_every_size_arrive_whole_and_in_order() -> None:
    ctx = context()
    q: MessageQueue[Message] = MessageQueue(2, ctx=ctx)
    sender = ctx.Process(target=send_all, args=(q, SIZES))
    sender.start()
    try:
        for size in SIZES:
            assert q.get() == message(size)
    finally:
        sender.join(10)
    assert sender.exitcode == 0


@pytest.mark.timeout(60)
def test_two_senders_interleave_whole_messages() -> None:
    ctx = context()
    q: MessageQueue[Message] = MessageQueue(2, ctx=ctx)
    sizes = [PIPE_BYTES + 1, 100, 2 * PIPE_BYTES, 50_000] * 3
    senders = [ctx.Process(target=send_all, args=(q, sizes)) for _ in range(2)]
    for sender in senders:
        sender.start()
    received = sorted(q.get()[0] for _ in range(2 * len(sizes)))
    for sender in senders:
        sender.join(10)
    assert received == sorted(sizes * 2)


def test_a_get_with_a_timeout_still_times_out() -> None:
    q: MessageQueue[Message] = MessageQueue(1, ctx=context())
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)
    q.put(message(3))
    assert q.get(timeout=5) == message(3)


@pytest.mark.skipif(
    int(Path("/proc/sys/fs/pipe-max-size").read_text()) < PIPE_BYTES, reason="this system caps pipes lower"
)
def test_the_pipe_is_widened() -> None:
    q: MessageQueue[Message] = MessageQueue(1, ctx=context())
    f_getpipe_sz = 1032
    assert fcntl.fcntl(q._reader.fileno(), f_getpipe_sz) == PIPE_BYTES


def test_put_direct_sends_from_the_calling_thread_and_keeps_the_bound() -> None:
    q: MessageQueue[Message] = MessageQueue(2, ctx=context())
    q.put_direct(message(10))
    q.put(message(PIPE_BYTES + 7))  # through the feeder thread, after the direct one
    with pytest.raises(queue.Full):
        q.put(message(1), block=False)  # the bound counts direct messages too
    assert q.get() == message(10)
    assert q.get() == message(PIPE_BYTES + 7)
    q.close()
    q.join_thread()
