"""Earlier runs' outputs, moved aside before the next run and removed between corpora.

Used by bench.py and ceiling.py. Each measured run starts with no output,
as a user's first run does, but the one before it is not removed just
before it: ext4 without a journal (this machine's root filesystem) does not
hand out an inode freed in the last RECENT_S seconds (six minutes while
its inode table block is still dirty), so each file created then scans past
every such inode of its block group first. Measured on this machine
(2026-12-02): 100,000 files created in 3.0 s, and in 55 s right after
100,000 others were removed. A bench that removed each output just before
the next run would time that, for every program alike, and not the program.
So an output is renamed aside (one rename, whatever it holds), and what was
set aside is removed after a corpus's rounds, followed, when it held
RECENT_FILES files or more, by a sync (so that no table block stays dirty)
and a wait of RECENT_S before anything is measured again.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

RECENT_S = 61
"""ext4's RECENTCY_MIN (60 s, fs/ext4/ialloc.c), and a second for the
32-bit deletion times it compares."""
RECENT_FILES = 1_000
"""Fewer files than this, removed, cost the next runs under 1% of their
wall even if every one is scanned past by every file they create (a few
dozen ns each), so removing them is not followed by a wait."""


def set_aside(output: Path, aside: Path) -> None:
    """Move ``output``, if there is one, into the directory ``aside``."""
    if output.exists():
        aside.mkdir(parents=True, exist_ok=True)
        output.rename(aside / f"{output.name}-{time.monotonic_ns()}")


def clear_aside(aside: Path, log: Callable[[str], object] = print) -> None:
    """Remove what was set aside in ``aside``; after many files, wait RECENT_S."""
    if not aside.exists():
        return
    files = sum(len(names) for _, _, names in os.walk(aside))
    shutil.rmtree(aside)
    if files >= RECENT_FILES:
        os.sync()
        log(f"removed {files:,} files of earlier runs: waiting {RECENT_S} s for the filesystem to reuse their inodes")
        time.sleep(RECENT_S)
