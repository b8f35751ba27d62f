"""What every child process does first and last, whatever its role.

* names itself (``mpevents: worker 2``) so ``ps`` and ``top`` show each role;
* ignores SIGINT: Ctrl-C reaches the whole process group, and only the main
  process decides what an interrupt means;
* exits at once if the main process dies, even by SIGKILL, so that no child
  outlives the run;
* runs its body under the profilers that were asked for;
* turns an expected failure into one line on the error queue and a distinct
  exit code, so that main can tell "reported, do not retry" from a crash.

It also owns where children come from: the forkserver context, and for the
command line a fork server and a resource tracker forked from main at
start-up (``start_fork_server``).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import multiprocessing.context
import multiprocessing.queues
import os
import queue
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable
from multiprocessing import connection, forkserver, resource_tracker, util
from typing import Any, Final, ParamSpec

import setproctitle

from mpevents._config import Config
from mpevents.core.system import keep_freed_memory
from mpevents.observe import trace as _trace
from mpevents.observe.profiling import profiled

START_METHOD: Final = "forkserver"
"""Never the platform default: fork would copy main's threads and state, spawn
would re-import everything per child. The fork server forks children from a
small process that has imported the pipeline once."""
PIPELINE_MODULE: Final = "mpevents.local.preload"
"""Imports everything a child runs, then freezes it for the garbage collector."""
PRELOAD: Final = ["__main__", PIPELINE_MODULE]
"""What the fork server imports before forking. '__main__' too: otherwise
every child re-imports the main script (the console script imports the
CLI), a tenth of a second each."""

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


FORKED_SERVER_PYTHONS: Final[tuple[tuple[int, int], ...]] = ((3, 11), (3, 12), (3, 13))
"""The Python versions whose fork server and resource tracker internals
:func:`start_fork_server` was tested against (tests/test_child.py); on any
other, the standard start is used."""


def start_fork_server() -> str:
    """Start the fork server now, by forking this process (the command line's way).

    The stdlib starts its fork server and its resource tracker as fresh
    interpreters; the fork server then imports the pipeline: a fifth of a
    second before the first child can start, and another interpreter start
    (50 ms of CPU) in the middle of it. The command line calls this instead,
    early, while its process is still single-threaded and holds nothing but
    the pipeline's modules: a forked copy is the same clean process, ready at
    once. Each runs the stdlib's own loop; only the start differs. A library
    caller (:func:`run`) gets the stdlib's start, since its process may have
    threads that make a fork unsafe.

    Returns how the server was started: "forked", "standard" (another Python
    version, or internals not as expected) or "running" (already started).
    """
    context()
    server: Any = getattr(forkserver, "_forkserver", None)
    tracker: Any = getattr(resource_tracker, "_resource_tracker", None)
    if sys.version_info[:2] not in FORKED_SERVER_PYTHONS or not (
        all(hasattr(server, name) for name in _SERVER_STATE) and all(hasattr(tracker, name) for name in _TRACKER_STATE)
    ):
        forkserver.ensure_running()  # an interpreter whose internals may differ
        return "standard"
    if server._forkserver_pid is not None or tracker._fd is not None:
        return "running"
    sys.stdout.flush()  # or the forked copies could write what this process has buffered
    sys.stderr.flush()
    gc.freeze()  # all here lives to the end: no later collection, here or in a copy, walks it again
    with tracker._lock:  # first: the server and its children share it
        tracker_r, tracker_w = os.pipe()  # the tracker stops when every holder of tracker_w is gone
        tracker._pid = _fork("resource tracker", resource_tracker.main, tracker_r, close=tracker_w)
        os.close(tracker_r)
        tracker._fd = tracker_w
    with server._lock, socket.socket(socket.AF_UNIX) as listener:
        address = connection.arbitrary_address("AF_UNIX")  # type: ignore[attr-defined]
        listener.bind(address)
        if not util.is_abstract_socket_namespace(address):
            os.chmod(address, 0o600)
        listener.listen()
        alive_r, alive_w = os.pipe()  # the server stops when every holder of alive_w is gone
        preload = [PIPELINE_MODULE]  # not "__main__": this process's is the copy's already
        pid = _fork("fork server", forkserver.main, listener.fileno(), alive_r, preload, close=alive_w)
        os.close(alive_r)
        server._forkserver_address = address
        server._forkserver_alive_fd = alive_w
        server._forkserver_pid = pid
    return "forked"


_SERVER_STATE: Final = ("_lock", "_forkserver_address", "_forkserver_alive_fd", "_forkserver_pid")
_TRACKER_STATE: Final = ("_lock", "_fd", "_pid")
"""The stdlib's bookkeeping of its fork server and resource tracker (CPython
3.11 to 3.13) that :func:`start_fork_server` fills in, as their
``ensure_running`` would."""


def _fork(title: str, loop: Callable[..., object], *args: Any, close: int) -> int:
    """Fork a helper that runs ``loop(*args)`` until it returns; its pid.

    The copy closes ``close`` (the write end that tells it when to stop)
    and never returns into the caller's code.
    """
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        os.close(close)
        setproctitle.setproctitle(f"mpevents: {title}")
        loop(*args)
    except SystemExit:  # the fork server's way to stop: main has gone
        pass
    except BaseException:
        code = 1
    os._exit(code)


P = ParamSpec("P")


def run_child(
    role: str,
    index: int,
    title: str,
    main_pid: int,
    config: Config,
    errors: multiprocessing.queues.Queue[str],
    body: Callable[P, None],
    *args: P.args,
    **kwargs: P.kwargs,
) -> None:
    """Set the process up for ``role``, then call ``body(*args, **kwargs)``;
    an error it raises goes to ``errors`` as one line."""
    setproctitle.setproctitle(f"mpevents: {title}")
    keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_main(main_pid)
    if config.trace:
        _trace.start(config.profile_dir, title)
    try:
        with profiled(config, role, index + 1):  # files count from 1, like the titles
            body(*args, **kwargs)
        _trace.stop()
    except Exception as exc:  # reported as one line; --debug shows the traceback
        _trace.stop()
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
