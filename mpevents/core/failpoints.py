"""Test-only fault injection, read once from ``MPEVENTS_FAILPOINTS`` at start-up.

The variable holds comma-separated ``name=value`` items, for example
``worker_kill=1:0,collector_slow=0.05``. The fault tests use them to kill a
process at a chosen moment, deterministically. Unset, nothing here costs more
than a dictionary lookup per chunk.

    worker_kill=F:S[:N]     a worker of the first N generations of its slot (1 if not given)
                            SIGKILLs itself holding span S of file F
    worker_kill_always=F:S  every worker holding that span does (exhausts --max-retries)
    reader_kill=F:S[:N]     a reader of the first N generations of its slot SIGKILLs
                            itself before sending span S of file F
    worker_break_queue=F:S  a first-generation worker sends span S of file F's result only in
                            part, then SIGKILLs itself: the collector waits for the rest
                            forever, and the pipeline stalls
    placer_kill=K           a first-generation worker SIGKILLs itself as it starts the K-th placing (from 0)
                            of the first epoch
    placer_kill_sent=K      a first-generation worker SIGKILLs itself once it has sent the result of the
                            first epoch's K-th placing, before its slot says so: its replacement does the
                            placing again, perhaps after its epoch is placed
    placer_slow=SECONDS     a placing sleeps this long after each block it reads
    checkpoint_s=SECONDS    a --resume run's collector journals this often (instead of every second)
    stall_s=SECONDS         after a crash, this long without progress is a stall (instead of 3 s)
    skip_slow=SECONDS       decompressing a file up to a restart point sleeps this long per MiB
                            (a big file on a slow machine)
    collector_kill=N        the first collector SIGKILLs itself after writing N results
    collector_slow=SECONDS  the collector sleeps this long before each result
    collector_write_error=N the collector's write fails with ENOSPC after N results
    incremental_kill=1      an --incremental run's main SIGKILLs itself once it has appended its
                            records to the output, before it commits them (summary.json)
"""

from __future__ import annotations

import os
import signal

ENV = "MPEVENTS_FAILPOINTS"


def _parse(text: str) -> dict[str, str]:
    points = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        points[name] = value
    return points


POINTS = _parse(os.environ.get(ENV, ""))


def chunk_point(name: str, generation: int = 0) -> tuple[int, int] | None:
    """The (file, seq) a span failpoint names, if it is set and fires in
    ``generation`` (a slot's first process is generation 0)."""
    value = POINTS.get(name)
    if value is None:
        return None
    file, seq, *times = value.split(":")
    if generation >= (int(times[0]) if times else 1):
        return None
    return int(file), int(seq)


def number(name: str) -> float | None:
    value = POINTS.get(name)
    return None if value is None else float(value)


def kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
