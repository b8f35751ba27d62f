"""What every child process does first and last, whatever its role.

* names itself (``mpevents: worker 2``) so ``ps`` and ``top`` show each role;
* ignores SIGINT: Ctrl-C reaches the whole process group, and only the main
  process decides what an interrupt means;
* exits at once if the main process dies, even by SIGKILL, so that no child
  outlives the run;
* runs its body under the profilers that were asked for;
* turns an expected failure into one line on the error queue and a distinct
  exit code, so that main can tell "reported, do not retry" from a crash.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.context
import os
import queue
import select
import signal
import sys
import threading
from collections.abc import Callable
from multiprocessing import forkserver
from typing import Any, Final

import setproctitle

from ._config import Config
from ._profiling import profiled

START_METHOD: Final = "forkserver"
"""Never the platform default: fork would copy main's threads and state, spawn
would re-import everything per child. The fork server forks children from a
small process that has imported the pipeline once."""
PRELOAD: Final = ["__main__", "mpevents._preload"]
"""What the fork server imports before forking. '__main__' too: otherwise
every child re-imports the main script (the console script imports the CLI
and rich), a tenth of a second each."""

EXIT_REPORTED: Final = 3
"""A child that failed and put its reason on the error queue exits with this."""

EXIT_ORPHANED: Final = 4
"""A child whose main process is gone exits with this, at once."""


def _die_with_main(main_pid: int) -> None:
    """Exit as soon as the main process is gone, even if it was SIGKILLed.

    The parent of a child is the fork server, which outlives main while any
    child does, so the kernel's parent-death signal cannot help. A pidfd of
    main becomes readable when main exits; a daemon thread waits on it.
    """
    try:
        lifeline = os.pidfd_open(main_pid)
    except ProcessLookupError:
        os._exit(EXIT_ORPHANED)
    except (OSError, AttributeError):  # no pidfd (not Linux 5.3+): main reaps its children itself
        return

    def watch() -> None:
        select.select([lifeline], [], [])
        os._exit(EXIT_ORPHANED)

    threading.Thread(target=watch, name="mpevents-lifeline", daemon=True).start()


def context() -> multiprocessing.context.ForkServerContext:
    """The multiprocessing context every process of a run comes from."""
    ctx = multiprocessing.get_context(START_METHOD)
    assert isinstance(ctx, multiprocessing.context.ForkServerContext)
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def start_fork_server() -> None:
    """Start the fork server now, so its imports overlap with main's own."""
    context()
    forkserver.ensure_running()


def run_child(
    role: str,
    index: int,
    title: str,
    main_pid: int,
    config: Config,
    errors: Any,
    body: Callable[..., None],
    *args: Any,
) -> None:
    """Set the process up for ``role``, then call ``body(*args)``."""
    setproctitle.setproctitle(f"mpevents: {title}")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_main(main_pid)
    try:
        with profiled(config, role, index + 1):  # files count from 1, like the titles
            body(*args)
    except Exception as exc:  # reported as one line; --debug shows the traceback
        if isinstance(exc, OSError):
            where = f": {exc.filename}" if exc.filename else ""
            reason = f"{title}: {exc.strerror or exc}{where}"
        else:
            reason = f"internal error in {title}: {type(exc).__name__}: {exc} (--debug shows the traceback)"
        if config.debug:
            logging.getLogger("mpevents").exception(reason)
        with contextlib.suppress(queue.Full):
            errors.put(reason, timeout=1)
        errors.close()
        errors.join_thread()
        sys.stdout.flush()
        os._exit(EXIT_REPORTED)
