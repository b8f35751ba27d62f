"""Imported once by the fork server, before it forks any child.

It imports what every child runs, then freezes the garbage collector's view
of those objects (``gc.freeze``): collections in the children then never walk
them, so the pages that hold them stay shared with the fork server instead of
being copied into every child. This keeps each child's own memory small.
"""

import gc

# What unpickling a child's arguments imports (its queues' locks, the Process
# object's popen): not imported here, each child imported them itself, 8 ms
# of every child's start.
import multiprocessing.popen_fork
import multiprocessing.popen_forkserver
import multiprocessing.synchronize  # noqa: F401

from mpevents.local import supervisor as _supervisor  # noqa: F401  # everything the children run

gc.freeze()
