"""scripts/bench.py's names for corpora and sizes, and its one-line errors."""

from __future__ import annotations

import subprocess
import sys

import bench
import pytest

from tests.conftest import REPO


@pytest.mark.parametrize(("size", "lines"), [("2M", 2_000_000), ("322K", 322_000), ("0M", 0), ("1x", 0), ("M", 0)])
def test_size_lines(size: str, lines: int) -> None:
    assert bench.size_lines(size) == lines


def test_corpus_name_gives_files_groups_and_compression() -> None:
    corpus = bench.Corpus.parse("real-2M-8f-1000g")
    assert (corpus.mix, corpus.lines, corpus.files, corpus.groups, corpus.suffix) == ("real", 2_000_000, 8, 1000, "")
    assert bench.Corpus.parse("template-1M-zst").suffix == ".zst"
    with pytest.raises(SystemExit, match="MIX-SIZE"):
        bench.Corpus.parse("real-2Q")


def test_bad_sequential_size_is_one_line_error() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--corpora", "", "--sequential-up-to", "1x"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "--sequential-up-to is a size like 2M" in done.stderr.splitlines()[-1]


def test_wall_ratios_give_the_ratio_of_medians_and_the_median_of_each_rounds_ratio() -> None:
    def row(walls: list[float]) -> dict[str, object]:
        return {"wall_s": sorted(walls)[1], "walls_s": walls, "peak_pss_mib": 60.0}

    # One slow round (the second) for N=2 alone: the medians are equal, but in
    # two rounds of three N=2 took a third longer than N=1 beside it.
    results = {"real-2M": {"mpevents N=1": row([2.0, 3.0, 1.5]), "mpevents N=2": row([1.0, 4.0, 2.0])}}
    ratios = bench.ratios(results)
    assert ratios["real-2M: scaling wall N=1 / N=2"] == 1.0
    assert ratios["real-2M: scaling wall N=1 / N=2, paired"] == 0.75
