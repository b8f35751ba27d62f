"""The Dask engine: same output as the local engine, also after losing a worker."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from mpevents.core.framing import Flag
from mpevents.core.inputs import InputFile
from mpevents.core.spec import ChunkResult
from mpevents.dask import tasks as _tasks
from mpevents.dask.engine import cancelled, plan, task_bytes
from mpevents.dask.tasks import PartsResult, _Parts, place_parts
from tests.conftest import genlog, real_traffic, run_cli, temp_dirs, tree

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


@pytest.mark.slow
def test_thousands_of_groups_give_the_local_output(tmp_path: Path) -> None:
    # 14 tasks over about 4,000 groups: one placing per task, 14 Dask futures,
    # not one per group and task or per group.
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.log").write_bytes(real_traffic(1, 6_000, groups=3_000))
    (inputs / "b.log").write_bytes(real_traffic(2, 2_000, groups=1_500))
    local, out = tmp_path / "local", tmp_path / "out"
    assert run_cli("--input", inputs, "--output", local, "-q", "--chunk-bytes", "4K").returncode == 0
    result = run_cli(
        "--input", inputs, "--output", out, "-n", "2", "-q", "--engine", "dask", "--chunk-bytes", "4K",
        timeout=DASK_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert tree(out) == tree(local)
    assert len(json.loads((out / "summary.json").read_bytes())["groups"]) > 2_500
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


def _task_parts(tmp_path: Path, chunks: list[dict[bytes, bytes]]) -> PartsResult:
    """What a task writes for chunks of records (group: NDJSON)."""
    parts = _Parts(str(tmp_path / "task.part"))
    for chunk in chunks:
        parts.add(ChunkResult(1, 0, {group: (data.count(b"\n"), data) for group, data in chunk.items()}, []))
    result = parts.finish()
    parts.close()
    return result


def test_placing_a_part_file_writes_each_group_at_its_offset_and_a_second_run_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_tasks, "HOLD_BYTES", 10)  # a run written every chunk or two: pieces of a group apart
    result = _task_parts(tmp_path, [{b"1": b"a1\n", b"2": b"b1\nb2\n"}, {b"2": b"b3\n"}, {b"1": b"a2\n", b"3": b"c\n"}])
    assert result.groups == {b"1": (2, 6), b"2": (3, 9), b"3": (1, 2)}
    (tmp_path / "group-2.jsonl").write_bytes(b"earlier\n")  # an earlier task's records
    offsets = [0, 8, 0]
    assert place_parts(result.path, str(tmp_path), offsets) == 17
    assert (tmp_path / "group-1.jsonl").read_bytes() == b"a1\na2\n"
    assert (tmp_path / "group-2.jsonl").read_bytes() == b"earlier\nb1\nb2\nb3\n"
    assert (tmp_path / "group-3.jsonl").read_bytes() == b"c\n"
    assert not Path(result.path).exists()
    # Run again, as Dask does when the worker that ran it is lost: nothing to do.
    assert place_parts(result.path, str(tmp_path), offsets) == 0
    assert (tmp_path / "group-2.jsonl").read_bytes() == b"earlier\nb1\nb2\nb3\n"


def test_a_part_file_cut_short_fails_the_placing(tmp_path: Path) -> None:
    result = _task_parts(tmp_path, [{b"1": b"x" * 100_000 + b"\n", b"2": b"y\n"}])
    with open(result.path, "r+b") as handle:
        handle.truncate(50_000)
    with pytest.raises(OSError, match="index"):
        place_parts(result.path, str(tmp_path), [0, 0])
    assert Path(result.path).exists()  # kept for another try


def test_a_task_without_records_has_no_part_file(tmp_path: Path) -> None:
    result = _task_parts(tmp_path, [{}])
    assert result.path == "" and not any(tmp_path.iterdir())


def test_dask_cancelled_futures_are_one_line_naming_the_cause() -> None:
    from distributed.client import CancelledFuturesGroup, FutureCancelledError, FuturesCancelledError

    lost = "scheduler-connection-lost"
    errors = [FutureCancelledError(f"place_parts-{index:032x}", lost, "Connection lost") for index in range(3889)]
    exc = FuturesCancelledError([CancelledFuturesGroup(errors, lost)])
    assert len(str(exc)) > 100_000  # what Dask would say
    assert cancelled(exc) == "3,889 Dask futures cancelled: the client lost its scheduler"
    assert cancelled(FutureCancelledError("k", "odd")) == "1 Dask future cancelled: Dask gives the reason 'odd'"


def test_a_failed_dask_run_exits_with_its_own_error_and_leaves_nothing(tmp_path: Path) -> None:
    # The collector fails writing the second task's result, after the first's
    # parts were handed on: stopping the engine must not hide that error.
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "x.log", 3_000, groups=4)
    genlog(inputs / "y.log", 3_000, groups=4, seed=2)
    out = tmp_path / "out"
    result = run_cli(
        "--input", inputs, "--output", out, "-n", "1", "-q", "--engine", "dask",
        env={"MPEVENTS_FAILPOINTS": "collector_write_error=1"}, timeout=DASK_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "No space left on device" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists() and temp_dirs(tmp_path) == []
