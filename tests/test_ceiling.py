"""scripts/ceiling.py: the CPU of every thread of a run, and the ceiling it sets."""

from __future__ import annotations

from pathlib import Path

import ceiling
import pytest

from tests.conftest import genlog, settled

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_the_ceiling_is_the_worker_over_the_busiest_other_thread(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    genlog(inputs / "a.log", 300_000, groups=50)
    result = ceiling.measure(settled(inputs), tmp_path / "out", REPO, rounds=1, aside=tmp_path / "aside")
    processes = {thread["process"] for thread in result["threads"]}
    assert "worker 1" in processes and "main" in processes  # every process of the run, by its title
    assert result["worker_cpu_s"] > 0.05  # 300,000 lines are checked by the one worker (0.2-0.3 s here)
    others = [thread for thread in result["threads"] if not thread["process"].startswith("worker")]
    busiest = max(others, key=lambda thread: thread["cpu_s"])
    assert result["busiest"] == f"{busiest['process']} / {busiest['thread']}"
    assert result["ceiling"] == pytest.approx(result["worker_cpu_s"] / result["busiest_cpu_s"], abs=0.06)
    main = next(thread for thread in result["threads"] if thread["process"] == "main")
    assert 0 <= main["running_s"] < main["cpu_s"]  # its start-up came before the worker's
    running = max(others, key=lambda thread: thread["running_s"])
    assert result["busiest_running"] == f"{running['process']} / {running['thread']}"
    expected = result["worker_cpu_s"] / running["running_s"] if running["running_s"] else float("inf")
    assert result["ceiling_running"] == pytest.approx(expected, abs=0.06)
    # Each run starts with no output there: the one before is set aside, whole.
    assert not (tmp_path / "out").exists() and len(list((tmp_path / "aside").iterdir())) == 1
    ceiling.run_once(settled(inputs), tmp_path / "out", REPO, tmp_path / "aside")
    assert (tmp_path / "out" / "summary.json").exists() and len(list((tmp_path / "aside").iterdir())) == 1
    ceiling.run_once(settled(inputs), tmp_path / "out", REPO, tmp_path / "aside")
    outputs = list((tmp_path / "aside").iterdir())
    assert len(outputs) == 2 and all((output / "summary.json").exists() for output in outputs)
