"""What every child sets up for itself (``_child``)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

# Allocate, free and allocate again 8 MiB, as a worker does for each chunk;
# print the page faults of the second allocation.
_REUSE = """
import resource, sys
from mpevents._child import _keep_freed_memory
if sys.argv[1] == "keep":
    _keep_freed_memory()
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
