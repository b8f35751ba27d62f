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
