"""--compress: group files and rejects as zstd frames or gzip members, the same bytes decompressed
as the plain run's, and the same compressed bytes for any worker count, chunk size, death or --resume."""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
from pathlib import Path

import msgspec
import pytest
import zstandard

from mpevents.core.spec import process_chunk, process_chunk_parts
from mpevents.output import frames
from mpevents.output.frames import Compress, FramedRejects, Framer, codec, make_compress
from mpevents.output.journal import State, read, restore
from mpevents.output.names import JOURNAL_NAME, OUTPUT_NAMES, PARTS_DIR, group_file_name
from mpevents.output.parts import PartLog, Placing, place, write_order
from tests.conftest import REPO, fault_inputs, patched_cli, run_cli, temp_dirs, tree
from tests.test_collector import GROUPED
from tests.test_resume import SLOW, staging_of, wait_for_checkpoints

pytestmark = pytest.mark.usefixtures("clean_processes")

ZSTD, GZIP = Compress("zstd", 3), Compress("gzip", 6)
SUFFIX = {"zstd": ".zst", "gzip": ".gz"}
SMALL_FRAMES = "import mpevents.output.frames as f\nf.FRAME_BYTES = 3000"
"""A run whose every file is many frames (its children are forked from this main)."""


def patched_run(setup: str, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """A run whose main first runs ``setup``, waited for (at most 60 s)."""
    return subprocess.run(
        patched_cli(setup, *args),
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )


def unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True).read()


def decompress(kind: str, data: bytes) -> bytes:
    return unzstd(data) if kind == "zstd" else gzip.decompress(data)


def by_tool(kind: str, path: Path) -> bytes:
    """``path`` decompressed by the standard tool (``zstd -dc``, ``zcat``)."""
    command = ["zstd", "-dc", str(path)] if kind == "zstd" else ["zcat", str(path)]
    return subprocess.run(command, check=True, capture_output=True, timeout=30).stdout


# --- frames --------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [ZSTD, GZIP], ids=["zstd", "gzip"])
def test_frames_are_cut_at_fixed_offsets_however_the_pieces_come(
    compress: Compress, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames, "FRAME_BYTES", 1000)
    data = GROUPED[:5500]

    def framed(sizes: list[int]) -> bytes:
        framer, out, at = Framer(codec(compress)), [], 0
        for size in sizes:
            out += framer.take([memoryview(data)[at : at + size]])
            at += size
        out += framer.take([data[at:]], last=True)
        assert framer.plain == len(data) and framer.compressed == sum(map(len, out))
        return b"".join(out)

    whole = framed([])
    assert framed([1, 999, 1, 3000]) == framed([2500, 7]) == whole
    assert decompress(compress.kind, whole) == data
    assert whole.count(b"\x28\xb5\x2f\xfd" if compress.kind == "zstd" else b"\x1f\x8b\x08") == 6


def test_gzip_members_hold_no_time_and_no_name() -> None:
    member = codec(GZIP)(memoryview(b"abc\n"))
    assert member[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"  # no flags (no name), mtime 0, Unix


@pytest.mark.parametrize("compress", [ZSTD, GZIP], ids=["zstd", "gzip"])
def test_any_shards_and_any_budget_place_the_same_compressed_bytes(
    tmp_path: Path, compress: Compress, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames, "FRAME_BYTES", 700)  # a group's 3 KB are several frames
    whole = process_chunk(GROUPED)
    outputs = []
    for shards, budget in ((1, 1 << 30), (2, 4_000), (7, 1_000)):
        out = tmp_path / f"out-{shards}"
        out.mkdir()
        log = PartLog(out / PARTS_DIR, "worker")
        at, refs = 0, []
        while at < len(GROUPED):
            end = GROUPED.rfind(b"\n", at, at + 9_000) + 1
            refs.append(log.append(process_chunk_parts(GROUPED[at:end])))
            at = end
        write_order(out / PARTS_DIR, refs)
        counts: dict[bytes, tuple[int, int]] = {}
        for shard in range(shards):
            counts.update(
                place(out / PARTS_DIR, out, Placing(shard, shards, 0, len(refs)), budget=budget, compress=compress)
            )
        files = {path.name: path.read_bytes() for path in out.glob("group-*")}
        for group, (count, records) in whole.groups.items():
            data = files[compress.name(group_file_name(group))]
            assert decompress(compress.kind, data) == records
            assert counts[group] == (count, len(data))
        outputs.append(files)
        again = place(
            out / PARTS_DIR, out, Placing(0, shards, 0, len(refs)), budget=500, compress=compress
        )  # done again
        assert {path.name: path.read_bytes() for path in out.glob("group-*")} == files
        assert all(counts[group] == value for group, value in again.items())
    assert outputs[0] == outputs[1] == outputs[2]


def test_rejects_cut_back_to_a_checkpoint_go_on_to_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(frames, "FRAME_BYTES", 100)
    lines = [b'{"file":"a.log","line":%d,"reason":"bad","raw":"x"}\n' % n for n in range(40)]
    whole_dir = tmp_path / "whole"
    whole_dir.mkdir()
    whole = FramedRejects(whole_dir, ZSTD, journaled=False)
    for line in lines:
        whole.write(line)
    whole.close()
    expected = (whole_dir / "rejected.jsonl.zst").read_bytes()
    assert unzstd(expected) == b"".join(lines)
    assert [path.name for path in whole_dir.iterdir()] == ["rejected.jsonl.zst"]  # no side file left

    for cut in (0, 3, 17, 39):
        directory = tmp_path / f"cut-{cut}"
        directory.mkdir()
        first = FramedRejects(directory, ZSTD, journaled=True)
        for line in lines[:cut]:
            first.write(line)
        first.flush()
        state = State(rejects_size=first.tell(), rejects_files=first.sizes())
        first.forget(first.frames)  # a later checkpoint is durable
        for line in lines[cut : cut + 5]:  # written after the checkpoint, then the crash
            first.write(line)
        first.abandon()
        restore(directory, state)
        second = FramedRejects(directory, ZSTD, journaled=True, plain_size=state.rejects_size)
        for line in lines[cut:]:
            second.write(line)
        second.close()
        assert sorted(path.name for path in directory.iterdir()) == ["rejected.jsonl.zst"]
        assert (directory / "rejected.jsonl.zst").read_bytes() == expected, cut


@pytest.mark.parametrize(
    ("kind", "level", "message"),
    [
        ("zstd", 0, "--compress-level for zstd must be from 1 to 22, got 0"),
        ("zstd", 23, "--compress-level for zstd must be from 1 to 22, got 23"),
        ("gzip", 10, "--compress-level for gzip must be from 1 to 9, got 10"),
        (None, 3, "--compress-level needs --compress zstd or --compress gzip"),
    ],
)
def test_a_bad_level_is_refused(kind: str | None, level: int, message: str) -> None:
    with pytest.raises(Exception, match=message):
        make_compress(kind, level)


def test_output_names_allow_compressed_files() -> None:
    for name in ("group-7.jsonl.zst", "group-7.jsonl.gz", "rejected.jsonl.zst", "rejected.jsonl.gz"):
        assert OUTPUT_NAMES.fullmatch(name)
    for name in ("group-7.jsonl.bz2", "rejected.jsonl.zst.gz", ".rejected-tail-0"):
        assert not OUTPUT_NAMES.fullmatch(name)


# --- runs ----------------------------------------------------------------------------

ARGS = ("--no-progress",)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fault_inputs(tmp_path_factory.mktemp("inputs"), 15_000, groups=7, broken=300)


@pytest.fixture(scope="module")
def plain(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("plain") / "out"
    assert run_cli("--input", inputs, "--output", out, "-n", "2", "-q").returncode == 0
    return tree(out)


def compressed_run(inputs: Path, out: Path, kind: str, *args: str, env: dict[str, str] | None = None) -> None:
    result = run_cli("--input", inputs, "--output", out, "--compress", kind, *ARGS, *args, env=env)
    assert result.returncode == 0, result.stderr


def check_against_plain(out: Path, kind: str, plain: dict[str, bytes]) -> dict[str, bytes]:
    """Every file of ``out`` decompressed by Python and by the standard tool is
    the plain run's; summary.json lists every file; the files, compressed."""
    files = {name: data for name, data in tree(out).items() if name != "summary.json"}
    assert sorted(files) == sorted(name + SUFFIX[kind] for name in plain if name != "summary.json")
    for name, data in files.items():
        assert decompress(kind, data) == plain[name.removesuffix(SUFFIX[kind])], name
        assert by_tool(kind, out / name) == plain[name.removesuffix(SUFFIX[kind])], name
    summary = msgspec.json.decode((out / "summary.json").read_bytes())
    output = summary["output"]
    assert output["compression"] == kind and output["level"] == (3 if kind == "zstd" else 6)
    assert {name: entry["bytes"] for name, entry in output["files"].items()} == {n: len(d) for n, d in files.items()}
    assert {name: entry["records"] for name, entry in output["files"].items()} == {
        **{f"group-{group}.jsonl{SUFFIX[kind]}": count for group, count in summary["groups"].items()},
        f"rejected.jsonl{SUFFIX[kind]}": summary["totals"]["rejected"],
    }
    assert output["bytes_written"] == sum(map(len, files.values()))
    assert output["plain_bytes"] == sum(len(data) for name, data in plain.items() if name != "summary.json")
    assert output["ratio"] == round(output["plain_bytes"] / output["bytes_written"], 3) > 1
    return files


@pytest.mark.parametrize("kind", ["zstd", "gzip"])
def test_decompressed_the_output_is_the_plain_run_s_and_the_same_for_any_workers_and_chunks(
    inputs: Path, plain: dict[str, bytes], tmp_path: Path, kind: str
) -> None:
    outputs = []
    for workers, chunk in (("1", "1M"), ("3", "1M"), ("3", "4K"), ("2", "64K")):
        out = tmp_path / f"out-{workers}-{chunk}"
        compressed_run(inputs, out, kind, "-n", workers, "--chunk-bytes", chunk)
        outputs.append(check_against_plain(out, kind, plain))
    assert outputs[0] == outputs[1] == outputs[2] == outputs[3]


@pytest.fixture(scope="module")
def undisturbed(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The zstd output of many frames, undisturbed."""
    out = tmp_path_factory.mktemp("undisturbed") / "out"
    args = ("--input", inputs, "--output", out, "--compress", "zstd", "-n", "2", "--chunk-bytes", "16K", "-q")
    result = patched_run(SMALL_FRAMES, *args)
    assert result.returncode == 0, result.stderr
    files = {name: data for name, data in tree(out).items() if name != "summary.json"}
    assert files["rejected.jsonl.zst"].count(b"\x28\xb5\x2f\xfd") > 3  # frames of the patched size
    return files


@pytest.mark.parametrize("point", ["worker_kill=1:3", "placer_kill=1", "placer_kill=0"])
def test_a_killed_worker_or_placer_leaves_the_same_compressed_bytes(
    inputs: Path, plain: dict[str, bytes], undisturbed: dict[str, bytes], tmp_path: Path, point: str
) -> None:
    out = tmp_path / "out"
    args = ("--input", inputs, "--output", out, "--compress", "zstd", "-n", "2", "--chunk-bytes", "16K", *ARGS)
    result = patched_run(SMALL_FRAMES, *args, env={"MPEVENTS_FAILPOINTS": point})
    assert result.returncode == 0, result.stderr
    assert "died" in result.stderr
    assert check_against_plain(out, "zstd", plain) == undisturbed
    assert temp_dirs(tmp_path) == []


@pytest.mark.parametrize("lines", [2_000, 30_000])
def test_a_resume_after_a_kill_leaves_the_same_compressed_bytes(
    inputs: Path, plain: dict[str, bytes], undisturbed: dict[str, bytes], tmp_path: Path, lines: int
) -> None:
    out = tmp_path / "out"
    args = ("--input", inputs, "--output", out, "--compress", "zstd", "-n", "2", "--chunk-bytes", "16K", *ARGS)
    process = subprocess.Popen(
        patched_cli(SMALL_FRAMES, *args, "--resume"), env={**os.environ, **SLOW}, cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    wait_for_checkpoints(process, out, lines)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    _, state = read(staging_of(out) / JOURNAL_NAME)
    assert state.rejects_files  # the compressed rejects and their side file, journaled
    result = patched_run(SMALL_FRAMES, *args, "--resume")
    assert result.returncode == 0, result.stderr
    assert "were written before; going on from there" in result.stderr
    assert check_against_plain(out, "zstd", plain) == undisturbed
    assert not staging_of(out).exists() and temp_dirs(tmp_path) == []


def test_resume_with_another_compression_is_refused(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ("--input", inputs, "--output", out, "--compress", "zstd", "-n", "2", "--chunk-bytes", "16K", *ARGS)
    process = subprocess.Popen(
        patched_cli("", *args, "--resume"), env={**os.environ, **SLOW}, cwd=REPO, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    wait_for_checkpoints(process, out, 1_000)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    result = run_cli("--input", inputs, "--output", out, "--compress", "gzip", *ARGS, "--resume")
    assert result.returncode == 2
    assert "the interrupted run wrote zstd 3, this one would write gzip 6" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--compress", "zstd", "--compress-level", "23"), "--compress-level for zstd must be from 1 to 22, got 23"),
        (("--compress", "gzip", "--compress-level", "0"), "--compress-level for gzip must be from 1 to 9, got 0"),
        (("--compress", "gzip", "--compress-level", "x"), "invalid int value: 'x'"),
        (("--compress", "bz2"), "invalid choice: 'bz2'"),
        (("--compress-level", "3"), "--compress-level needs --compress"),
        (("--compress", "zstd", "--engine", "dask"), "--compress works with the local engine only"),
    ],
)
def test_bad_compress_options_exit_2_with_one_line(
    inputs: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_cli("--input", inputs, "--output", tmp_path / "out", *args)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_zstd_without_zstandard_exits_2_naming_the_extra(inputs: Path, tmp_path: Path) -> None:
    no_zstandard = "import sys\nsys.modules['zstandard'] = None"
    args = ("--input", inputs, "--output", tmp_path / "out", "--compress", "zstd")
    result = patched_run(no_zstandard, *args)
    assert result.returncode == 2
    assert "pip install 'mpevents[compressed]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_compressed_output_is_replaced_by_the_next_run(inputs: Path, plain: dict[str, bytes], tmp_path: Path) -> None:
    out = tmp_path / "out"
    compressed_run(inputs, out, "gzip", "-n", "2")
    compressed_run(inputs, out, "zstd", "-n", "2")  # the directory is an mpevents output: replaced
    check_against_plain(out, "zstd", plain)


def test_the_dashboard_and_the_summary_table_show_the_bytes_written_and_the_ratio() -> None:
    from mpevents._summary import OutputFile, OutputSummary
    from mpevents.observe.dashboard import View, progress_line, render, summary_table
    from tests.conftest import make_summary
    from tests.test_dashboard import draw, known_view

    view = View(**{**known_view().__dict__, "output": (30 << 20, 5 << 20)})
    assert "output written    5.0 MiB of 30.0 MiB, ratio 6.00" in draw(render(view))
    assert progress_line(view).endswith(", output 5.0 MiB (ratio 6.00)")
    assert "output written" not in draw(render(known_view()))  # plain output: nothing to show
    summary = make_summary()
    summary.output = OutputSummary("zstd", 3, {"group-1.jsonl.zst": OutputFile(10, 5 << 20)}, 5 << 20, 30 << 20, 6.0)
    assert "zstd 3: 5.0 MiB written of 30.0 MiB, ratio 6.00" in draw(summary_table(summary))
