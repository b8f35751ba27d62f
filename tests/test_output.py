"""The output directory: its commit (with and without --fsync, with and without
renameat2), its lock, an output through a symlink, and nothing left beside it."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mpevents.output import directory as _output
from tests.conftest import REPO, RUN_TIMEOUT_S, genlog, patched_cli, records_written, run_cli, tree


def test_fsync_syncs_every_file_and_both_directories_around_the_swap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"tool": "mpevents"}')
    claim = _output.claim(out)
    temp = claim.staging
    for name in ("group-1.jsonl", "rejected.jsonl", "summary.json"):
        (temp / name).write_text(name)
    synced: list[str] = []
    real_fsync = os.fsync

    def record(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    _output.commit(temp, out, fsync=True)
    claim.release()
    names = [Path(path).name for path in synced]
    assert sorted(names[:3]) == ["group-1.jsonl", "rejected.jsonl", "summary.json"]  # the files first,
    assert names[3] == temp.name  # then the directory that holds them, before the swap,
    assert synced[4] == str(tmp_path)  # and after it the parent, which holds the swap
    assert (out / "group-1.jsonl").read_text() == "group-1.jsonl"


def test_without_fsync_nothing_is_synced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    claim = _output.claim(tmp_path / "out")
    (claim.staging / "summary.json").write_text("{}")
    monkeypatch.setattr(os, "fsync", lambda fd: pytest.fail("synced without --fsync"))
    _output.commit(claim.staging, tmp_path / "out")
    claim.release()
    assert (tmp_path / "out" / "summary.json").exists()


def test_a_run_with_fsync_gives_the_same_output(tmp_path: Path) -> None:
    plain, synced = tmp_path / "plain", tmp_path / "synced"
    assert run_cli("--input", REPO / "data" / "input", "--output", plain, "-q").returncode == 0
    assert run_cli("--input", REPO / "data" / "input", "--output", synced, "-q", "--fsync").returncode == 0
    assert tree(plain) == tree(synced)


# --- nothing left beside the output ------------------------------------------

SLOW = "collector_slow=0.05,checkpoint_s=0.05"
"""A run long enough to be interrupted (seconds), journalling often with --resume."""
ARGS = ("-n", "2", "-q", "--chunk-bytes", "16K")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("logs")
    for seed in range(1, 4):
        genlog(directory / f"part-{seed}.log", 20_000, groups=4, seed=seed)
    return directory


def start(logs: Path, out: Path, *extra: str, failpoints: str = SLOW) -> subprocess.Popen[str]:
    """A run in a process group of its own, so that all of it can be killed at once."""
    return subprocess.Popen(
        [sys.executable, "-m", "mpevents", "--input", str(logs), "--output", str(out), *ARGS, *extra],
        env={**os.environ, "MPEVENTS_FAILPOINTS": failpoints}, cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip


def wait_written(process: subprocess.Popen[str], parent: Path, lines: int = 2_000, timeout: float = 60) -> None:
    """Until the run has written ``lines`` records beside the output (or fail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if sum(records_written(staging) for staging in parent.glob(".mpevents-*")) >= lines:
            return
        time.sleep(0.02)
    raise AssertionError(f"the run never wrote {lines} records")


@pytest.mark.usefixtures("clean_processes")
@pytest.mark.timeout(180)
def test_the_parent_holds_the_output_alone_after_every_ending_of_a_run(logs: Path, tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "out"

    def cli(*extra: str, failpoints: str = "") -> subprocess.CompletedProcess[str]:
        return run_cli("--input", logs, "--output", out, *ARGS, *extra, env={"MPEVENTS_FAILPOINTS": failpoints})

    assert cli().returncode == 0  # a good run
    assert os.listdir(parent) == ["out"]
    good = tree(out)
    assert cli(failpoints="collector_write_error=2").returncode == 1  # a failed one
    assert os.listdir(parent) == ["out"] and tree(out) == good
    process = start(logs, out)  # Ctrl-C
    wait_written(process, parent)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert os.listdir(parent) == ["out"] and tree(out) == good
    process = start(logs, out)  # SIGKILL of the whole process group, then the next run
    wait_written(process, parent)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert cli().returncode == 0
    assert os.listdir(parent) == ["out"] and tree(out) == good
    process = start(logs, out, "--resume")  # --resume killed: its directory stays, for the next one
    wait_written(process, parent)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert sorted(os.listdir(parent)) == [".mpevents-resume-out", "out"]
    assert cli("--resume").returncode == 0
    assert os.listdir(parent) == ["out"] and tree(out) == good


@pytest.mark.usefixtures("clean_processes")
@pytest.mark.parametrize("first", [(), ("--resume",)], ids=["plain", "resume"])
def test_a_second_run_on_the_same_output_is_refused_while_one_runs(
    logs: Path, tmp_path: Path, first: tuple[str, ...]
) -> None:
    out = tmp_path / "out"
    process = start(logs, out, *first)
    wait_written(process, tmp_path, 1)
    for second in ((), ("--resume",)):
        result = run_cli("--input", logs, "--output", out, *ARGS, *second)
        assert result.returncode == 2
        assert "another mpevents run is writing" in result.stderr
    other = run_cli("--input", logs, "--output", tmp_path / "other", *ARGS)  # a sibling output is not held
    assert other.returncode == 0, other.stderr
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


def test_a_run_whose_engine_cannot_be_made_leaves_nothing(logs: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "distributed.py").write_text("raise ImportError('blocked for the test')\n")
    parent = tmp_path / "parent"
    parent.mkdir()
    result = run_cli(
        "--input", logs, "--output", parent / "out", "--engine", "dask", env={"PYTHONPATH": str(blocker)}
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert os.listdir(parent) == []


# --- an output through a symlink ---------------------------------------------


@pytest.mark.parametrize("target", ["absolute", "relative"])
def test_an_output_through_a_symlink_is_made_beside_its_target_and_the_link_kept(
    logs: Path, tmp_path: Path, target: str
) -> None:
    plain = tmp_path / "plain"
    assert run_cli("--input", logs, "--output", plain, *ARGS).returncode == 0
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    link = here / "out"
    pointed = there / "out" if target == "absolute" else Path("..") / "there" / "out"
    link.symlink_to(pointed)  # dangling until the first run
    for _ in range(2):  # made, then replaced
        result = run_cli("--input", logs, "--output", link, *ARGS)
        assert result.returncode == 0, result.stderr
        assert link.is_symlink() and os.readlink(link) == str(pointed)
        assert os.listdir(here) == ["out"] and os.listdir(there) == ["out"]
        assert (there / "out").is_dir() and not (there / "out").is_symlink()
        assert tree(there / "out") == tree(plain)


# --- the commit where renameat2 is missing ------------------------------------


def test_the_fallback_swap_replaces_the_output_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text('{"tool": "mpevents", "old": true}')
    claim = _output.claim(out)
    (claim.staging / "summary.json").write_text('{"tool": "mpevents"}')
    monkeypatch.setattr(_output, "_exchange", lambda a, b: False)  # as where renameat2 is missing
    _output.commit(claim.staging, out)
    claim.release()
    assert os.listdir(tmp_path) == ["out"]
    assert (out / "summary.json").read_text() == '{"tool": "mpevents"}'


CRASH_BETWEEN_RENAMES = """
import os, sys
from pathlib import Path
from mpevents.output import directory as _output
out = Path(sys.argv[sys.argv.index("--output") + 1]).absolute()
_output._exchange = lambda a, b: False  # as where renameat2 is missing
rename = os.rename
def crash_before_the_second(source, target, *args, **kwargs):
    if Path(os.fsdecode(source)).name.startswith(".mpevents-tmp-") and Path(os.fsdecode(target)) == out:
        os._exit(137)  # killed with the old output moved aside and the new one not yet in
    rename(source, target, *args, **kwargs)
os.rename = crash_before_the_second
"""


@pytest.mark.usefixtures("clean_processes")
def test_a_crash_between_the_fallback_renames_is_undone_by_the_next_run(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run_cli("--input", REPO / "data" / "input", "--output", out, "-q").returncode == 0
    old = tree(out)
    crashed = subprocess.run(
        patched_cli(CRASH_BETWEEN_RENAMES, "--input", logs, "--output", out, *ARGS),
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO, check=False,
    )  # fmt: skip
    assert crashed.returncode == 137, crashed.stderr
    assert not out.exists()  # the moment the crash came
    failed = run_cli(
        "--input", logs, "--output", out, *ARGS, env={"MPEVENTS_FAILPOINTS": "collector_write_error=1"}
    )  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    assert os.listdir(tmp_path) == ["out"] and tree(out) == old  # the old output is back
    assert run_cli("--input", logs, "--output", out, *ARGS).returncode == 0
    assert os.listdir(tmp_path) == ["out"] and tree(out) != old


def test_the_exchange_goes_through_the_system_call_where_libc_has_no_renameat2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if platform.machine() not in _output._SYS_RENAMEAT2:
        pytest.skip(f"no system call number known for {platform.machine()}")
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    (first / "mark").touch()
    monkeypatch.setattr(_output, "_RENAMEAT2", "no_such_function")  # as in a glibc before 2.28
    assert _output._exchange(first, second)
    assert (second / "mark").exists() and not (first / "mark").exists()


@pytest.mark.parametrize("files", [3, _output.REMOVE_ALONE_UNDER * 2 + 1])  # by the caller alone, then by threads
def test_remove_and_empty_take_a_tree_and_follow_no_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: int
) -> None:
    started: list[str] = []

    class Counted(threading.Thread):
        def start(self) -> None:
            started.append(self.name)
            super().start()

    monkeypatch.setattr(threading, "Thread", Counted)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "kept").write_bytes(b"not in the tree")
    for keep in (False, True):
        top = tmp_path / f"top-{keep}"
        (top / ".parts" / "deeper").mkdir(parents=True)
        for k in range(files):
            (top / f"group-{k}.jsonl").write_bytes(b"{}\n")
        (top / ".parts" / "log-0").write_bytes(b"parts")
        (top / ".parts" / "deeper" / "x").write_bytes(b"x")
        (top / "link-dir").symlink_to(outside)
        (top / "link-file").symlink_to(outside / "kept")
        if keep:
            _output.empty(top)
            assert top.is_dir() and list(top.iterdir()) == []
        else:
            _output.remove(top)
            assert not os.path.lexists(top)
    assert (outside / "kept").read_bytes() == b"not in the tree"
    assert len(started) == (2 * (_output.REMOVE_THREADS - 1) if files > _output.REMOVE_ALONE_UNDER else 0)
    _output.remove(tmp_path / "not-there")  # nothing to do, and no error


def test_a_directory_swapped_for_a_link_while_a_tree_is_removed_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    (outside / ".parts").mkdir(parents=True)
    (outside / ".parts" / "kept").write_bytes(b"not in the tree")
    top = tmp_path / "top"
    (top / ".parts").mkdir(parents=True)
    (top / ".parts" / "log-0").write_bytes(b"parts")
    real = _output._remove_tree

    def swapped(parent: int, name: str) -> None:
        if name == ".parts":  # listed; now the tree is moved away and a link to elsewhere put in its place
            top.rename(tmp_path / "moved")
            top.symlink_to(outside)
        real(parent, name)

    monkeypatch.setattr(_output, "_remove_tree", swapped)
    _output.remove(top)
    assert (outside / ".parts" / "kept").read_bytes() == b"not in the tree"
    assert not (tmp_path / "moved" / ".parts").exists()  # what was listed is what went


def test_empty_fails_on_a_file_it_cannot_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    top = tmp_path / "top"
    top.mkdir()
    for name in ("group-1.jsonl", "stuck", "group-2.jsonl"):
        (top / name).write_bytes(b"{}\n")
    real = os.unlink

    def unlink(name: str, *, dir_fd: int | None = None) -> None:
        if name == "stuck":
            raise PermissionError(1, "Operation not permitted", name)
        real(name, dir_fd=dir_fd)

    monkeypatch.setattr(os, "unlink", unlink)
    with pytest.raises(PermissionError):
        _output.empty(top)
    assert sorted(path.name for path in top.iterdir()) == ["stuck"]  # the others removed all the same
    with pytest.raises(FileNotFoundError):
        _output.empty(tmp_path / "not-there")


@pytest.mark.usefixtures("clean_processes")
def test_a_leftover_whose_pid_another_program_took_is_removed(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with subprocess.Popen(["sleep", "60"]) as other:  # not an mpevents process: its pid says nothing of a run
        try:
            (tmp_path / f".mpevents-tmp-out-{other.pid}").mkdir()  # left by a run killed outright, long ago
            assert run_cli("--input", logs, "--output", out, *ARGS).returncode == 0
            assert os.listdir(tmp_path) == ["out"]
        finally:
            other.kill()


def _kernel_thread() -> int | None:
    """A kernel thread's pid, if this pid namespace shows one."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[6]) & 0x00200000:
                    return int(entry)
            except (OSError, IndexError, ValueError):
                continue
    return None


@pytest.mark.usefixtures("clean_processes")
def test_a_leftover_whose_pid_a_kernel_thread_took_is_removed(logs: Path, tmp_path: Path) -> None:
    # A kernel thread's /proc command line is empty, as a process's is in the
    # middle of an exec, which is taken for a run: a kernel thread is not one.
    thread = _kernel_thread()
    if thread is None:
        pytest.skip("no kernel thread in this pid namespace")
    (tmp_path / f".mpevents-tmp-out-{thread}").mkdir()
    assert run_cli("--input", logs, "--output", tmp_path / "out", *ARGS).returncode == 0
    assert os.listdir(tmp_path) == ["out"]


NO_DIRECTORY_FLOCK = """
import errno, fcntl
from mpevents.output import directory as _output
def flock(fd, flags):  # as on NFS, where flock needs a descriptor open for writing
    raise OSError(errno.EBADF, "Bad file descriptor")
_output.fcntl = type("fcntl", (), {"flock": staticmethod(flock), "LOCK_EX": fcntl.LOCK_EX, "LOCK_NB": fcntl.LOCK_NB})
"""


@pytest.mark.usefixtures("clean_processes")
def test_where_directories_cannot_be_locked_the_run_goes_on_and_says_so(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        patched_cli(NO_DIRECTORY_FLOCK, "--input", logs, "--output", out, "-n", "2", "--no-progress"),
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=REPO, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("mpevents: warning:")]
    assert len(warnings) == 1 and "cannot lock directories" in warnings[0]
    assert os.listdir(tmp_path) == ["out"]
    assert json.loads((out / "summary.json").read_bytes())["totals"]["lines"] == 60_000


def test_a_directory_someone_else_keeps_locked_is_waited_for_only_so_long(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our runs hold a directory for milliseconds; another program may hold a
    shared one (/dev/shm) for good, which must not hang a run."""
    import errno
    import fcntl

    from mpevents.output import directory as _output

    monkeypatch.setattr(_output, "LOCK_WAIT_S", 0.2)
    other = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(other, fcntl.LOCK_EX)  # a lock of its own open file: it excludes ours, in this process too
    try:
        with pytest.raises(OSError) as refused, _output.locked(tmp_path):
            pass
        assert refused.value.errno == errno.ETIMEDOUT
    finally:
        os.close(other)
    with _output.locked(tmp_path):  # once let go, it is ours at once
        pass
