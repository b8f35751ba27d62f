"""Benchmark of the queue transport: results of megabytes, stock get() against MessageQueue's.

pytest tests/benchmarks --benchmark-only -k queue
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing.queues
import time
from typing import Any

import pytest

from mpevents.local.child import context
from mpevents.local.queue import _F_SETPIPE_SZ, PIPE_BYTES, MessageQueue

MESSAGES = 100
GROUP_BYTES = 800_000  # three groups: about the result of one 1 MiB chunk of seed lines


def send(q: Any) -> None:
    payload = {group: (8_000, bytes([65 + i]) * GROUP_BYTES) for i, group in enumerate((b"1", b"2", b"3"))}
    for seq in range(MESSAGES):
        q.put((0, seq, payload))
    q.close()
    q.join_thread()


def make_queue(kind: str) -> Any:
    ctx = context()
    if kind == "chunk":
        return MessageQueue(4, ctx=ctx)
    q: multiprocessing.queues.Queue[Any] = multiprocessing.queues.Queue(4, ctx=ctx)
    with contextlib.suppress(OSError):  # the same 1 MiB pipe, for a fair comparison
        fcntl.fcntl(q._reader.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)  # type: ignore[attr-defined]
    return q


@pytest.mark.benchmark(group="queue")
@pytest.mark.parametrize("kind", ["stock", "chunk"])
def test_receive_results(benchmark: Any, kind: str) -> None:
    cpu: list[float] = []

    def receive() -> int:
        q = make_queue(kind)
        sender = context().Process(target=send, args=(q,))
        sender.start()
        started = time.process_time()
        total = sum(len(q.get()[2][b"2"][1]) for _ in range(MESSAGES))
        cpu.append(time.process_time() - started)
        sender.join()
        return total

    total = benchmark.pedantic(receive, rounds=3, iterations=1)
    assert total == MESSAGES * GROUP_BYTES
    benchmark.extra_info["receiver_cpu_s_per_gb"] = round(min(cpu) / (MESSAGES * 3 * GROUP_BYTES / 1e9), 2)
