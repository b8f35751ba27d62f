"""--incremental and --follow: every line in the output exactly once, across runs, rotations and kills.

Each test writes a sequence of input states and runs mpevents on each; what
the output must hold is the reference parser's (``tests._reference``) on
each run's new lines, run after run: a group file holds the records of
every run in turn, each run's in input order; a reject is numbered from
the first line of its stream, across runs.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._reference import decompressed, expected_output
from tests.conftest import REPO, real_traffic, run_cli

PATTERN = "*.log*"
"""Rotated names (app.log.1, app.log.2.gz) are input too."""


def incremental(inputs: Path, out: Path, *extra: str, workers: int = 2, chunk: str = "4K") -> dict[str, object]:
    result = run_cli(
        "--input", inputs, "--output", out, "--incremental", "--settle", "0", "-q", "--pattern", PATTERN,
        "-n", str(workers), "--chunk-bytes", chunk, *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    summary: dict[str, object] = json.loads((out / "summary.json").read_bytes())
    return summary


class Expect:
    """What the output must hold after each run: the reference's records of
    each run's new bytes, appended run after run."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.groups: dict[str, bytes] = {}
        self.rejects: list[dict[str, object]] = []
        self.lines = 0
        self._runs = 0

    def run(self, new: dict[str, tuple[bytes, int]]) -> None:
        """A run read ``new``: per input name, its new bytes and the lines of its stream before them."""
        self._runs += 1
        directory = self.tmp / f"expect-{self._runs}"
        directory.mkdir()
        names = sorted(new, key=os.fsencode)  # the run's input order
        for number, name in enumerate(names):
            (directory / f"{number:04d}.log").write_bytes(new[name][0])
        expected = expected_output(directory)
        for group, records in sorted(expected.groups.items()):
            self.groups[group] = self.groups.get(group, b"") + b"".join(records)
        for reject in expected.rejects:
            name = names[int(str(reject["file"])[:4])]
            line = int(str(reject["line"])) + new[name][1]
            self.rejects.append({**reject, "file": name, "line": line})
        self.lines += int(expected.totals["lines"])

    def check(self, out: Path, summary: dict[str, object]) -> None:
        groups = {path.name[6:-6]: path.read_bytes() for path in out.glob("group-*.jsonl")}
        assert groups == {group: data for group, data in self.groups.items() if data}
        rejects = [json.loads(line) for line in (out / "rejected.jsonl").read_bytes().splitlines()]
        assert rejects == self.rejects
        totals = summary["totals"]
        assert isinstance(totals, dict) and totals["lines"] == self.lines
        state = summary["incremental"]
        assert isinstance(state, dict)
        assert state["sizes"] == {path.name: path.stat().st_size for path in out.iterdir() if path.suffix == ".jsonl"}


def lines(seed: int, count: int) -> bytes:
    return real_traffic(seed, count, groups=5)


def line_count(data: bytes) -> int:
    return data.count(b"\n")


@pytest.mark.timeout(300)
def test_growth_new_file_rotation_gzip_and_copytruncate(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    expect = Expect(tmp_path)
    app, other = lines(1, 400), lines(2, 300)
    (inputs / "app.log").write_bytes(app)
    (inputs / "other.log").write_bytes(other)
    summary = incremental(inputs, out)  # the first run: a full one, which writes the state
    expect.run({"app.log": (app, 0), "other.log": (other, 0)})
    expect.check(out, summary)

    grown = lines(3, 200)  # growth, and a new file
    with open(inputs / "app.log", "ab") as handle:
        handle.write(grown)
    new = lines(4, 100)
    (inputs / "new.log").write_bytes(new)
    summary = incremental(inputs, out)
    expect.run({"app.log": (grown, 400), "new.log": (new, 0)})
    expect.check(out, summary)
    assert summary["this_run"]["totals"]["lines"] == 300  # type: ignore[index]

    # Rotation by rename, with lines written just before it: only those are read of app.log.1.
    before = lines(5, 50)
    with open(inputs / "app.log", "ab") as handle:
        handle.write(before)
    os.rename(inputs / "app.log", inputs / "app.log.1")
    fresh = lines(6, 120)
    (inputs / "app.log").write_bytes(fresh)
    summary = incremental(inputs, out)
    expect.run({"app.log.1": (before, 600), "app.log": (fresh, 0)})
    expect.check(out, summary)

    # Rotation into .gz: nothing of it is read again.
    with open(inputs / "app.log.1", "rb") as source, gzip.open(inputs / "app.log.1.gz", "wb") as target:
        target.write(source.read())
    os.unlink(inputs / "app.log.1")
    summary = incremental(inputs, out)
    expect.run({"app.log.1.gz": (b"", 650)})
    expect.check(out, summary)
    assert summary["files"]["app.log.1.gz"]["lines"] == 650  # type: ignore[index]

    # copytruncate: other.log copied to other.log.1 (with lines not read yet), then cut to nothing and written again.
    tail = lines(7, 30)
    with open(inputs / "other.log", "ab") as handle:
        handle.write(tail)
    (inputs / "other.log.1").write_bytes((inputs / "other.log").read_bytes())
    again = lines(8, 40)
    (inputs / "other.log").write_bytes(again)
    summary = incremental(inputs, out)
    expect.run({"other.log.1": (tail, 300), "other.log": (again, 0)})
    expect.check(out, summary)
    assert summary["incremental"]["restarted"] == ["other.log"]  # type: ignore[index]

    # Nothing new: the output is left as it was.
    before_bytes = {path.name: path.read_bytes() for path in out.iterdir()}
    result = run_cli("--input", inputs, "--output", out, "--incremental", "--settle", "0", "--pattern", PATTERN)
    assert result.returncode == 0, result.stderr
    assert "nothing new" in result.stdout
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before_bytes


@pytest.mark.timeout(120)
def test_a_file_that_begins_like_a_known_one_is_its_own(tmp_path: Path) -> None:
    """Two files with the same first KiB (an application's banner) are two streams."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    expect = Expect(tmp_path)
    banner = b"".join(b"%d|boot|start|init|0|1|%d\n" % (i, i) for i in range(80))
    first = banner + lines(1, 50)
    (inputs / "a.log").write_bytes(first)
    expect.run({"a.log": (first, 0)})
    incremental(inputs, out)
    second = banner + lines(2, 70)
    (inputs / "b.log").write_bytes(second)
    summary = incremental(inputs, out)
    expect.run({"b.log": (second, 0)})
    expect.check(out, summary)


@pytest.mark.timeout(200)
def test_kill_between_writing_and_committing_then_exactly_once(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    expect = Expect(tmp_path)
    first = lines(1, 500)
    (inputs / "a.log").write_bytes(first)
    expect.run({"a.log": (first, 0)})
    incremental(inputs, out)
    committed = (out / "summary.json").read_bytes()
    more = lines(2, 300)
    with open(inputs / "a.log", "ab") as handle:
        handle.write(more)
    (inputs / "b.log").write_bytes(lines(3, 100))
    process = subprocess.Popen(
        [sys.executable, "-m", "mpevents", "--input", inputs, "--output", out, "--incremental", "--settle", "0",
         "-q", "--pattern", PATTERN, "-n", "2", "--chunk-bytes", "4K"],
        env={**os.environ, "MPEVENTS_FAILPOINTS": "incremental_kill=1"}, cwd=REPO, start_new_session=True,
    )  # fmt: skip
    try:
        assert process.wait(timeout=90) == -signal.SIGKILL
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # the whole group, as a crash of the machine's session would
    # The records were appended, but not committed.
    assert (out / "summary.json").read_bytes() == committed
    assert sum(path.stat().st_size for path in out.glob("group-*.jsonl")) > sum(
        json.loads(committed)["incremental"]["sizes"].values()
    )
    summary = incremental(inputs, out)
    expect.run({"a.log": (more, 500), "b.log": ((inputs / "b.log").read_bytes(), 0)})
    expect.check(out, summary)


@pytest.mark.timeout(300)
def test_output_is_the_same_for_any_worker_count_and_chunk_size(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    outs = [(tmp_path / "one", 1, "1M"), (tmp_path / "three", 3, "2K")]
    states = [
        {"a.log": lines(1, 300), "b.log": lines(2, 200)},
        {"a.log": lines(3, 100), "c.log": lines(4, 250)},
        {"b.log": lines(5, 80)},
    ]
    for state in states:
        for name, data in state.items():
            with open(inputs / name, "ab") as handle:
                handle.write(data)
        for out, workers, chunk in outs:
            incremental(inputs, out, workers=workers, chunk=chunk)
    files = [{path.name: path.read_bytes() for path in out.iterdir() if path.suffix == ".jsonl"} for out, _, _ in outs]
    assert files[0] == files[1]
    summaries = [json.loads((out / "summary.json").read_bytes()) for out, _, _ in outs]
    for key in ("totals", "files", "groups", "rejected_by_reason", "incremental"):
        assert summaries[0][key] == summaries[1][key], key


@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_compressed_output_takes_the_appends_of_every_run_as_frames(tmp_path: Path, kind: str) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    suffix = ".zst" if kind == "zstd" else ".gz"
    for state in ({"a.log": lines(1, 300), "b.log": lines(2, 200)}, {"a.log": lines(3, 100), "c.log": lines(4, 90)}):
        for name, data in state.items():
            with open(inputs / name, "ab") as handle:
                handle.write(data)
        incremental(inputs, plain)
        summary = incremental(inputs, packed, "--compress", kind)
        files = {path.name: decompressed(path) for path in packed.iterdir() if path.name != "summary.json"}
        assert files == {
            path.name + suffix: path.read_bytes() for path in plain.iterdir() if path.name != "summary.json"
        }  # decompressed, every run's appends are the plain output's
        progress = summary["incremental"]
        assert isinstance(progress, dict)
        sizes = {path.name: path.stat().st_size for path in packed.iterdir() if path.suffix == suffix}
        assert progress["sizes"] == sizes


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--incremental", "--resume"), "do not go together"),
        (("--follow", "--engine", "dask"), "local engine only"),
        (("--follow", "--interval", "0"), "--interval"),
    ],
)
def test_refused(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "a.log").write_bytes(lines(1, 10))
    result = run_cli("--input", inputs, "--output", tmp_path / "out", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(60)
def test_an_output_with_another_schema_is_refused(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (inputs / "a.log").write_bytes(lines(1, 10))
    incremental(inputs, out)
    schema = tmp_path / "s.toml"
    printed = run_cli("--print-schema").stdout
    schema.write_text(printed.replace('name = "events-v1"', 'name = "other"'))
    result = run_cli("--input", inputs, "--output", out, "--incremental", "--schema", schema, "--pattern", PATTERN)
    assert result.returncode == 2, result.stderr
    assert "same schema" in result.stderr


def wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not callable(predicate) or not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def committed_lines(out: Path) -> int:
    try:
        return int(json.loads((out / "summary.json").read_bytes())["totals"]["lines"])
    except (OSError, ValueError, KeyError):
        return -1


@pytest.mark.timeout(120)
def test_follow_reads_each_batch_and_ends_on_sigterm_with_its_batch_committed(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    expect = Expect(tmp_path)
    first = lines(1, 200)
    (inputs / "app.log").write_bytes(first)
    expect.run({"app.log": (first, 0)})
    # Every batch's collector is slow, so that the SIGTERM below comes in the middle of one.
    process = subprocess.Popen(
        [sys.executable, "-m", "mpevents", "--input", inputs, "--output", out, "--follow", "--interval", "0.2",
         "--settle", "0", "--no-progress", "--pattern", PATTERN, "-n", "2", "--chunk-bytes", "4K"],
        env={**os.environ, "MPEVENTS_FAILPOINTS": "collector_slow=0.2"}, cwd=REPO, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: committed_lines(out) == 200, 60)
        more = lines(2, 300)
        with open(inputs / "app.log", "ab") as handle:
            handle.write(more)
        expect.run({"app.log": (more, 200)})
        # The next batch has started once its staging directory is there.
        wait_for(lambda: any(path.name.startswith(".mpevents-tmp-out-") for path in tmp_path.iterdir()), 30)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr
    batches = [line for line in stdout.splitlines() if "batch" in line]
    assert len(batches) == 2, stdout  # one line per batch
    assert "lag" in batches[-1] and "committed" in batches[-1]
    expect.check(out, json.loads((out / "summary.json").read_bytes()))


@pytest.mark.timeout(120)
def test_a_copy_half_made_is_not_read_and_the_whole_one_goes_on(tmp_path: Path) -> None:
    """copytruncate seen mid-copy: ``other.log.1`` holds the start of ``other.log``."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    expect = Expect(tmp_path)
    first = lines(1, 300)
    (inputs / "other.log").write_bytes(first)
    expect.run({"other.log": (first, 0)})
    incremental(inputs, out)
    more = lines(2, 100)
    with open(inputs / "other.log", "ab") as handle:
        handle.write(more)
    whole = (inputs / "other.log").read_bytes()
    (inputs / "other.log.1").write_bytes(whole[: whole.index(b"\n", 2000) + 1])  # the copy, half made
    summary = incremental(inputs, out)
    expect.run({"other.log": (more, 300)})
    expect.check(out, summary)
    assert summary["incremental"]["copies"] == ["other.log.1"]  # type: ignore[index]
    (inputs / "other.log.1").write_bytes(whole)  # the copy made, then the original cut and written again
    again = lines(3, 50)
    (inputs / "other.log").write_bytes(again)
    summary = incremental(inputs, out)
    expect.run({"other.log.1": (b"", 400), "other.log": (again, 0)})
    expect.check(out, summary)


def test_follow_line_shows_the_lag_the_rate_and_the_last_commit() -> None:
    from mpevents.observe.dashboard import FollowView, follow_line

    line = follow_line(FollowView(3, 1500, 3000.0, 2048, 1_000_000.0, 9000), now=1_000_002.0)
    assert "batch 3: 1.5k lines, 3.0k lines/s" in line
    assert "lag 2.0 KiB" in line and "(00:02 ago)" in line and "9.0k lines in all" in line
    assert "no commit yet" in follow_line(FollowView(0, 0, 0.0, 0, None, 0))
