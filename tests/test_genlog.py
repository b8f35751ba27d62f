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
