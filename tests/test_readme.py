"""The README's library example runs as written (doctest), from the checkout's root."""

from __future__ import annotations

import doctest
import os
import re
import shutil
from pathlib import Path

import pytest

from mpevents.output.names import group_file_name

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


def test_readme_schema_example_gives_the_record_it_shows() -> None:
    from mpevents.core.schema import parse
    from mpevents.core.spec import process_chunk

    text = (REPO / "README.md").read_text()
    schema = parse(re.search(r"\*\*Your own format\.\*\*.*?```toml\n(.*?)```", text, re.S).group(1))  # type: ignore[union-attr]
    line, name, record = re.search(r"\n`([^`]*)` becomes, in `([^`]*)`, `([^`]*)`\.\n", text).groups()  # type: ignore[union-attr]
    result = process_chunk(line.encode() + b"\n", schema=schema)
    ((group, (count, data)),) = result.groups.items()
    assert (group_file_name(group), count, data) == (name, 1, record.encode() + b"\n")
