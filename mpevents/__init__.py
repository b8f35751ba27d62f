"""mpevents: turn directories of delimited event logs into validated JSON.

Data flow of the local engine (one process per box; each arrow between
processes is a bounded multiprocessing.Queue (``local.queue``) carrying one
message per span of whole lines, ``local.messages``)::

    +--------------------------------- main ----------------------------------+
    | cli -> run: checks, staging, signals, summary, atomic commit            |
    |   -> supervisor (the local engine): starts children, waits on their     |
    |      sentinels, replaces the dead from the ledger; dashboard: reads the |
    |      shared scoreboard                                                  |
    +-------------------------------------------------------------------------+
          | starts --readers readers, each taking the next file as it finishes one
    a.log, d.log -> [reader 1] --+                  +--> its part log (each span's records)
    b.log, e.log -> [reader 2] --+-> work queue --> [worker 1..N] --+
    c.log, ...   -> [reader K] --+    (Span)            ^           +--> result queue --> [collector] --> rejected.jsonl
                                                        |               (Result: where the records are) |
                                                        +----- placings, once every span is in <--------+
       [worker 1..N], each a placing: its share of the group files, from every part log --> group-<id>.jsonl
                                                       Report (counts for summary.json) --> main

* reader (``local.reader``): takes the next input file in input order and cuts it
  into spans of whole lines (``core.framing``); does not parse. A span on the work
  queue says where its lines lie in the file; a compressed file's spans have
  their decompressed bytes left in a spool of files in RAM (``local.spool``).
* worker (``local.worker``): reads each span from its file, checks every line
  against the spec (``core.spec``), encodes valid records as JSON, per group,
  and appends them to its own part log (``output.parts``); rejects carry their
  reason. Once every span is in, each worker writes its share of the group
  files from all the part logs (a placing).
* collector (``local.collector``, around the core both engines share,
  ``output.collector``): puts results back in input order, keeping only where
  each span's records lie in its worker's part log, and writes the rejects;
  once every span is in, it puts one placing per worker on the work queue.
* main: the run (``_run``) around an engine (``_engine``): the local one
  (``local.supervisor``: supervision and fault recovery) or Dask (``dask.engine``,
  the client; ``dask.tasks``, what runs on the Dask workers).

Progress travels through shared memory (``observe.board``), not through the queues;
so does what recovery needs to know (``local.ledger``).

Public API: :func:`run` with a :class:`Config`; :func:`process_chunk` and
:func:`check_line`, the record spec as pure functions; :func:`main`, the
command line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.2.0"

from mpevents._config import Config
from mpevents._summary import Summary
from mpevents.core.errors import Interrupted, MpeventsError, RunError, UsageError
from mpevents.core.inputs import InputFile
from mpevents.core.spec import REASONS, ChunkResult, Record, Reject, check_line, process_chunk

if TYPE_CHECKING:
    from mpevents._run import Observer


def run(config: Config, observer: Observer | None = None) -> Summary:
    """Run the pipeline; return the summary written to ``summary.json`` (an
    ``incremental`` run that found nothing new leaves the output as it was,
    and returns its summary)."""
    from mpevents._run import run as _run
    from mpevents._summary import decode
    from mpevents.output.names import SUMMARY_NAME

    summary = _run(config, observer)
    if summary is None:
        summary = decode((config.output_dir / SUMMARY_NAME).read_bytes())
        assert summary is not None  # the run read it
    return summary


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit code."""
    from mpevents._cli import main as _main

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
    "Summary",
    "UsageError",
    "__version__",
    "check_line",
    "main",
    "process_chunk",
    "run",
]
