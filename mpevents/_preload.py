"""Imported once by the fork server, before it forks any child.

It imports what every child runs, then freezes the garbage collector's view
of those objects (``gc.freeze``): collections in the children then never walk
them, so the pages that hold them stay shared with the fork server instead of
being copied into every child. This keeps each child's own memory small.
"""

import gc

from . import _supervisor  # noqa: F401  # everything the children run

gc.freeze()
