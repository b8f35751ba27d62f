"""Shared helpers: run the real command, build corpora, compare outputs."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import msgspec
import pytest

from mpevents._summary import Summary
from mpevents.core.spec import ChunkResult
from mpevents.observe.profiling import process_tree
from mpevents.output.names import PARTS_DIR
from mpevents.output.rejects import SpanRejects, encode

REPO = Path(__file__).resolve().parents[1]
# The reference parser lives in scripts/sequential.py (it is also the sequential baseline).
sys.path.insert(0, str(REPO / "scripts"))
GENLOG = REPO / "scripts" / "genlog.sh"
RUN_TIMEOUT_S = 90
"""Hard limit for one run of the command: a hang fails the test instead of CI."""
VOLATILE_SUMMARY_KEYS = (
    "elapsed_s", "lines_per_s", "workers", "engine", "restarts", "stages", "memory", "cpu_profile", "resumed_lines",
)  # fmt: skip


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Benchmarks run only when asked for (``make bench``), never in ``make test``."""
    if collection_path.name == "benchmarks" and not (
        config.getoption("benchmark_only") or config.getoption("benchmark_enable")
    ):
        return True
    return None


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--worker-number", type=int, default=2, help="workers for the pipeline benchmarks (like the Go -worker-number)"
    )


def run_cli(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = RUN_TIMEOUT_S, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m mpevents`` and wait for it, at most ``timeout`` seconds."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mpevents", *map(str, args)],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd or REPO,
    )


def start_cli(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "mpevents", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=REPO,
    )


def patched_cli(setup: str, *args: str | Path) -> list[str]:
    """The command line of a run whose main first runs ``setup`` (Python): for
    what a test cannot set from outside, such as a small /dev/shm or a crash at
    one chosen moment."""
    return [sys.executable, "-c", f"{setup}\nfrom mpevents._cli import main_exit\nmain_exit()", *map(str, args)]


def make_summary(**fields: object) -> Summary:
    """A summary with ``fields`` and plain defaults for the rest (for drawing it)."""
    base: dict[str, object] = {
        "tool": "mpevents", "totals": {}, "files": {}, "rejected_by_reason": {}, "groups": {}, "workers": 1,
        "engine": "local", "elapsed_s": 1.0, "lines_per_s": 0, "bytes_read": 0, "stages": {}, "restarts": {},
    }  # fmt: skip
    return msgspec.convert({**base, **fields}, Summary)


def genlog(path: Path, lines: int, groups: int = 3, seed: int = 1) -> Path:
    subprocess.run(
        [str(GENLOG), str(path), str(lines), str(groups)], check=True, env={**os.environ, "GENLOG_SEED": str(seed)}
    )
    return path


def fault_inputs(directory: Path, lines: int, groups: int, broken: int) -> Path:
    """The fault and resume tests' input: three genlog files of ``lines``
    lines in ``groups`` groups (seeds 1 to 3), then a fourth of ``broken``
    pairs of a valid line and a rejected one."""
    for seed in range(1, 4):
        genlog(directory / f"part-{seed}.log", lines, groups=groups, seed=seed)
    (directory / "part-4.log").write_bytes(b"1|a|b|c|1|1|1\nbad\n" * broken)
    return directory


def settled(directory: Path) -> Path:
    """Date every file in ``directory`` a minute back: files written just now
    by a test are finished, not still being written (``--settle``)."""
    then = time.time() - 60
    for path in directory.iterdir():
        if path.is_file():
            os.utime(path, (then, then))
    return directory


def tree(directory: Path) -> dict[str, bytes]:
    """Every file of an output directory; summary.json without its run-dependent keys."""
    files = {}
    for path in sorted(directory.iterdir()):
        data = path.read_bytes()
        if path.name == "summary.json":
            summary = json.loads(data)
            for key in VOLATILE_SUMMARY_KEYS:
                summary.pop(key, None)
            data = json.dumps(summary, sort_keys=True).encode()
        files[path.name] = data
    return files


# Orphans of the runs we start become our children (prctl PR_SET_CHILD_SUBREAPER),
# so that "nothing is left" can be checked among our own descendants only.
with contextlib.suppress(OSError, AttributeError):
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def mpevents_processes() -> list[tuple[int, str]]:
    """Our descendants that look like a run's: titled 'mpevents:' or a multiprocessing helper."""
    found = []
    for pid in process_tree(os.getpid()):
        entry = Path(f"/proc/{pid}")
        if pid == os.getpid() or pid in _own_helpers():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmdline.startswith("mpevents:") or ("multiprocessing" in cmdline and "mpevents" in cmdline):
            found.append((int(entry.name), cmdline.strip()))
    return found


def _own_helpers() -> set[int]:
    """The fork server and resource tracker of this pytest process, started by
    tests that use multiprocessing in-process: they live as long as it does."""
    from multiprocessing import forkserver, resource_tracker

    pids = {
        getattr(forkserver._forkserver, "_forkserver_pid", None),
        getattr(resource_tracker._resource_tracker, "_pid", None),
    }
    return {pid for pid in pids if pid is not None}


def wait_no_processes(timeout: float = 5.0) -> list[tuple[int, str]]:
    """Wait until no process of a run is left; return those still there."""
    deadline = time.monotonic() + timeout
    while True:
        left = mpevents_processes()
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.05)


def temp_dirs(parent: Path) -> list[Path]:
    return [path for path in parent.iterdir() if path.name.startswith(".mpevents-tmp-")]


def records_written(staging: Path) -> int:
    """About how many records a run has written into its staging directory so
    far: the lines of the workers' part logs, then of the group files placed
    from them (0 while a file is being made or the directory goes away)."""
    records = 0
    with contextlib.suppress(OSError):
        for path in [*staging.glob(f"{PARTS_DIR}/worker-*"), *staging.glob("group-*.jsonl")]:
            records += path.read_bytes().count(b"\n")
    return records


@pytest.fixture
def clean_processes() -> Iterator[None]:
    """Fail a test that leaves a process of the run behind."""
    yield
    assert wait_no_processes() == []


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small mixed corpus: generated files plus every kind of bad line."""
    directory = tmp_path_factory.mktemp("corpus")
    genlog(directory / "a.log", 3000, groups=5, seed=1)
    genlog(directory / "b.log", 2000, groups=3, seed=2)
    (directory / "c.log").write_bytes(
        b"\xef\xbb\xbf1|log|ev|u|1|1|1\r\n2|log|ev|u|2|2|2\r\n\r\n"
        b"bad line\r\n3|x|y|z|007|0001|3\r\n4|x|\t|z|1|1|1\n" + b"z" * 70_000 + b"\n5|x|y|z|1|1|1\r"
    )
    (directory / "d.log").write_bytes(b"")
    (directory / "e.log").write_bytes('9|é|"q"|back\\slash|-5|2|9\n'.encode() + b"\xff\xfe\n\n")
    (directory / "notes.txt").write_text("ignored\n")
    (directory / "sub.log").mkdir()
    return settled(directory)


def real_traffic(seed: int, count: int, groups: int = 200) -> bytes:
    """``count`` lines of real traffic, one in 75 broken, where they fall."""
    rng = random.Random(seed)
    names = ["tom", "José", "Łukasz", "山田太郎", "Иван", "Γιώργος", 'O"Brien', "CORP\\j", "🎉", "a\u2028b"]
    lines = [
        f"{i}|log{i % 7}|page view|{rng.choice(names)}|{rng.randint(-(10**6), 10**6)}|{group}|{i + 10**9}"
        for i, group in enumerate(rng.randint(1, groups) for _ in range(count))
    ]
    encoded = [line.encode() for line in lines]
    for index in rng.sample(range(count), count // 75):
        encoded[index] = rng.choice([b"", b"1|a|b", b"1|a||c|1|1|1", b"1|a|b\tc|d|1|1|1", b"x|a|b|c|1|1|1", b"\xff|"])
    return b"\n".join(encoded) + b"\n"


class Checked(NamedTuple):
    """A chunk's result as a payload that holds its records, its rejects
    encoded as a worker sends them (the collector core's tests)."""

    lines: int
    blank: int
    groups: dict[bytes, tuple[int, bytes]]
    rejects: SpanRejects


def checked(result: ChunkResult) -> Checked:
    return Checked(result.lines, result.blank, result.groups, encode(result.rejects))
