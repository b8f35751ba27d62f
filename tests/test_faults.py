"""Faults through the real command: killed processes, signals, small limits.

Each test asserts the exit code, the output (byte-identical, or the previous
one untouched), that no process of the run is left and that no temporary
directory is left. pytest-timeout and the subprocess timeouts bound every test.
"""

from __future__ import annotations

import gzip
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from mpevents._config import Config
from mpevents._engine import RetryBudget
from mpevents.core.errors import RunError, UsageError
from mpevents.observe.profiling import process_tree
from tests.conftest import (
    REPO,
    fault_inputs,
    genlog,
    mpevents_processes,
    records_written,
    run_cli,
    start_cli,
    temp_dirs,
    tree,
    wait_no_processes,
)

pytestmark = pytest.mark.usefixtures("clean_processes")

SMALL_CHUNKS = ("--chunk-bytes", "16K")
T = TypeVar("T")


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fault_inputs(tmp_path_factory.mktemp("logs"), 20_000, groups=4, broken=500)


@pytest.fixture(scope="module")
def undisturbed(logs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("base") / "out"
    result = run_cli("--input", logs, "--output", out, "-n", "2", "-q", *SMALL_CHUNKS)
    assert result.returncode == 0, result.stderr
    return tree(out)


@pytest.fixture(scope="module")
def earlier_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An earlier run's output, made once for the module."""
    out = tmp_path_factory.mktemp("earlier") / "out"
    assert run_cli("--input", REPO / "data" / "input", "--output", out, "-q").returncode == 0
    return out


@pytest.fixture
def previous(earlier_output: Path, tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """An output directory holding an earlier run's output (a copy, for this test)."""
    out = tmp_path / "out"
    shutil.copytree(earlier_output, out)
    return out, tree(out)


def summary_of(out: Path) -> dict[str, object]:
    return dict(json.loads((out / "summary.json").read_bytes()))


@pytest.mark.parametrize(
    ("point", "role"),
    [
        ("worker_kill=0:0", "workers"),
        ("worker_kill=1:3", "workers"),
        ("worker_kill=3:0", "workers"),
        ("placer_kill=0", "workers"),  # a worker killed as it starts placing its shard of the group files
        ("placer_kill=1", "workers"),
        ("placer_kill_sent=0", "workers"),  # killed after its result went: its placing is done again
        ("placer_kill_sent=1", "workers"),
        ("reader_kill=0:0", "readers"),
        ("reader_kill=1:5", "readers"),
        ("reader_kill=3:0", "readers"),
    ],
)
def test_a_killed_worker_or_reader_is_replaced_and_output_is_identical(
    logs: Path, tmp_path: Path, undisturbed: dict[str, bytes], point: str, role: str
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "--input", logs, "--output", out, "-n", "2", "--no-progress", *SMALL_CHUNKS, env={"MPEVENTS_FAILPOINTS": point}
    )
    assert result.returncode == 0, result.stderr
    assert tree(out) == undisturbed
    assert summary_of(out)["restarts"][role] == 1  # type: ignore[index]
    assert "died" in result.stderr  # a warning, shown unless --quiet
    assert temp_dirs(tmp_path) == []


def test_a_queue_broken_mid_transfer_restarts_the_data_plane_and_output_is_identical(
    logs: Path, tmp_path: Path, undisturbed: dict[str, bytes]
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "--input", logs, "--output", out, "-n", "2", "--no-progress", *SMALL_CHUNKS,
        env={"MPEVENTS_FAILPOINTS": "worker_break_queue=1:3,stall_s=0.5"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "stopped moving" in result.stderr  # the collector waited for a message that never came whole
    assert tree(out) == undisturbed
    assert summary_of(out)["restarts"]["pipeline"] == 1  # type: ignore[index]
    assert temp_dirs(tmp_path) == []


def test_a_chunk_that_keeps_killing_workers_fails_the_run(
    logs: Path, previous: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    out, before = previous
    result = run_cli(
        "--input", logs, "--output", out, "-n", "2", "-q", *SMALL_CHUNKS, "--max-retries", "1",
        env={"MPEVENTS_FAILPOINTS": "worker_kill_always=1:2"},
    )  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "part-2.log" in last and "lines" in last and "killed 2 workers" in last
    assert "Traceback" not in result.stderr
    assert tree(out) == before
    assert temp_dirs(tmp_path) == []


def test_max_retries_counts_retries_so_a_thing_fails_the_run_on_its_failure_after_the_last() -> None:
    for retries in (0, 1, 2):
        budget = RetryBudget(retries)
        for _ in range(retries):
            budget.charge("span", "failed {times} times")
        with pytest.raises(RunError, match=f"failed {retries + 1} times"):
            budget.charge("span", "failed {times} times")
    with pytest.raises(UsageError, match="at least 0"):
        Config(max_retries=-1)


def test_max_retries_0_fails_the_run_on_the_first_death(
    logs: Path, previous: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    out, before = previous
    result = run_cli(
        "--input", logs, "--output", out, "-n", "2", "-q", *SMALL_CHUNKS, "--max-retries", "0",
        env={"MPEVENTS_FAILPOINTS": "worker_kill=1:2"},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "killed 1 workers" in result.stderr.strip().splitlines()[-1]
    assert tree(out) == before
    assert temp_dirs(tmp_path) == []


def test_a_collector_that_dies_is_survived_with_identical_output(
    logs: Path, tmp_path: Path, undisturbed: dict[str, bytes]
) -> None:
    out = tmp_path / "out"
    result = run_cli(
        "--input", logs, "--output", out, "-n", "2", "--no-progress", *SMALL_CHUNKS,
        env={"MPEVENTS_FAILPOINTS": "collector_kill=3"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "the collector died (signal SIGKILL); restarting the pipeline" in result.stderr
    assert tree(out) == undisturbed
    assert summary_of(out)["restarts"]["pipeline"] == 1  # type: ignore[index]
    assert temp_dirs(tmp_path) == []


def test_output_beside_a_file_fails_with_one_line(logs: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli("--input", logs, "--output", blocker / "out" / "deeper", "-q")
    assert result.returncode == 2
    assert "is a file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def start_slowed(logs: Path, out: Path, delay: float) -> subprocess.Popen[str]:
    """Start a run whose collector sleeps before each result, so that it lasts
    long enough to be disturbed."""
    return start_cli(
        "--input", logs, "--output", out, "-n", "2", "-q", *SMALL_CHUNKS,
        env={"MPEVENTS_FAILPOINTS": f"collector_slow={delay}"},
    )  # fmt: skip


def _wait_until(what: str, found: Callable[[], T | None], process: subprocess.Popen[str], timeout: float = 30) -> T:
    """Poll ``found`` until it gives something, while the run goes on; at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        value = found()
        if value is not None:
            return value
        time.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


def _wait_for(title: str, process: subprocess.Popen[str]) -> int:
    """The pid of the run's process titled ``title``, once there is one."""

    def titled() -> int | None:
        return next((pid for pid, cmdline in mpevents_processes() if cmdline.startswith(title)), None)

    return _wait_until(f"a process titled {title!r}", titled, process)


def _wait_for_output(process: subprocess.Popen[str], parent: Path, lines: int = 1000) -> None:
    """Wait until the run has written ``lines`` records into its staging directory
    under ``parent``: into the workers' part logs, or by the end into group files."""

    def written() -> bool | None:
        return True if sum(records_written(staging) for staging in temp_dirs(parent)) >= lines else None

    _wait_until(f"{lines} records written", written, process)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_everything_within_5_seconds(
    logs: Path, previous: tuple[Path, dict[str, bytes]], tmp_path: Path, signum: int, code: int
) -> None:
    out, before = previous
    process = start_slowed(logs, out, 0.05)
    _wait_for_output(process, tmp_path)
    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=10)
    assert time.monotonic() - sent < 5
    assert process.returncode == code
    assert "interrupted" in err and "Traceback" not in err
    assert tree(out) == before
    assert temp_dirs(tmp_path) == []


def test_a_second_ctrl_c_exits_at_once(logs: Path, previous: tuple[Path, dict[str, bytes]], tmp_path: Path) -> None:
    out, before = previous
    process = start_slowed(logs, out, 0.05)
    _wait_for_output(process, tmp_path)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=10)
    assert time.monotonic() - sent < 5
    assert process.returncode == 130
    assert tree(out) == before
    assert temp_dirs(tmp_path) == []


ROLES = (
    "mpevents: reader part-3.log",  # held back by credits until the collector gets there
    "mpevents: worker 1",
    "mpevents: collector",
    "mpevents: fork server",
    "mpevents: resource tracker",
)
"""Every process a run depends on, main apart."""
MOMENTS = (2_000, 30_000)
"""When to kill: after this many records are written (of 60,500)."""


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("title", ROLES)
def test_any_one_process_but_main_killed_at_any_moment_gives_identical_output(
    logs: Path, tmp_path: Path, undisturbed: dict[str, bytes], title: str, moment: int
) -> None:
    out = tmp_path / "out"
    process = start_slowed(logs, out, 0.005)
    _wait_for_output(process, tmp_path, moment)
    os.kill(_wait_for(title, process), signal.SIGKILL)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert tree(out) == undisturbed
    if title in ROLES[:3]:  # the kill hit a live run, and was seen
        restarts = summary_of(out)["restarts"]
        assert sum(restarts.values()) >= 1, restarts  # type: ignore[attr-defined]
    assert temp_dirs(tmp_path) == []


def test_5000_groups_under_ulimit_64(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    rows = [b"%d|log|ev|u|%d|%d|1" % (i, i, i % 5000) for i in range(15_000)]
    (inputs / "many.log").write_bytes(b"\n".join(rows) + b"\n")
    out = tmp_path / "out"

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

    result = subprocess.run(
        [sys.executable, "-m", "mpevents", "--input", str(inputs), "--output", str(out), "-n", "2", "-q",
         "--chunk-bytes", "64K"],
        capture_output=True, text=True, timeout=120, preexec_fn=limit, cwd=REPO, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    groups = sorted(path for path in out.iterdir() if path.name.startswith("group-"))
    assert len(groups) == 5000
    assert (out / "group-7.jsonl").read_bytes().count(b"\n") == 3
    ids = [json.loads(row)["id"] for row in (out / "group-7.jsonl").read_bytes().splitlines()]
    assert ids == [7, 5007, 10007]


def _peak_by_role(process: subprocess.Popen[str]) -> dict[str, int]:
    """Each role's (process title's) high-water mark of resident memory, in
    KiB, over the run of ``process`` and its descendants. The kernel keeps
    the mark (VmHWM), so a sample taken any time after a peak sees it: a
    loaded machine that samples rarely misses no short peak."""
    peaks: dict[str, int] = {}
    while process.poll() is None:
        for pid in process_tree(process.pid):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    peaks[title] = max(peaks.get(title, 0), int(line.split()[1]))
        time.sleep(0.02)
    return peaks


def test_memory_does_not_grow_with_the_input_under_a_slow_collector(tmp_path: Path) -> None:
    peaks: dict[int, dict[str, int]] = {}
    # The smaller input already fills every queue and credit (with 64 KiB
    # chunks, 160,000 lines are 110 chunks); the larger one is four times it.
    for lines in (160_000, 640_000):
        inputs = tmp_path / f"in-{lines}"
        inputs.mkdir()
        genlog(inputs / "big.log", lines)
        process = start_cli(
            "--input", inputs, "--output", tmp_path / f"out-{lines}", "-n", "2", "-q", "--chunk-bytes", "64K",
            env={"MPEVENTS_FAILPOINTS": "collector_slow=0.01"},  # the collector is the bottleneck
        )  # fmt: skip
        holder: dict[str, dict[str, int]] = {}
        watcher = threading.Thread(target=lambda p=process, h=holder: h.update(peaks=_peak_by_role(p)))
        watcher.start()
        process.communicate(timeout=120)
        watcher.join()
        assert process.returncode == 0
        peaks[lines] = holder["peaks"]
    # Four times the input (about 20 MiB more to hold if it were held) costs
    # no process more than noise: queues and credits bound what is in flight,
    # and a placing's budget what it gathers.
    small, large = peaks[160_000], peaks[640_000]
    assert any("worker" in title for title in large) and any("collector" in title for title in large), large
    grown = {title: large[title] - small[title] for title in large.keys() & small.keys()}
    assert all(growth < 4 * 1024 for growth in grown.values()), (grown, small, large)


@pytest.mark.parametrize("change", ["cut short", "replaced"])
def test_an_input_file_changed_mid_run_fails_the_run_with_one_line(
    logs: Path, previous: tuple[Path, dict[str, bytes]], tmp_path: Path, change: str
) -> None:
    out, before = previous
    inputs = tmp_path / "in"
    shutil.copytree(logs, inputs)
    process = start_slowed(inputs, out, 0.05)
    _wait_for_output(process, tmp_path)
    victim = inputs / "part-3.log"  # the collector reaches it last
    if change == "cut short":
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    else:  # the same bytes in another file, as a log rotation would leave it
        (tmp_path / "rotated").write_bytes(victim.read_bytes())
        (tmp_path / "rotated").replace(victim)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"{'changed' if change == 'cut short' else 'replaced'} while it was being read" in err
    assert "part-3.log" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert tree(out) == before


def test_the_command_line_forks_its_helpers_and_children_come_from_its_fork_server(logs: Path, tmp_path: Path) -> None:
    process = start_slowed(logs, tmp_path / "out", 0.01)
    worker = _wait_for("mpevents: worker 1", process)
    server = _wait_for("mpevents: fork server", process)
    tracker = _wait_for("mpevents: resource tracker", process)
    assert _parent(server) == _parent(tracker) == process.pid  # forked by main, not fresh interpreters
    assert _parent(worker) == server
    process.kill()
    process.wait(timeout=10)
    assert wait_no_processes() == []  # both stop once main is gone


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])  # the name in parentheses may hold spaces


def test_children_exit_when_main_is_killed_and_the_next_run_cleans_up(logs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start_slowed(logs, out, 0.05)
    _wait_for_output(process, tmp_path)
    process.kill()
    process.wait(timeout=10)
    assert wait_no_processes() == []  # no orphan keeps running
    assert len(temp_dirs(tmp_path)) == 1  # what a SIGKILL leaves behind...
    result = run_cli("--input", logs, "--output", out, "-q")
    assert result.returncode == 0, result.stderr
    assert temp_dirs(tmp_path) == []  # ...the next run removes


@pytest.mark.timeout(120)
def test_a_restarted_reader_decompressing_up_to_its_restart_point_is_no_stall(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    data = b"".join(b"%d|log|ev|u|%d|%d|1\n" % (i, i, i % 7) for i in range(480_000))  # 12 MiB: 48 spans of 256 KiB
    (inputs / "big.log.gz").write_bytes(gzip.compress(data, compresslevel=1))
    out = tmp_path / "out"
    # The reader dies before its 45th span; the spool and the queues keep it at
    # most a dozen spans ahead of the collector, so its replacement decompresses
    # the file again up to the first span not yet written, 8 MiB or more, each
    # MiB slowed to a fifth of the time after which a pipeline that does not
    # move is taken for a stalled one.
    result = run_cli(
        "--input", inputs, "--output", out, "-n", "2", "--no-progress", "--chunk-bytes", "256K",
        env={"MPEVENTS_FAILPOINTS": "reader_kill=0:44,skip_slow=0.2,stall_s=1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "stopped moving" not in result.stderr
    summary = summary_of(out)
    assert summary["restarts"] == {"workers": 0, "readers": 1, "pipeline": 0}
    assert summary["totals"]["lines"] == 480_000  # type: ignore[index]
