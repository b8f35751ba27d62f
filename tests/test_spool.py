"""The spool: compressed spans' bytes handed from readers to workers through files."""

from __future__ import annotations

import errno
import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mpevents.core import system as _system
from mpevents.core.framing import Flag, Span
from mpevents.core.inputs import InputFile
from mpevents.core.spec import process_chunk, process_chunk_parts
from mpevents.local import collector as _collector
from mpevents.local import spool as _spool
from mpevents.local.collector import GroupFiles, local_collector
from mpevents.local.ledger import Ledger
from mpevents.local.messages import Result, SpooledResult
from mpevents.local.spool import Spool, open_result
from mpevents.observe.board import Board
from mpevents.output.names import SPOOL_PREFIX, group_file_name
from tests.conftest import RUN_TIMEOUT_S, genlog, real_traffic, run_cli, start_cli, tree

SPAN = Span(0, 3, 100, 200, Flag.NONE)


def spool_result(spool: Spool, span: Span, data: bytes) -> SpooledResult | None:
    """The result of ``data`` spooled as a worker spools it: parts written
    as they are made, then the rest; None if the spool cannot take it."""
    writer = spool.result_writer(span)
    return writer.finish(process_chunk_parts(data, on_flush=writer.write))


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


def test_a_result_waits_in_the_spool_group_after_group(ram: Path, tmp_path: Path) -> None:
    spool = Spool.make(tmp_path, workers=2, readers=1, chunk_bytes=1 << 20)
    # More groups than one writev takes, so the writes go in several calls.
    data = b"".join(b"%d|a|b|c|1|%d|1\n" % (i, i) for i in range(_system._IOV_MAX + 500))
    spooled = spool_result(spool, SPAN, data)
    result = process_chunk(data)
    assert spooled is not None
    assert spooled.groups == {group: (count, len(records)) for group, (count, records) in result.groups.items()}
    assert (spooled.lines, spooled.blank, spooled.rejects) == (result.lines, result.blank, result.rejects)
    with open_result(spooled) as fd:
        assert os.read(fd, 1 << 20) == b"".join(records for _, records in result.groups.values())
    assert not Path(spooled.path).exists()  # removed once used


def test_a_result_is_written_as_its_parts_are_made(ram: Path, tmp_path: Path) -> None:
    spool = Spool.make(tmp_path, workers=2, readers=1, chunk_bytes=1 << 20)
    data = real_traffic(3, 12_000, groups=4)
    writer = spool.result_writer(SPAN)
    result = process_chunk_parts(data, on_flush=writer.write)
    assert writer.started  # parts written before the chunk's end
    spooled = writer.finish(result)
    assert spooled is not None
    assert len(spooled.parts) > len(spooled.groups)  # the groups took turns in the file
    out = tmp_path / "out"
    out.mkdir()
    files = GroupFiles(out, 2)
    with open_result(spooled) as fd:
        files.send_all(fd, spooled.parts)
    files.close()
    whole = process_chunk(data).groups
    assert tree(out) == {group_file_name(group): records for group, (_, records) in whole.items()}
    assert spooled.groups == {group: (count, len(records)) for group, (count, records) in whole.items()}


def test_a_result_whose_writing_fails_midway_goes_as_it_is(
    ram: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = Spool.make(tmp_path, workers=2, readers=1, chunk_bytes=1 << 20)
    writes: list[int] = []

    def write_then_fail(fd: int, buffers: list[bytes]) -> None:
        if writes:
            raise OSError(28, "No space left on device")
        writes.append(os.write(fd, b"".join(buffers)))

    monkeypatch.setattr(_spool, "write_all", write_then_fail)
    writer = spool.result_writer(SPAN)
    result = process_chunk_parts(real_traffic(3, 12_000, groups=4), on_flush=writer.write)
    assert writes and writer.finish(result) is None
    assert os.listdir(Path(spool.directory) / _spool.RESULTS) == []  # the part written is gone too


def test_a_result_the_spool_cannot_take_goes_as_it_is(ram: Path, tmp_path: Path) -> None:
    spool = Spool.make(tmp_path, workers=2, readers=1, chunk_bytes=1 << 20)
    (Path(spool.directory) / _spool.RESULTS).rmdir()  # as if it could not be written
    assert spool_result(spool, SPAN, b"1|a|b|c|1|1|1\n") is None


def test_spooled_results_are_written_in_order_with_direct_ones_and_dropped_repeats_removed(
    ram: Path, tmp_path: Path
) -> None:
    spool = Spool.make(tmp_path, workers=1, readers=1, chunk_bytes=1 << 20)
    out = tmp_path / "out"
    out.mkdir()
    chunks = [b"%d|a|b|c|1|%d|1\n" % (seq, seq % 2 + 1) * 3 for seq in range(4)]
    results = [process_chunk(chunk) for chunk in chunks]
    spans = [Span(0, seq, 0, 1, Flag.LAST if seq == 3 else Flag.NONE) for seq in range(4)]
    messages = []
    for seq in range(4):
        spooled = spool_result(spool, spans[seq], chunks[seq]) if seq % 2 else None  # every other one spooled
        messages.append(Result(spans[seq], spooled or results[seq]))
    repeat = spool_result(spool, spans[1], chunks[1])
    assert repeat is not None
    files = [InputFile(0, "a.log", str(tmp_path / "a.log"), 0)]
    collector = local_collector(files, out, 16, Board(1, 1), Ledger(1, 1))
    for message in [messages[3], messages[1], messages[0], Result(spans[1], repeat), messages[2]]:
        collector.add(message.span, message.result)
    assert collector.done
    collector.close()
    for group in (b"1", b"2"):
        expected = b"".join(result.groups[group][1] for result in results if group in result.groups)
        assert (out / f"group-{group.decode()}.jsonl").read_bytes() == expected
    assert os.listdir(Path(spool.directory) / _spool.RESULTS) == []  # written ones and the dropped repeat


@pytest.mark.parametrize("kernel_copy", [True, False], ids=["sendfile", "no sendfile"])
def test_group_files_take_bytes_and_spool_ranges_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel_copy: bool
) -> None:
    if not kernel_copy:  # as between files where the kernel cannot copy: they are read instead

        def no_sendfile(*args: object) -> int:
            raise OSError(errno.EINVAL, "sendfile: not between these files")

        monkeypatch.setattr(os, "sendfile", no_sendfile)
    source = tmp_path / "spooled"
    source.write_bytes(b"xxSECONDyy")
    files = GroupFiles(tmp_path, 1)
    files.write(b"1", b"first;")
    fd = os.open(source, os.O_RDONLY)
    try:
        files.send(b"1", fd, 2, 6)
        with pytest.raises(OSError, match="shorter"):
            files.send(b"3", fd, 8, 5)  # 2 bytes there, not 5
    finally:
        os.close(fd)
    files.write(b"2", b"other")  # closes group 1 (limit 1): reopened at its end below
    files.write(b"1", b";third")
    files.close()
    assert (tmp_path / "group-1.jsonl").read_bytes() == b"first;SECOND;third"


def test_group_files_take_a_spooled_result_part_by_part_small_or_big(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_collector, "_SEND_BYTES", 4)  # parts of 4 bytes or more: copied in the kernel
    source = tmp_path / "spooled"
    source.write_bytes(b"ab" + b"CDEFG" + b"h" + b"IJKL")
    files = GroupFiles(tmp_path, 1)  # one open at a time: every change of group closes one
    files.write(b"2", b"2:")
    fd = os.open(source, os.O_RDONLY)
    try:
        files.send_all(fd, [(b"1", 2), (b"2", 5), (b"1", 1), (b"3", 4)])
    finally:
        os.close(fd)
    files.write(b"1", b";")
    files.close()
    written = {name: data for name, data in tree(tmp_path).items() if name.startswith("group-")}
    assert written == {"group-1.jsonl": b"abh;", "group-2.jsonl": b"2:CDEFG", "group-3.jsonl": b"IJKL"}


@pytest.mark.parametrize(
    ("point", "restarted"), [("worker_kill=0:1", "workers"), ("collector_kill=2", "pipeline"), (None, None)]
)
def test_spooled_results_give_the_output_of_small_ones_also_after_a_death(
    tmp_path: Path, point: str | None, restarted: str | None
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "a.log", 30_000, groups=5)
    genlog(inputs / "b.log", 10_000, groups=3, seed=2)
    small, big = tmp_path / "small", tmp_path / "big"
    # 4 KiB chunks: results far below SPOOL_RESULT_BYTES; 512 KiB: over a MiB of records each, spooled.
    assert run_cli("--input", inputs, "--output", small, "-n", "1", "--chunk-bytes", "4K", "-q").returncode == 0
    env = {"MPEVENTS_FAILPOINTS": point} if point else None
    result = run_cli("--input", inputs, "--output", big, "-n", "2", "--chunk-bytes", "512K", "-q", env=env)
    assert result.returncode == 0, result.stderr
    assert tree(big) == tree(small)
    if restarted is not None:
        summary = json.loads((big / "summary.json").read_bytes())
        assert summary["restarts"][restarted] >= 1
