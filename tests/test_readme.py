"""The README's library example runs as written (doctest), from the checkout's root."""

from __future__ import annotations

import doctest
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(120)
def test_readme_library_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The example reads data/input into data/output, relative to where it runs:
    # run it in a copy so that the checkout's own output is left alone.
    shutil.copytree(REPO / "data" / "input", tmp_path / "data" / "input")
    monkeypatch.chdir(tmp_path)
    result = doctest.testfile(str(REPO / "README.md"), module_relative=False, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 5
    assert result.failed == 0
    assert os.path.exists(tmp_path / "data" / "output" / "summary.json")
