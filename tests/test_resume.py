"""--resume: an interrupted run goes on where its journal left off, with the same output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import pytest

from mpevents.output.journal import Checkpoint, Header, State, append, read, restore
from mpevents.output.names import JOURNAL_NAME, PARTS_DIR, REJECTS_NAME, SPOOL_PREFIX
from mpevents.output.parts import PartRef
from mpevents.output.report import FileCounts
from tests.conftest import REPO, fault_inputs, patched_cli, run_cli, temp_dirs, tree

pytestmark = pytest.mark.usefixtures("clean_processes")

SLOW = {"MPEVENTS_FAILPOINTS": "collector_slow=0.01,checkpoint_s=0.05"}
"""A run that lasts a few seconds and journals often."""
ARGS = ("-n", "2", "--no-progress", "--chunk-bytes", "16K")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fault_inputs(tmp_path_factory.mktemp("inputs"), 15_000, groups=7, broken=300)


@pytest.fixture(scope="module")
def reference(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference") / "out"
    assert run_cli("--input", inputs, "--output", out, *ARGS).returncode == 0
    return tree(out)


def staging_of(out: Path) -> Path:
    return out.parent / f".mpevents-resume-{out.name}"


def start_resumable(inputs: Path, out: Path, setup: str | None = None) -> subprocess.Popen[str]:
    """A --resume run in a process group of its own, so that all of it can be
    killed at once; its main first runs ``setup`` (Python), if given."""
    args = ("--input", inputs, "--output", out, *ARGS, "--resume")
    return subprocess.Popen(
        [sys.executable, "-m", "mpevents", *map(str, args)] if setup is None else patched_cli(setup, *args),
        env={**os.environ, **SLOW}, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip


def wait_for_checkpoints(process: subprocess.Popen[str], out: Path, lines: int, timeout: float = 60) -> None:
    """Until the journal says ``lines`` lines are written (or fail, at most ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        _, state = read(staging_of(out) / JOURNAL_NAME)
        if state.lines >= lines:
            return
        time.sleep(0.02)
    raise AssertionError(f"the journal never reached {lines} lines")


@pytest.mark.parametrize("lines", [3_000, 25_000])
def test_a_run_killed_whole_goes_on_from_its_journal_with_the_same_output(
    inputs: Path, reference: dict[str, bytes], tmp_path: Path, lines: int
) -> None:
    out = tmp_path / "out"
    process = start_resumable(inputs, out)
    wait_for_checkpoints(process, out, lines)
    os.killpg(process.pid, signal.SIGKILL)  # main and every child at once, as an OOM kill of the group
    process.communicate(timeout=30)
    assert staging_of(out).is_dir() and not out.exists()
    result = run_cli("--input", inputs, "--output", out, *ARGS, "--resume")
    assert result.returncode == 0, result.stderr
    assert "were written before; going on from there" in result.stderr
    assert tree(out) == reference
    resumed = msgspec.json.decode((out / "summary.json").read_bytes())["resumed_lines"]
    assert lines <= resumed < 45_600
    assert not staging_of(out).exists() and temp_dirs(tmp_path) == []


def test_ctrl_c_keeps_the_journal_and_the_next_resume_finishes(
    inputs: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    process = start_resumable(inputs, out)
    wait_for_checkpoints(process, out, 5_000)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err
    assert (staging_of(out) / JOURNAL_NAME).exists()
    assert run_cli("--input", inputs, "--output", out, *ARGS, "--resume").returncode == 0
    assert tree(out) == reference


def test_a_spool_left_in_the_resume_directory_does_not_stop_the_next_resume(
    inputs: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    small_shm = (  # a container's 64 MB /dev/shm, full
        "from mpevents.local import spool as _spool\n_spool._room = lambda directory: 0"
    )
    process = start_resumable(inputs, out, small_shm)
    wait_for_checkpoints(process, out, 3_000)
    assert any(path.name.startswith(SPOOL_PREFIX) for path in staging_of(out).iterdir())  # the spool lives there
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    result = run_cli("--input", inputs, "--output", out, *ARGS, "--resume")
    assert result.returncode == 0, result.stderr
    assert "were written before; going on from there" in result.stderr
    assert tree(out) == reference
    assert not staging_of(out).exists()


def test_resume_refuses_changed_input_naming_the_first_difference(inputs: Path, tmp_path: Path) -> None:
    mine = tmp_path / "in"
    mine.mkdir()
    for path in inputs.iterdir():
        (mine / path.name).write_bytes(path.read_bytes())
    out = tmp_path / "out"
    process = start_resumable(mine, out)
    wait_for_checkpoints(process, out, 2_000)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    with open(mine / "part-3.log", "ab") as handle:
        handle.write(b"9|a|b|c|1|1|1\n")
    result = run_cli("--input", mine, "--output", out, *ARGS, "--resume")
    assert result.returncode == 2
    assert "part-3.log changed since the interrupted run" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (mine / "part-0.log").write_bytes(b"1|a|b|c|1|1|1\n")
    result = run_cli("--input", mine, "--output", out, *ARGS, "--resume")
    assert result.returncode == 2 and "part-0.log was added since the interrupted run" in result.stderr
    assert staging_of(out).is_dir()  # kept: the user decides


def test_resume_with_nothing_to_resume_runs_from_the_start_and_says_so(
    inputs: Path, reference: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_cli("--input", inputs, "--output", out, *ARGS, "--resume")
    assert result.returncode == 0, result.stderr
    assert "nothing to resume" in result.stderr
    assert tree(out) == reference
    assert msgspec.json.decode((out / "summary.json").read_bytes())["resumed_lines"] == 0


def test_a_second_run_on_the_same_output_is_refused(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start_resumable(inputs, out)
    wait_for_checkpoints(process, out, 1)
    second = run_cli("--input", inputs, "--output", out, "-q")
    assert second.returncode == 2
    assert "another mpevents run is writing" in second.stderr
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


def test_a_run_without_resume_clears_a_resumable_leftover(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start_resumable(inputs, out)
    wait_for_checkpoints(process, out, 1)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert staging_of(out).is_dir()
    assert run_cli("--input", inputs, "--output", out, *ARGS).returncode == 0
    assert not staging_of(out).exists()


def test_resume_with_the_dask_engine_is_refused(inputs: Path, tmp_path: Path) -> None:
    result = run_cli("--input", inputs, "--output", tmp_path / "out", "--resume", "--engine", "dask")
    assert result.returncode == 2 and "--resume works with the local engine only" in result.stderr


def test_a_torn_last_record_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / JOURNAL_NAME
    counts = FileCounts(10, 9, 1, 0)
    with open(path, "wb") as handle:
        append(handle, Header(1, [("a.log", 100, 1, 2, 3)]))
        append(handle, Checkpoint(0, 3, 70, counts, {}, {"1": (500, 9)}, 40, [1, 0, 0, 0, 0, 0, 0, 0, 0]))
        append(handle, Checkpoint(0, 5, 90, counts, {}, {"1": (700, 9)}, 40, [1, 0, 0, 0, 0, 0, 0, 0, 0]))
    whole = path.read_bytes()
    path.write_bytes(whole[:-3])  # the last record cut short, as by a crash while appending it
    header, state = read(path)
    assert header is not None and header.inputs == [("a.log", 100, 1, 2, 3)]
    assert (state.next_seq, state.next_start, state.groups["1"]) == (3, 70, (500, 9))
    path.write_bytes(whole[:-3] + b"\xff\xff\xff")  # or garbage where it should be
    assert read(path)[1].next_seq == 3
    path.write_bytes(whole)
    assert read(path)[1].next_seq == 5
    assert read(tmp_path / "none")[1] == State()


def test_restoring_keeps_the_journaled_part_logs_and_drops_group_files_of_a_placing_cut_short(tmp_path: Path) -> None:
    (tmp_path / PARTS_DIR).mkdir()
    (tmp_path / PARTS_DIR / "worker-0-0-1").write_bytes(b"records")
    (tmp_path / "group-1.jsonl").write_bytes(b"half a placing")
    (tmp_path / REJECTS_NAME).write_bytes(b"0123456789")
    restore(tmp_path, State(rejects_size=4, parts=[PartRef("worker-0-0-1", 0, 7, 0)]))
    assert sorted(path.name for path in tmp_path.iterdir()) == [PARTS_DIR, REJECTS_NAME]
    assert (tmp_path / PARTS_DIR / "worker-0-0-1").read_bytes() == b"records"
    assert (tmp_path / REJECTS_NAME).read_bytes() == b"0123"


def test_a_resume_with_another_schema_is_refused(tmp_path: Path) -> None:
    # The records written before are of the interrupted run's format.
    from mpevents.core.errors import UsageError
    from mpevents.core.schema import V1, Field, Schema
    from mpevents.output import journal

    other = Schema((Field("a", "uint"),), name="other")
    journal.start(tmp_path, [], other)
    header, _ = journal.read(tmp_path / ".journal")
    assert header is not None
    journal.check_schema(header, other)
    with pytest.raises(UsageError, match="another schema"):
        journal.check_schema(header, V1)
    journal.check_schema(Header(1, []), V1)  # a journal written before schemas: v1's
    with pytest.raises(UsageError):
        journal.check_schema(Header(1, []), other)


def test_a_resume_of_another_versions_run_is_refused_in_one_line(tmp_path: Path) -> None:
    # Its part logs hold block indexes of another format: read, they would place wrong bytes.
    from mpevents.output import journal
    from mpevents.output.directory import resume_dir

    inputs = tmp_path / "in"
    inputs.mkdir()
    fault_inputs(inputs, 200, 5, 2)
    output = tmp_path / "out"
    resume_dir(output).mkdir()
    journal.start(resume_dir(output), [])  # as an interrupted run of this version leaves it
    header, _ = journal.read(resume_dir(output) / JOURNAL_NAME)
    assert header is not None and header.version == journal.VERSION
    journal.check_version(header)
    with open(resume_dir(output) / JOURNAL_NAME, "wb") as handle:
        append(handle, Header(journal.VERSION - 1, []))
    result = run_cli("--input", inputs, "--output", output, "--resume", "-q")
    assert result.returncode == 2, result.stderr
    assert "another version of mpevents" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not output.exists()
