"""The spool: compressed spans' bytes handed from readers to workers through files."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mpevents.core.framing import Flag, Span
from mpevents.local import spool as _spool
from mpevents.local.spool import Spool
from mpevents.output.names import SPOOL_PREFIX
from tests.conftest import RUN_TIMEOUT_S, genlog, run_cli, start_cli, tree

SPAN = Span(0, 3, 100, 200, Flag.NONE)


@pytest.fixture
def ram(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in for /dev/shm."""
    directory = tmp_path / "shm"
    directory.mkdir()
    monkeypatch.setattr(_spool, "RAM_DIRECTORY", str(directory))
    return directory


def test_a_span_put_is_taken_once_and_then_gone(ram: Path, tmp_path: Path) -> None:
    spool = Spool.make(tmp_path, workers=2, readers=1, chunk_bytes=1 << 20)
    assert Path(spool.directory).parent == ram
    spool.put(SPAN, b"1|a|b|c|1|1|1\n")
    assert spool.take(SPAN) == b"1|a|b|c|1|1|1\n"
    assert spool.take(SPAN) is None  # taken: a second copy of the span decompresses again
    assert os.listdir(Path(spool.directory) / _spool.INPUTS) == []
    spool.remove()
    assert not Path(spool.directory).exists()


def test_a_reader_waits_while_the_spool_is_full(ram: Path, tmp_path: Path) -> None:
    spool = Spool.make(tmp_path, workers=1, readers=0, chunk_bytes=1 << 20)
    assert spool.limit == _spool.CHUNKS_PER_WORKER
    spans = [Span(0, seq, 0, 1, Flag.NONE) for seq in range(spool.limit + 1)]
    for span in spans[:-1]:
        spool.put(span, b"x\n")
    last = threading.Thread(target=spool.put, args=(spans[-1], b"y\n"), daemon=True)
    last.start()
    time.sleep(0.2)
    assert last.is_alive()  # full: waiting for a worker
    assert spool.take(spans[0]) == b"x\n"
    last.join(timeout=10)
    assert not last.is_alive()
    assert spool.take(spans[-1]) == b"y\n"


def test_a_spool_of_a_run_that_is_gone_is_removed_and_a_live_one_kept(ram: Path, tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    stale = ram / f"{SPOOL_PREFIX}{int(gone.stdout)}-abc"
    # A live mpevents process's spool, as a run of an earlier version (which held none) leaves it:
    # a stand-in whose command line names mpevents, as every run's does.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "mpevents"]) as earlier:
        try:
            # Popen returns once the exec began; its arguments are in /proc a moment later.
            cmdline = Path(f"/proc/{earlier.pid}/cmdline")
            deadline = time.monotonic() + 10
            while b"mpevents" not in cmdline.read_bytes() and time.monotonic() < deadline:
                time.sleep(0.01)
            unheld = ram / f"{SPOOL_PREFIX}{earlier.pid}-ghi"
            for directory in (stale, unheld):
                directory.mkdir()
                (directory / "0-1").write_bytes(b"left behind")
            live = Spool.make(tmp_path, workers=1, readers=1, chunk_bytes=1 << 10)  # held by this process
            _spool.remove_stale()
            assert not stale.exists()
            assert Path(live.directory).exists() and unheld.exists()
            live.remove()
        finally:
            earlier.kill()


def test_a_ram_directory_without_room_for_the_spool_is_passed_over(ram: Path, tmp_path: Path) -> None:
    room = os.statvfs(ram)
    free = room.f_bavail * room.f_frsize
    spool = Spool.make(tmp_path, workers=2, readers=2, chunk_bytes=free // 4)  # twice 6 chunks would not fit
    assert Path(spool.directory).parent == tmp_path


def test_without_a_ram_directory_the_spool_is_in_the_staging_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_spool, "RAM_DIRECTORY", str(tmp_path / "no-such-directory"))
    spool = Spool.make(tmp_path, workers=2, readers=2, chunk_bytes=1 << 20)
    assert Path(spool.directory).parent == tmp_path
    spool.put(SPAN, b"data\n")
    assert spool.take(SPAN) == b"data\n"


@pytest.mark.skipif(not os.access("/dev/shm", os.W_OK), reason="no /dev/shm here")
def test_a_compressed_run_leaves_no_spool_behind_and_removes_a_stale_one(tmp_path: Path) -> None:
    def spools() -> set[str]:
        return {name for name in os.listdir("/dev/shm") if name.startswith(SPOOL_PREFIX)}

    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "a.log", 4_000, groups=3)
    (inputs / "a.log.gz").write_bytes(gzip.compress((inputs / "a.log").read_bytes()))
    (inputs / "a.log").unlink()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    stale = Path("/dev/shm") / f"{SPOOL_PREFIX}{int(gone.stdout)}-stale"  # as a run killed outright leaves it
    stale.mkdir()
    (stale / "0-0").write_bytes(b"left behind")
    out = tmp_path / "out"
    process = start_cli("--input", inputs, "--output", out, "-n", "2", "--chunk-bytes", "8K", "-q")
    _, err = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 0, err
    assert sum(data.count(b"\n") for name, data in tree(out).items() if name.startswith("group-")) == 4_000
    assert not stale.exists()
    # Its own spool is gone (others', of runs going on beside this test, may come and go).
    assert not {name for name in spools() if name.startswith(f"{SPOOL_PREFIX}{process.pid}-")}


@pytest.mark.parametrize(
    ("point", "restarted"), [("worker_kill=0:1", "workers"), ("collector_kill=2", "pipeline"), (None, None)]
)
def test_small_and_big_chunks_give_the_same_output_also_after_a_death(
    tmp_path: Path, point: str | None, restarted: str | None
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "a.log", 30_000, groups=5)
    genlog(inputs / "b.log", 10_000, groups=3, seed=2)
    small, big = tmp_path / "small", tmp_path / "big"
    # 4 KiB chunks: hundreds of small blocks per part log; 512 KiB: over a MiB of records each.
    assert run_cli("--input", inputs, "--output", small, "-n", "1", "--chunk-bytes", "4K", "-q").returncode == 0
    env = {"MPEVENTS_FAILPOINTS": point} if point else None
    result = run_cli("--input", inputs, "--output", big, "-n", "2", "--chunk-bytes", "512K", "-q", env=env)
    assert result.returncode == 0, result.stderr
    assert tree(big) == tree(small)
    if restarted is not None:
        summary = json.loads((big / "summary.json").read_bytes())
        assert summary["restarts"][restarted] >= 1
