"""Packaging: the sdist and the wheel build, and the wheel alone makes a working command.

Builds both with ``python -m build`` (the wheel from the sdist, as an index
would), installs the wheel into a fresh virtual environment with nothing of
this checkout on its path, and runs the installed ``mpevents`` there. The
wheel must hold the package and its metadata, nothing else (no tests, no
scripts, no data).
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import mpevents

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: the build backend (hatchling) is a test dependency, so
    # the build needs no index of its own.
    subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def _only(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern))
    assert len(found) == 1, found
    return found[0]


def test_wheel_holds_the_package_and_nothing_else(dist: Path) -> None:
    wheel = _only(dist, f"mpevents-{mpevents.__version__}-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"mpevents", f"mpevents-{mpevents.__version__}.dist-info"}
    sources = {path.relative_to(REPO).as_posix() for path in (REPO / "mpevents").rglob("*.py")}
    assert sources == {name for name in names if name.endswith(".py")}
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def test_sdist_holds_what_the_wheel_is_built_from(dist: Path) -> None:
    sdist = _only(dist, f"mpevents-{mpevents.__version__}.tar.gz")
    root = f"mpevents-{mpevents.__version__}"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(f"{root}/") for name in archive.getnames()}
    assert {"pyproject.toml", "README.md", "mpevents/__init__.py"} <= names
    assert not [name for name in names if name.startswith((".venv", "data/output", ".bench"))]


def test_installed_wheel_runs(dist: Path, tmp_path: Path) -> None:
    wheel = _only(dist, "*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", str(wheel)], check=True, timeout=300)
    command = env_dir / "bin" / "mpevents"
    version = subprocess.run([command, "--version"], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert version.stdout.strip() == f"mpevents {mpevents.__version__}"

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.log").write_text("17|log3|appsetup|tom|24123|2|1587583122\n1|l|e|u|x|2|3\n")
    done = subprocess.run(
        [command, "--input", str(inputs), "--output", str(tmp_path / "out"), "-n", "2", "--quiet"],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: the installed package alone
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "group-2.jsonl").read_text() == (
        '{"id":17,"log":"log3","event":"appsetup","user":"tom","value":24123,"group_id":2,"timestamp":1587583122}\n'
    )
    rejected = (tmp_path / "out" / "rejected.jsonl").read_text()
    assert '"reason":"bad_value"' in rejected
    where = subprocess.run(
        [python, "-c", "import mpevents; print(mpevents.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert str(env_dir) in where.stdout  # the installed copy ran, not the checkout
