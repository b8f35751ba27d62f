"""Command line: parse arguments, run, map every outcome to an exit code.

Owns argparse, logging set-up and the promise that a user sees one clear line
on stderr, never a traceback, unless they ask for ``--debug``: every error
ends here, and :func:`one_line` makes its message one line of at most
ERROR_CHARS characters, however long or many-lined it came.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import logging
import math
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

from mpevents import __version__
from mpevents._config import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_INPUT,
    DEFAULT_INTERVAL_S,
    DEFAULT_MAX_RETRIES,
    DEFAULT_OUTPUT,
    DEFAULT_PATTERNS,
    DEFAULT_PROFILE_DIR,
    DEFAULT_READERS,
    DEFAULT_SETTLE_S,
    Config,
    check,
    parse_size,
    usable_cores,
)
from mpevents.core.errors import EXIT_FAILURE, EXIT_OK, EXIT_SIGINT, Interrupted, MpeventsError, UsageError
from mpevents.core.schema import V1, infer_file, load, to_toml
from mpevents.core.sources import is_url
from mpevents.local.child import start_fork_server
from mpevents.output.frames import DEFAULT_LEVELS, LEVELS, make_compress

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger("mpevents")


def _positive(text: str) -> int:
    return _whole(text, 1)


def _count(text: str) -> int:
    return _whole(text, 0)


def _whole(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a number of seconds, at least 0, got {text!r}")
    return value


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mpevents",
        description=(
            "Validate pipe-delimited event logs and write the valid records as JSON, one file per group, "
            "using one process per core. Rejected lines go to rejected.jsonl with their reason; "
            "summary.json accounts for every line."
        ),
        epilog="Exit codes: 0 done (rejected lines are data), 1 failure during the run, "
        "2 bad usage or input, 130 interrupted (SIGINT), 143 terminated (SIGTERM).",
    )
    _add_run_options(parser)
    _add_schema_options(parser)
    _add_limit_options(parser)
    _add_incremental_options(parser)
    _add_display_options(parser)
    _add_engine_options(parser)
    add = parser.add_argument
    add(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="what the log shows (default: WARNING)",
    )
    add("--debug", action="store_true", help="show tracebacks for errors")
    add("--version", action="version", version=f"mpevents {__version__}")
    return parser


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """What is read and written, and by how many processes."""
    add = parser.add_argument
    add(
        "--input",
        default=str(DEFAULT_INPUT),
        metavar="DIR",
        help=f"directory whose matching files are read (default: {DEFAULT_INPUT}); with --engine dask also a URL "
        "such as s3://bucket/prefix/",
    )
    add(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help=f"directory for group-<value>.jsonl (records.jsonl without group_by), rejected.jsonl and "
        "summary.json; replaced atomically "
        f"at the end of a successful run (default: {DEFAULT_OUTPUT})",
    )
    add(
        "--worker-number",
        "-n",
        dest="workers",
        type=_positive,
        default=usable_cores(),
        metavar="N",
        help=f"worker processes that check and encode lines (default: the cores this process may use, "
        f"here {usable_cores()})",
    )
    add(
        "--readers",
        type=_positive,
        default=DEFAULT_READERS,
        metavar="K",
        help=f"reader processes, each on one input file at a time (default: {DEFAULT_READERS})",
    )
    add(
        "--chunk-bytes",
        type=_size,
        default=DEFAULT_CHUNK_BYTES,
        metavar="B",
        help="size of the chunks of whole lines passed between processes: bytes, or with K, KiB, M, MiB, G "
        f"or GiB (powers of 1,024) (default: {DEFAULT_CHUNK_BYTES >> 20}MiB)",
    )
    add(
        "--compress",
        choices=sorted(LEVELS),
        help="write group-<id>.jsonl.zst (or .gz) and rejected.jsonl.zst (.gz), compressed by every worker; "
        "decompressed, the same bytes as without (zstd needs pip install 'mpevents[compressed]')",
    )
    add(
        "--compress-level",
        type=int,
        metavar="L",
        help=f"the level of --compress: zstd 1 to 22, gzip 1 to 9 "
        f"(default: zstd {DEFAULT_LEVELS['zstd']}, gzip {DEFAULT_LEVELS['gzip']})",
    )
    add(
        "--pattern",
        dest="patterns",
        action="append",
        metavar="GLOB",
        help="which file names in the input directory to read; give it more than once for several; "
        f"names ending in .gz or .zst are decompressed (default: {' '.join(DEFAULT_PATTERNS)})",
    )


def _add_schema_options(parser: argparse.ArgumentParser) -> None:
    """The record format."""
    add = parser.add_argument
    add(
        "--schema",
        type=Path,
        metavar="FILE",
        help="the record format, a TOML file: delimiter, fields and their types, group_by (default: the "
        "built-in v1, id|log|event|user|value|group_id|timestamp)",
    )
    add("--print-schema", action="store_true", help="print the schema in effect as TOML and exit")
    add(
        "--infer-schema",
        type=Path,
        metavar="FILE",
        help="print a draft schema for the log FILE, from its first 10,000 lines, and exit",
    )


def _add_limit_options(parser: argparse.ArgumentParser) -> None:
    """Retries, files still being written, and what survives an interruption or a power loss."""
    add = parser.add_argument
    add(
        "--max-retries",
        type=_count,
        default=DEFAULT_MAX_RETRIES,
        metavar="R",
        help="times a chunk (a file's reader, the pipeline) is retried after a failure; "
        f"its next failure fails the run; 0: none (default: {DEFAULT_MAX_RETRIES})",
    )
    # Accepted so that scripts written for earlier versions still run: no
    # process keeps group files open any more (a placing opens one at a
    # time), so it has nothing left to limit; it says so in one warning.
    add("--max-open-files", type=_positive, default=None, metavar="F", help=argparse.SUPPRESS)
    add(
        "--settle",
        type=_seconds,
        default=DEFAULT_SETTLE_S,
        metavar="SECONDS",
        help="a file's last line without a line end is read only if the file was last modified at least this "
        f"long before: it may still be being written (default: {DEFAULT_SETTLE_S:g}; 0 reads every last line)",
    )
    add(
        "--resume",
        action="store_true",
        help="journal progress, keep it when the run is interrupted, and go on from there in the next "
        "--resume run on the same input and output",
    )
    add(
        "--fsync",
        action="store_true",
        help="sync every output file and directory to disk around the final swap, so that after a power "
        "loss the output is the old one or the new one, whole",
    )


def _add_incremental_options(parser: argparse.ArgumentParser) -> None:
    """Logs that keep coming: read only what is new, once, or on and on."""
    add = parser.add_argument
    add(
        "--incremental",
        action="store_true",
        help="read only the input the output has not read yet (new files, new lines, rotated files known by "
        "their first bytes) and append its records to the output in place; the first run is a full one",
    )
    add(
        "--follow",
        action="store_true",
        help="--incremental, then keep reading what is new every --interval, a committed batch at a time, "
        "until SIGINT or SIGTERM (which commit the batch at hand)",
    )
    add(
        "--interval",
        type=_seconds,
        default=DEFAULT_INTERVAL_S,
        metavar="SECONDS",
        help=f"with --follow: how often the input directory is looked at (default: {DEFAULT_INTERVAL_S:g})",
    )


def _add_display_options(parser: argparse.ArgumentParser) -> None:
    """What the run shows while it runs, and the profiles it writes."""
    add = parser.add_argument
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--quiet", "-q", action="store_true", help="print errors only")
    shown.add_argument(
        "--no-progress", action="store_true", help="no live dashboard or progress lines; still print the final summary"
    )
    add(
        "--cpu-profile",
        action="store_true",
        help="profile every process with cProfile into cpu-<role>-<index>.prof, merged into cpu-all.prof",
    )
    add(
        "--mem-profile",
        action="store_true",
        help="trace every process's allocations with tracemalloc into mem-<role>-<index>.snapshot",
    )
    add(
        "--trace",
        action="store_true",
        help="write trace.json into --profile-dir: a timeline of every process (Chrome trace format; open it in "
        "ui.perfetto.dev, chrome://tracing or vizviewer)",
    )
    add(
        "--profile-dir",
        type=Path,
        default=DEFAULT_PROFILE_DIR,
        metavar="DIR",
        help=f"where profiles go (default: {DEFAULT_PROFILE_DIR})",
    )


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Where the workers run."""
    add = parser.add_argument
    add(
        "--engine",
        choices=["local", "dask"],
        default="local",
        help="where the workers run: local processes (default), or tasks on a Dask cluster "
        "(needs pip install 'mpevents[dask]')",
    )
    add(
        "--scheduler",
        metavar="ADDRESS",
        help="with --engine dask: the scheduler to use, e.g. tcp://host:8786 "
        "(default: a local cluster of --worker-number processes)",
    )


def check_platform() -> None:
    """Refuse, in one line, a system the pipeline cannot run on: it forks its
    children from a fork server, watches main through a pidfd, reads /proc
    and swaps the output in with renameat2, all of them Linux's."""
    if not sys.platform.startswith("linux"):
        raise UsageError(
            "mpevents runs on Linux only (it needs its fork server, pidfds, /proc and renameat2); "
            f"this is {sys.platform}"
        )


def config_from_args(args: argparse.Namespace) -> Config:
    if args.max_open_files is not None:
        log.warning("--max-open-files has no effect: no process keeps group files open (each opens one at a time)")
    progress = "quiet" if args.quiet else "off" if args.no_progress else "auto"
    return Config(
        input_dir=Path(args.input),
        input_url=args.input if is_url(args.input) else None,
        output_dir=args.output,
        workers=args.workers,
        readers=args.readers,
        chunk_bytes=args.chunk_bytes,
        patterns=tuple(args.patterns) if args.patterns else DEFAULT_PATTERNS,
        max_retries=args.max_retries,
        progress=progress,
        cpu_profile=args.cpu_profile,
        mem_profile=args.mem_profile,
        profile_dir=args.profile_dir,
        debug=args.debug,
        engine=args.engine,
        scheduler=args.scheduler,
        fsync=args.fsync,
        resume=args.resume,
        trace=args.trace,
        settle=args.settle,
        incremental=args.incremental or args.follow,
        follow=args.follow,
        interval=args.interval,
        schema=load(args.schema) if args.schema is not None else V1,
        compress=make_compress(args.compress, args.compress_level),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``mpevents`` and ``python -m mpevents``; returns the exit code."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        check_platform()
        args = build_parser().parse_args(argv)
        if args.infer_schema is not None:
            sys.stdout.write(to_toml(infer_file(args.infer_schema)))
            return EXIT_OK
        config = config_from_args(args)
        if args.print_schema:
            sys.stdout.write(to_toml(config.schema))
            return EXIT_OK
        files = check(config)
        if config.engine == "local":
            # Now, while this process is single-threaded: the server is forked
            # from it (see start_fork_server), and imports the rest of the
            # pipeline while this process imports the supervisor.
            start_fork_server()
        _setup_logging("ERROR" if args.quiet else args.log_level)  # --quiet: errors only
        if config.follow:
            from mpevents._follow import follow

            return follow(config, files)
        from mpevents._run import run

        observer = None
        if config.progress == "auto":  # rich is imported only when there is something to draw
            from mpevents.observe.dashboard import make_observer

            observer = make_observer(config)
        summary = run(config, observer, files)
        if summary is None:
            if config.progress != "quiet":
                print(f"mpevents: nothing new in {config.input_dir}; {config.output_dir} left as it was")
        elif config.progress != "quiet":
            from mpevents.observe.dashboard import print_summary

            print_summary(summary, config)
        return EXIT_OK
    except Interrupted as exc:
        _say(f"mpevents: {exc}")
        return exc.code
    except MpeventsError as exc:
        _say(f"mpevents: error: {exc}", debug=debug)
        return exc.exit_code
    except KeyboardInterrupt:
        _say("mpevents: interrupted")
        return EXIT_SIGINT
    except Exception as exc:  # a bug: still one line, unless --debug asks for more
        _say(f"mpevents: internal error: {type(exc).__name__}: {exc}", " (--debug shows where)", debug=debug)
        return EXIT_FAILURE


ERROR_CHARS: Final = 300
"""The longest error line: enough for a path, a cause and a hint; a message
longer than that (Dask's once named 3,889 futures, 180 KB) is cut."""


WARNING_CHARS: Final = 1000
"""The longest warning line: warnings name files, whose paths may be long."""


def one_line(text: str, hint: str = "", limit: int = ERROR_CHARS) -> str:
    """``text`` as one line of at most ``limit`` characters, ``hint`` included:
    its lines joined, runs of white space made one space, and its start kept
    (where the first cause is named) when it is too long."""
    flat = " ".join(text.split())
    if len(flat) + len(hint) <= limit:
        return flat + hint
    hint = hint or " (--debug shows all)"
    return flat[: limit - len(hint) - 1].rstrip() + "…" + hint


def _say(text: str, hint: str = "", *, debug: bool = False) -> None:
    """Print an error as one line on stderr; with ``debug``, its traceback first."""
    console = _error_console()
    if debug:
        console.print_exception()
    console.print(one_line(text, hint), markup=False)


def _error_console() -> Console:
    """A console on stderr, made only when there is something to say: rich
    takes a twentieth of a second to import, before the first child can start."""
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class _LineFormatter(logging.Formatter):
    """``mpevents: warning: ...``, the way errors are written."""

    def format(self, record: logging.LogRecord) -> str:
        return f"mpevents: {record.levelname.lower()}: {record.getMessage()}"


class _RichOnFirstRecord(logging.Handler):
    """Passes records to a handler made for the first one; most runs log nothing.

    On a terminal that is a RichHandler. In a pipe or a file each record is
    one plain line, however long: whoever reads it greps it, and Rich would
    fold it at 80 columns (a long file name made a warning two lines)."""

    def __init__(self) -> None:
        super().__init__()
        self._handler: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # One line too, whatever the message holds (a Dask error's traceback
        # text, say): joined, and cut where it is very long.
        record.msg, record.args = one_line(record.getMessage(), limit=WARNING_CHARS), None
        if self._handler is None:
            if sys.stderr.isatty():
                from rich.logging import RichHandler

                self._handler = RichHandler(console=_error_console(), show_path=False, show_time=False, markup=False)
            else:
                self._handler = logging.StreamHandler(sys.stderr)
                self._handler.setFormatter(_LineFormatter())
        self._handler.handle(record)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(message)s", handlers=[_RichOnFirstRecord()], force=True)


def main_exit() -> NoReturn:
    """Console-script entry point (and ``python -m mpevents``): exit with
    :func:`main`'s code."""
    code = main()
    main_thread = threading.main_thread()
    if any(not thread.daemon for thread in threading.enumerate() if thread is not main_thread):
        sys.exit(code)  # the interpreter's exit waits for them
    # The exit hooks (the pipeline's queues and locks, logging) and a flush
    # are all an exit needs here: the interpreter's teardown, freeing every
    # object and module one by one, took 15 ms and more at the end of a run.
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe, a closed file
            stream.flush()
    os._exit(code)
