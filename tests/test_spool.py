"""The spool: compressed spans' bytes handed from readers to workers through files."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mpevents import _spool
from mpevents._framing import Flag, Span
from mpevents._spool import Spool
from tests.conftest import genlog, run_cli, tree

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
    assert os.listdir(spool.directory) == []
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
    stale = ram / f"{_spool.PREFIX}{int(gone.stdout)}-abc"
    live = ram / f"{_spool.PREFIX}{os.getpid()}-def"
    for directory in (stale, live):
        directory.mkdir()
        (directory / "0-1").write_bytes(b"left behind")
    _spool.remove_stale()
    assert not stale.exists()
    assert live.exists()


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
        return {name for name in os.listdir("/dev/shm") if name.startswith(_spool.PREFIX)}

    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "a.log", 4_000, groups=3)
    (inputs / "a.log.gz").write_bytes(gzip.compress((inputs / "a.log").read_bytes()))
    (inputs / "a.log").unlink()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    stale = Path("/dev/shm") / f"{_spool.PREFIX}{int(gone.stdout)}-stale"  # as a run killed outright leaves it
    stale.mkdir()
    (stale / "0-0").write_bytes(b"left behind")
    before = spools() - {stale.name}
    out = tmp_path / "out"
    result = run_cli("--input", inputs, "--output", out, "-n", "2", "--chunk-bytes", "8K", "-q")
    assert result.returncode == 0, result.stderr
    assert sum(data.count(b"\n") for name, data in tree(out).items() if name.startswith("group-")) == 4_000
    assert spools() <= before  # its own spool is gone, and so is the stale one
