"""Earlier runs' outputs, moved aside before the next run and removed when the bench ends.

Used by bench.py and ceiling.py. Each measured run starts with no output,
as a user's first run does, but the one before it is not removed just
before it: ext4 without a journal (this machine's root filesystem) does not
hand out an inode freed in the last minute, or the last six while its inode
table block is dirty (which making files next to it does), so each file
created then scans past every such inode of its block group first.
Measured on this machine (2026-12-02): 100,000 files created in 3.0 s, in
55 s right after 100,000 others were removed, and still in 14 s after
200,000 were removed, a sync and a wait of 61 s. A bench that removed each
output just before the next run would time that, for every program alike,
and not the program.

So an output is renamed aside (one rename, whatever it holds), and what was
set aside is removed when the bench ends, or sooner if the disk's free space
falls under KEEP_FREE_BYTES. When that removed RECENT_FILES files or more,
the time is written down (CLEARED_NAME), and nothing is measured until
RECENT_S after it: :func:`settle` waits, a bench started soon after another
too.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

RECENT_S = 361
"""ext4's RECENTCY_MIN and RECENTCY_DIRTY (60 + 300 s, fs/ext4/ialloc.c),
and a second for the whole seconds of the deletion times it compares."""
RECENT_FILES = 1_000
"""Fewer files than this, removed, cost the next runs under 1% of their
wall even if every file they create scans past each of them (a few dozen
ns each), so removing them is not followed by a wait."""
KEEP_FREE_BYTES = 20 << 30
"""The free space below which what was set aside is removed at once (and the
bench waits): a full bench sets aside some 35 GB of outputs."""
CLEARED_NAME = "cleared"
"""The file beside the aside directory that holds when many files were last removed."""

Log = Callable[[str], object]


def set_aside(output: Path, aside: Path, log: Log = print) -> None:
    """Move ``output``, if there is one, into the directory ``aside``; if the
    disk is then short of space, remove what is there and settle."""
    if not output.exists():
        return
    aside.mkdir(parents=True, exist_ok=True)
    output.rename(aside / f"{output.name}-{time.monotonic_ns()}")
    if shutil.disk_usage(aside).free < KEEP_FREE_BYTES:
        clear_aside(aside, log)
        settle(aside, log)


def clear_aside(aside: Path, log: Log = print) -> None:
    """Remove what was set aside in ``aside``; after many files, write down when."""
    if not aside.exists():
        return
    files = sum(len(names) for _, _, names in os.walk(aside))
    shutil.rmtree(aside)
    if files >= RECENT_FILES:
        aside.with_name(CLEARED_NAME).write_text(f"{time.time()}\n")
        log(f"removed {files:,} files of earlier runs")


def settle(aside: Path, log: Log = print) -> None:
    """Wait until RECENT_S after many files were last removed (see the module docstring)."""
    try:
        cleared = float(aside.with_name(CLEARED_NAME).read_text())
    except (FileNotFoundError, ValueError):
        return
    left = cleared + RECENT_S - time.time()
    if left > 0:
        log(f"waiting {left:.0f} s for the filesystem to hand out the inodes of removed files again")
        time.sleep(left)
