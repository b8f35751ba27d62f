"""The Dask engine: same output as the local engine, also after losing a worker."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mpevents._config import InputFile
from mpevents._dask import place_parts, plan, task_bytes
from mpevents._framing import Flag
from mpevents._messages import Part
from tests.conftest import genlog, run_cli, temp_dirs, tree

pytest.importorskip("distributed", reason="the dask extra is not installed")

DASK_TIMEOUT_S = 240
"""A local Dask cluster starts slowly on a small machine; a hang still fails."""


@pytest.fixture(scope="module")
def local_output(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("local") / "out"
    assert run_cli("--input", corpus, "--output", out, "-q", "--chunk-bytes", "4K").returncode == 0
    return tree(out)


def test_plan_covers_every_file_in_order(tmp_path: Path) -> None:
    files = [
        InputFile(0, "a", str(tmp_path / "a"), 100),
        InputFile(1, "b", str(tmp_path / "b"), 0),
        InputFile(2, "c", str(tmp_path / "c"), 30),
    ]
    tasks = plan(files, 40)
    assert [(t.file, t.seq, t.start, t.end, bool(t.flags & Flag.LAST)) for t in tasks] == [
        (0, 0, 0, 40, False), (0, 1, 40, 80, False), (0, 2, 80, 100, True), (1, 0, 0, 0, True), (2, 0, 0, 30, True),
    ]  # fmt: skip


def test_dask_engine_gives_the_local_output(corpus: Path, tmp_path: Path, local_output: dict[str, bytes]) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "--input", corpus, "--output", out, "-n", "2", "--engine", "dask", "--chunk-bytes", "4K", "--no-progress",
        timeout=DASK_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert tree(out) == local_output
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["engine"] == "dask"
    assert summary["stages"]["workers_busy"] > 0  # from the time the tasks report
    assert summary["restarts"] == {"workers": 0, "readers": 0, "pipeline": 0}
    assert "mpevents summary" in result.stdout
    assert temp_dirs(tmp_path) == []


def test_a_lost_dask_worker_still_gives_the_local_output(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "x.log", 20_000, groups=4)
    genlog(inputs / "y.log", 20_000, groups=4, seed=2)
    local = tmp_path / "local"
    assert run_cli("--input", inputs, "--output", local, "-q", "--chunk-bytes", "8K").returncode == 0
    marker = tmp_path / "killed-once"
    out = tmp_path / "out"
    result = run_cli(
        "--input", inputs, "--output", out, "-n", "2", "-q", "--engine", "dask", "--chunk-bytes", "8K",
        env={"MPEVENTS_FAILPOINTS": f"dask_task_kill=y.log:0:{marker}"},  # the second file's first task
        timeout=DASK_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert marker.exists()  # a Dask worker process really died mid-run
    assert tree(out) == tree(local)
    assert json.loads((out / "summary.json").read_bytes())["restarts"]["workers"] >= 1


def test_dask_engine_without_the_extra_exits_2(corpus: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "distributed.py").write_text("raise ImportError('blocked for the test')\n")
    result = run_cli(
        "--input", corpus, "--output", tmp_path / "out", "--engine", "dask", env={"PYTHONPATH": str(blocker)}
    )
    assert result.returncode == 2
    assert "pip install 'mpevents[dask]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_an_unreachable_scheduler_is_a_usage_error(corpus: Path, tmp_path: Path) -> None:
    result = run_cli(
        "--input", corpus, "--output", tmp_path / "out", "--engine", "dask", "--scheduler", "tcp://127.0.0.1:1",
        timeout=DASK_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 2
    assert "cannot reach the Dask scheduler tcp://127.0.0.1:1" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() and temp_dirs(tmp_path) == []


def test_dask_engine_takes_a_compressed_file_as_one_task(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "x.log", 5_000, groups=4)
    (inputs / "x.log.gz").write_bytes(gzip.compress((inputs / "x.log").read_bytes()))
    local, out = tmp_path / "local", tmp_path / "out"
    assert run_cli("--input", inputs, "--output", local, "-q", "--chunk-bytes", "8K").returncode == 0
    result = run_cli(
        "--input", inputs, "--output", out, "-n", "2", "-q", "--engine", "dask", "--chunk-bytes", "8K",
        timeout=DASK_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert tree(out) == tree(local)
    summary = json.loads((out / "summary.json").read_bytes())
    assert summary["files"]["x.log.gz"]["lines"] == summary["files"]["x.log"]["lines"] == 5_000


def test_tasks_are_sized_for_about_eight_per_worker_within_bounds() -> None:
    mib = 1 << 20
    assert task_bytes(87 * mib, 2, mib) == 8 * mib  # small input: the floor, 8 chunks
    assert task_bytes(434 * mib, 2, mib) == 28 * mib  # ceil(434 / 16)
    assert task_bytes(434 * mib, 10, mib) == 8 * mib
    assert task_bytes(1 << 40, 100, mib) == 64 * mib  # the ceiling


def test_placing_parts_removes_them_and_a_second_run_writes_the_same_bytes(tmp_path: Path) -> None:
    parts = []
    for index, data in enumerate((b"first\n", b"second line\n", b"third\n")):
        path = tmp_path / f"part-{index}"
        path.write_bytes(data)
        parts.append(Part(str(path), len(data)))
    batch = [(0, parts[0]), (6, parts[1]), (18, parts[2])]
    target = tmp_path / "group-1.jsonl"
    assert place_parts(str(target), batch) == 24
    assert target.read_bytes() == b"first\nsecond line\nthird\n"
    assert not any(Path(part.path).exists() for part in parts)
    # Run again, as Dask does when the worker that ran it is lost: nothing to do.
    assert place_parts(str(target), batch) == 0
    assert target.read_bytes() == b"first\nsecond line\nthird\n"


def test_a_part_missing_before_one_that_is_there_fails_the_placing(tmp_path: Path) -> None:
    first, second = tmp_path / "part-0", tmp_path / "part-1"
    second.write_bytes(b"second\n")
    batch = [(0, Part(str(first), 6)), (6, Part(str(second), 7))]
    with pytest.raises(FileNotFoundError):
        place_parts(str(tmp_path / "group-1.jsonl"), batch[::-1])  # the missing part comes after one that is there
