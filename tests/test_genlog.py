"""scripts/genlog.sh: the corpora every benchmark and many tests are built from."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import REPO, genlog


def test_genlog_writes_seed_shaped_lines(tmp_path: Path) -> None:
    path = genlog(tmp_path / "g.log", 1000, groups=5)
    lines = path.read_bytes().splitlines()
    assert len(lines) == 1000
    assert lines[0].startswith(b"1|log")
    for line in lines:
        fields = line.split(b"|")
        assert len(fields) == 7 and fields[2:4] == [b"appsetup", b"tom"]
        assert 0 <= int(fields[4]) <= 32767 and 1 <= int(fields[5]) <= 5
    bad = subprocess.run(
        [str(REPO / "scripts" / "genlog.sh"), str(tmp_path / "x.log"), "many"], check=False, capture_output=True
    )
    assert bad.returncode == 2 and b"LINES" in bad.stderr


def test_genlog_writes_lines_for_any_schema_with_the_real_mix(tmp_path: Path) -> None:
    from mpevents.core.schema import load
    from tests._reference import schema_parse

    schema = load(REPO / "scripts" / "schemas" / "wide.toml")
    path = tmp_path / "w.log"
    command = [str(REPO / "scripts" / "genlog.sh"), "--schema", str(REPO / "scripts" / "schemas" / "wide.toml")]
    subprocess.run([*command, str(path), "4000", "7"], check=True)
    data = path.read_bytes()
    lines, _, groups, rejects = schema_parse(schema, data)
    assert lines == 4000 and 0 < len(rejects) < 60  # one in 200 broken, about
    assert len(groups) == 7 and not data.isascii() and b'"' in data and b"\\" in data
    assert b"||" in data  # the optional trace left empty
    subprocess.run([*command, str(tmp_path / "again.log"), "4000", "7"], check=True)
    assert (tmp_path / "again.log").read_bytes() == data
