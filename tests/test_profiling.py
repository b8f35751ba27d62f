"""--cpu-profile and --mem-profile through the real command: files that load, peaks in the summary."""

from __future__ import annotations

import json
import pstats
import tracemalloc
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.usefixtures("clean_processes")


def test_cpu_profiles_load_with_pstats(corpus: Path, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    result = run_cli("--input", corpus, "--output", tmp_path / "out", "-n", "2", "-q", "--cpu-profile",
                     "--profile-dir", profiles)  # fmt: skip
    assert result.returncode == 0, result.stderr
    names = {path.name for path in profiles.glob("cpu-*.prof")}
    assert {
        "cpu-main-1.prof",
        "cpu-collector-1.prof",
        "cpu-worker-2.prof",
        "cpu-worker-1.prof",
        "cpu-all.prof",
    } <= names
    assert any(name.startswith("cpu-reader-") for name in names)
    merged = pstats.Stats(str(profiles / "cpu-all.prof"))
    functions = {function for _, _, function in merged.stats}  # type: ignore[attr-defined]
    assert "process_chunk_parts" in functions and "collect" in functions


def test_memory_profiles_load_and_peaks_reach_the_summary(corpus: Path, tmp_path: Path) -> None:
    profiles = tmp_path / "profiles"
    out = tmp_path / "out"
    result = run_cli("--input", corpus, "--output", out, "-n", "2", "--mem-profile", "--profile-dir", profiles)
    assert result.returncode == 0, result.stderr
    snapshots = sorted(profiles.glob("mem-*.snapshot"))
    assert {path.name for path in snapshots} >= {"mem-worker-1.snapshot", "mem-collector-1.snapshot"}
    for path in snapshots:
        assert tracemalloc.Snapshot.load(str(path)).traces is not None
    memory = json.loads((out / "summary.json").read_bytes())["memory"]
    assert memory["processes"]["worker-1"]["peak_rss_kib"] > 1000
    assert memory["processes"]["main-1"]["peak_rss_kib"] > 1000
    assert memory["top_sites"] and "peak RSS" in result.stdout
