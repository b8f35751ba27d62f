"""Benchmarks of the whole pipeline on a generated corpus.

    pytest tests/benchmarks --benchmark-only --worker-number 4

like the Go original's ``go test -bench . -worker-number=4``. The dashboard
group compares a run drawing the live dashboard (into a terminal-like buffer)
with one without: its cost is the ratio of the two medians.
"""

from __future__ import annotations

from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mpevents import Config, Summary, run
from mpevents.observe.dashboard import LiveDashboard
from tests.conftest import genlog

LINES_PER_FILE = 250_000


@pytest.fixture(scope="module")
def big_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bench-corpus")
    for seed in range(1, 5):
        genlog(directory / f"part-{seed}.log", LINES_PER_FILE, seed=seed)
    return directory


@pytest.fixture
def workers(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--worker-number"))


def run_once(corpus: Path, output: Path, workers: int, dashboard: bool = False) -> Summary:
    observer = LiveDashboard(Console(file=StringIO(), force_terminal=True, width=120)) if dashboard else None
    return run(Config(input_dir=corpus, output_dir=output, workers=workers, progress="off"), observer)


@pytest.mark.benchmark(group="pipeline")
def test_pipeline(benchmark: Any, big_corpus: Path, tmp_path: Path, workers: int) -> None:
    summary = benchmark.pedantic(run_once, args=(big_corpus, tmp_path / "out", workers), rounds=3, iterations=1)
    assert summary.totals.valid == 4 * LINES_PER_FILE
    benchmark.extra_info["workers"] = workers
    benchmark.extra_info["lines_per_s"] = round(4 * LINES_PER_FILE / benchmark.stats.stats.median)


@pytest.mark.benchmark(group="dashboard")
@pytest.mark.parametrize("dashboard", [False, True], ids=["no-progress", "live-dashboard"])
def test_dashboard_cost(benchmark: Any, big_corpus: Path, tmp_path: Path, workers: int, dashboard: bool) -> None:
    summary = benchmark.pedantic(
        run_once, args=(big_corpus, tmp_path / "out", workers, dashboard), rounds=5, iterations=1
    )
    assert summary.totals.lines == 4 * LINES_PER_FILE
