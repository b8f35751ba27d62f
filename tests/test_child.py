"""What every child sets up for itself (``local.child``)."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from mpevents.local.child import FORKED_SERVER_PYTHONS
from tests.conftest import REPO

# Allocate, free and allocate again 8 MiB, as a worker does for each chunk;
# print the page faults of the second allocation.
_REUSE = """
import resource, sys
from mpevents.core.system import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
block = bytearray(8 << 20)
del block
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
block = bytearray(8 << 20)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's thresholds are glibc's")
def test_a_child_reuses_freed_memory_instead_of_faulting_it_in_again() -> None:
    def faults(mode: str) -> int:
        command = [sys.executable, "-c", _REUSE, mode]
        run = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    pages = (8 << 20) // 4096
    assert faults("default") > pages // 2  # glibc's defaults: handed back, faulted in again
    assert faults("keep") < pages // 20


@pytest.mark.parametrize("python", ["this-python", "other-python"])
def test_both_ways_of_starting_the_fork_server_start_children(python: str) -> None:
    if python == "this-python" and sys.version_info[:2] not in FORKED_SERVER_PYTHONS:
        pytest.skip("the forked fork server is used only on the versions it was tested on")
    command = [sys.executable, "-m", "tests._fork_probe", python]
    run = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 0, run.stderr
    how, parent_title = run.stdout.split("\n")[:2]
    assert how == ("forked" if python == "this-python" else "standard")
    # The forked server carries its title; the standard one is a fresh interpreter.
    assert ("mpevents: fork server" in parent_title) == (python == "this-python")


def test_children_import_nothing_as_they_start(tmp_path: Path) -> None:
    """Every module a child needs is in the fork server before it forks: main
    and the server import each once, and no child imports one again (each
    such import cost every child's start 8 ms)."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.log").write_bytes(b"1|log1|appsetup|tom|5|1|1587583122\n" * 100)
    command = [sys.executable, "-X", "importtime", "-m", "mpevents", "--input", str(source)]
    command += ["--output", str(tmp_path / "out"), "--quiet", "--worker-number", "2", "--readers", "2"]
    run = subprocess.run(command, check=False, capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 0, run.stderr
    imports: dict[str, int] = {}
    for line in run.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            imports[name] = imports.get(name, 0) + 1
    ours = {name: count for name, count in imports.items() if name.startswith(("mpevents", "multiprocessing"))}
    assert "mpevents.local.worker" in ours  # the imports were seen
    assert {name: count for name, count in ours.items() if count > 2} == {}
