"""Run as ``python -m tests._fork_probe {this-python|other-python}``: start the
fork server as the command line does, start one child through it, and print
how the server was started and the child's parent's command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mpevents.local import child as _child


def report(connection: Any) -> None:
    connection.send(Path(f"/proc/{os.getppid()}/cmdline").read_bytes().replace(b"\0", b" ").decode())


if __name__ == "__main__":
    if sys.argv[1] == "other-python":
        _child.FORKED_SERVER_PYTHONS = ()  # type: ignore[misc]
    how = _child.start_fork_server()
    ctx = _child.context()
    parent, child = ctx.Pipe()
    process = ctx.Process(target=report, args=(child,))
    process.start()
    title = parent.recv()
    process.join(30)
    print(how)
    print(title)
    sys.exit(process.exitcode)
