"""mpevents: turn directories of pipe-delimited event logs into validated JSON.

Data flow (one process per box; each arrow between processes is a bounded
multiprocessing.Queue (``_queue``) carrying one message per chunk of whole lines)::

    +--------------------------------- main ----------------------------------+
    | cli -> supervisor: starts children, waits on their sentinels, replaces  |
    | the dead; dashboard: reads the shared scoreboard; output: atomic commit |
    +-------------------------------------------------------------------------+
          | starts --readers readers, each taking the next file as it finishes one
    a.log, d.log -> [reader 1] --+                                      +-> group-<id>.jsonl
    b.log, e.log -> [reader 2] --+-> work queue --> [worker 1] --+      |
    c.log, ...   -> [reader K] --+    (Chunk)   --> [worker N] --+-> result queue --> [collector] -+-> rejected.jsonl
                                                                     (Result)          |
                                                              counts for summary.json -+-> main

* reader (``_reader``): takes the next input file in input order and cuts it
  into chunks of whole lines; does not parse. A chunk on the work queue says
  where its lines lie in the file.
* worker (``_worker``): reads each chunk from its file, checks every line
  against the spec (``_spec``) and encodes valid records as JSON, per group;
  rejects carry their reason.
* collector (``_collector``): puts results back in input order and writes them
  into a temporary directory as they arrive.
* main (``_supervisor``): supervision, fault recovery, signals, and the final
  swap of the temporary directory into ``--output``.

Progress travels through shared memory (``_board``), not through the queues.

Public API: :func:`run` with a :class:`Config`; :func:`process_chunk` and
:func:`check_line`, the record spec as pure functions; :func:`main`, the
command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from ._config import Config, InputFile
from ._errors import Interrupted, MpeventsError, RunError, UsageError
from ._spec import REASONS, ChunkResult, Record, Reject, check_line, process_chunk

if TYPE_CHECKING:
    from ._supervisor import Observer


def run(config: Config, observer: Observer | None = None) -> dict[str, Any]:
    """Run the pipeline; return the summary written to ``summary.json``."""
    from ._supervisor import run as _run

    return _run(config, observer)


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code."""
    from ._cli import main as _main

    return _main(argv)


__all__ = [
    "REASONS",
    "ChunkResult",
    "Config",
    "InputFile",
    "Interrupted",
    "MpeventsError",
    "Record",
    "Reject",
    "RunError",
    "UsageError",
    "__version__",
    "check_line",
    "main",
    "process_chunk",
    "run",
]
