"""--trace: trace.json, a timeline of every process of a real run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import genlog, run_cli

pytestmark = pytest.mark.usefixtures("clean_processes")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("logs")
    for seed in range(1, 4):
        genlog(directory / f"part-{seed}.log", 8_000, groups=4, seed=seed)
    return directory


def traced(logs: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Any, dict[str, Any]]:
    """Run with --trace; the trace's events and the summary."""
    out, profiles = tmp_path / "out", tmp_path / "profiles"
    result = run_cli(
        "--input", logs, "--output", out, "-q", "--chunk-bytes", "16K", "--trace", "--profile-dir", profiles, *args,
        env=env, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    trace = json.loads((profiles / "trace.json").read_bytes())  # valid JSON, whole
    assert list(profiles.iterdir()) == [profiles / "trace.json"]  # the per-process parts are merged and gone
    return trace["traceEvents"], json.loads((out / "summary.json").read_bytes())


def tracks(events: list[dict[str, Any]]) -> dict[int, str]:
    return {event["pid"]: event["args"]["name"] for event in events if event["ph"] == "M"}


def test_a_trace_has_a_track_per_process_and_a_span_per_chunk(logs: Path, tmp_path: Path) -> None:
    events, summary = traced(logs, tmp_path, "-n", "2")
    assert {event["ph"] for event in events} <= {"M", "X", "i"}
    assert all(event["dur"] >= 0 and event["ts"] > 0 for event in events if event["ph"] == "X")  # every span closed
    names = tracks(events)
    assert sorted(names.values()) == ["collector", "main", "reader 1", "reader 2", "reader 3", "worker 1", "worker 2"]
    checks = Counter(names[event["pid"]] for event in events if event["name"] == "check")
    assert [checks["worker 1"], checks["worker 2"]] == summary["stages"]["chunks_per_worker"]
    ordered = sum(1 for event in events if event["name"] == "order")
    assert ordered == sum(summary["stages"]["chunks_per_worker"])  # the collector took each chunk once
    placings = [names[event["pid"]] for event in events if event["name"] == "place"]
    # A placing per worker in each epoch (16 chunks' records, then the rest), by workers.
    assert len(placings) >= 2 and len(placings) % 2 == 0 and set(placings) <= {"worker 1", "worker 2"}
    check = next(event for event in events if event["name"] == "check")
    assert set(check["args"]) == {"file", "seq", "lines", "rejects"}
    assert any(event["name"] == "commit" and event["ph"] == "i" for event in events)
    # One clock: every span lies within main's run.
    main = [event for event in events if names.get(event["pid"]) == "main" and event["ph"] != "M"]
    assert all(event["ts"] <= max(m["ts"] for m in main) for event in events if event["ph"] == "X")


def test_a_killed_worker_shows_as_an_instant_and_its_replacement_as_a_new_track(logs: Path, tmp_path: Path) -> None:
    events, summary = traced(logs, tmp_path, "-n", "2", env={"MPEVENTS_FAILPOINTS": "worker_kill=1:2"})
    assert summary["restarts"]["workers"] == 1
    died = [event for event in events if event["ph"] == "i" and event["name"].endswith(" died")]
    assert len(died) == 1 and died[0]["name"].startswith("worker ")
    slot, dead = died[0]["name"].split()[1], died[0]["args"]["pid"]
    # The replacement has a track of its own. The dead one's events are those
    # it had flushed before it was killed: here, none.
    replacement = [pid for pid, name in tracks(events).items() if name == f"worker {slot}" and pid != dead]
    assert len(replacement) == 1
    assert any(event["name"] == "check" for event in events if event["pid"] == replacement[0])


def test_the_dask_engine_traces_each_task_on_its_workers_track(logs: Path, tmp_path: Path) -> None:
    events, _ = traced(logs, tmp_path, "-n", "2", "--engine", "dask")
    names = tracks(events)
    dask = {pid for pid, name in names.items() if name.startswith("dask worker ")}
    tasks = [event for event in events if event["name"] == "task"]
    assert dask and tasks and {event["pid"] for event in tasks} <= dask
    commit = next(event["ts"] for event in events if event["name"] == "commit")
    assert all(event["ts"] + event["dur"] <= commit + 1e6 for event in tasks)  # on main's clock, before the commit


def test_without_trace_nothing_is_written(logs: Path, tmp_path: Path) -> None:
    assert run_cli("--input", logs, "--output", tmp_path / "out", "-q", "--profile-dir", tmp_path / "p").returncode == 0
    assert not (tmp_path / "p").exists()
