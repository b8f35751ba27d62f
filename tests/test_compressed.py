"""Compressed input (.gz, .zst): the same output as the plain files, and clear failures."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import zstandard

from mpevents.core.compression import Decompressed, compression_of, read_compressed_span
from mpevents.core.framing import Flag, Span, frames, read_chunk, stream_frames
from tests.conftest import GENLOG, genlog, run_cli, settled, temp_dirs, tree

pytestmark = pytest.mark.usefixtures("clean_processes")


def gz(data: bytes) -> bytes:
    """gzip in two members, as ``cat a.gz b.gz`` makes."""
    half = len(data) // 2
    return gzip.compress(data[:half]) + gzip.compress(data[half:])


def zst(data: bytes) -> bytes:
    """zstd in two frames."""
    half = len(data) // 2
    compressor = zstandard.ZstdCompressor()
    return compressor.compress(data[:half]) + compressor.compress(data[half:])


COMPRESS = {"gz": gz, "zst": zst}


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("plain")
    genlog(directory / "a.log", 6000, seed=1)
    subprocess_genlog_real(directory / "b.log")
    (directory / "c.log").write_bytes(
        b"\xef\xbb\xbf1|log|ev|u|1|1|1\r\n" + b"z" * 70_000 + b"\n2|x|y|z|1|2|3\nbad line\n" + b"y" * 200_000
    )
    (directory / "d.log").write_bytes(b"")
    return settled(directory)


def subprocess_genlog_real(path: Path) -> None:

    subprocess.run(
        [str(GENLOG), "--mix", "real", str(path), "8000"], check=True, env={**os.environ, "GENLOG_SEED": "3"}
    )


@pytest.fixture(scope="module")
def reference(plain: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("reference") / "out"
    assert run_cli("--input", plain, "--output", out, "-q").returncode == 0
    return tree(out)


def compressed_copy(plain: Path, directory: Path, kind: str) -> Path:
    directory.mkdir()
    for path in plain.iterdir():
        (directory / f"{path.name}.{kind}").write_bytes(COMPRESS[kind](path.read_bytes()))
    return directory


def as_plain(files: dict[str, bytes], kind: str) -> dict[str, bytes]:
    """An output tree with the compressed names in rejects made plain again,
    and of summary.json only the counts (the file names, compression and
    sizes differ, as they should)."""
    suffix = f".{kind}".encode()
    plain = {name: data.replace(b".log" + suffix, b".log") for name, data in files.items() if name != "summary.json"}
    summary = json.loads(files["summary.json"])
    counts = {key: summary[key] for key in ("totals", "rejected_by_reason", "groups")}
    counts["files"] = {
        name.removesuffix(f".{kind}"): {key: entry[key] for key in ("lines", "valid", "rejected", "blank", "bytes")}
        for name, entry in summary["files"].items()
    }
    return {**plain, "summary.json": json.dumps(counts, sort_keys=True).encode()}


@pytest.mark.parametrize("kind", ["gz", "zst"])
@pytest.mark.parametrize(("workers", "chunk"), [("1", "4K"), ("2", "64KiB")])
def test_compressed_input_gives_the_plain_output(
    plain: Path, reference: dict[str, bytes], tmp_path: Path, kind: str, workers: str, chunk: str
) -> None:
    inputs = compressed_copy(plain, tmp_path / "in", kind)
    out = tmp_path / "out"
    result = run_cli("--input", inputs, "--output", out, "-n", workers, "--chunk-bytes", chunk, "-q")
    assert result.returncode == 0, result.stderr
    files = tree(out)
    assert as_plain(files, kind) == as_plain(reference, kind)
    summary = json.loads((out / "summary.json").read_bytes())
    entry = summary["files"][f"b.log.{kind}"]
    assert entry["compression"] == {"gz": "gzip", "zst": "zstd"}[kind]
    assert entry["bytes"] == (plain / "b.log").stat().st_size
    assert entry["size_on_disk"] == (inputs / f"b.log.{kind}").stat().st_size
    assert summary["files"][f"d.log.{kind}"]["lines"] == 0  # an empty file, compressed: no lines


@pytest.mark.parametrize("kind", ["gz", "zst"])
@pytest.mark.parametrize("point", ["reader_kill=1:3", "worker_kill=1:2"])
def test_a_killed_reader_or_worker_mid_file_gives_the_plain_output(
    plain: Path, reference: dict[str, bytes], tmp_path: Path, kind: str, point: str
) -> None:
    inputs = compressed_copy(plain, tmp_path / "in", kind)
    out = tmp_path / "out"
    result = run_cli(
        "--input", inputs, "--output", out, "-n", "2", "--chunk-bytes", "16K", "-q",
        env={"MPEVENTS_FAILPOINTS": point},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert as_plain(tree(out), kind) == as_plain(reference, kind)
    restarts = json.loads((out / "summary.json").read_bytes())["restarts"]
    assert restarts["readers" if point.startswith("reader") else "workers"] == 1


LINES = b"".join(b"%d|log|ev|u%x|%d|1|1\n" % (i, i * 7919, i) for i in range(20_000))  # compresses to 100s of KB


@pytest.mark.parametrize(
    ("name", "content", "where"),
    [
        # cut short: it broke where the decompressor got to, well into the file
        ("cut.log.gz", gzip.compress(LINES)[:-2000], r"decompressed byte [1-9][0-9]{5}\b"),
        ("cut.log.zst", zstandard.ZstdCompressor().compress(LINES)[:-2000], r"decompressed byte [1-9][0-9]{5}\b"),
        ("text.log.gz", b"1|a|b|c|1|1|1\n", r"decompressed byte 0\b"),  # not gzip at all: a wrong suffix
        ("text.log.zst", b"1|a|b|c|1|1|1\n", r"decompressed byte 0\b"),
    ],
)
def test_a_corrupt_or_truncated_file_fails_the_run_and_keeps_the_previous_output(
    plain: Path, tmp_path: Path, name: str, content: bytes, where: str
) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(plain / "a.log", inputs / "a.log")
    (inputs / name).write_bytes(content)
    out = tmp_path / "out"
    assert run_cli("--input", plain, "--output", out, "-q").returncode == 0
    before = tree(out)
    result = run_cli("--input", inputs, "--output", out, "-n", "2", "-q")
    assert result.returncode == 1
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert name in line and "corrupt or truncated" in line and re.search(where, line), line
    assert tree(out) == before
    assert temp_dirs(tmp_path) == []


def test_patterns_add_up_and_numbered_rotations_need_their_own(plain: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(plain / "a.log", inputs / "app.log")
    (inputs / "app.log.1.gz").write_bytes(gzip.compress((plain / "a.log").read_bytes()))
    out = tmp_path / "out"
    assert run_cli("--input", inputs, "--output", out, "-q").returncode == 0
    assert list(json.loads((out / "summary.json").read_bytes())["files"]) == ["app.log"]
    result = run_cli("--input", inputs, "--output", out, "-q", "--pattern", "*.log", "--pattern", "*.gz")
    assert result.returncode == 0, result.stderr
    files = json.loads((out / "summary.json").read_bytes())["files"]
    assert list(files) == ["app.log", "app.log.1.gz"]
    assert files["app.log"]["lines"] == files["app.log.1.gz"]["lines"] == 6000


def test_zstd_input_without_zstandard_exits_2_naming_the_extra(plain: Path, tmp_path: Path) -> None:
    inputs = compressed_copy(plain, tmp_path / "in", "zst")
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "zstandard.py").write_text("raise ImportError('blocked for the test')\n")
    result = run_cli("--input", inputs, "--output", tmp_path / "out", env={"PYTHONPATH": str(blocker)})
    assert result.returncode == 2
    assert "pip install 'mpevents[compressed]'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- the pieces, without processes ---------------------------------------------------


def test_compression_is_told_by_the_suffix() -> None:
    assert [compression_of(name) for name in ("a.log", "a.log.gz", "a.log.zst", "a.gz.log", "a.zstd")] == [
        None, "gzip", "zstd", None, None,
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["gz", "zst"])
def test_a_stream_of_several_members_reads_whole_and_spans_read_back(tmp_path: Path, kind: str) -> None:
    content = b"1|a|b|c|1|1|1\n" * 3000 + b"x" * 70_000 + b"\n" + b"2|a|b|c|1|1|1\n" * 10
    plain, packed = tmp_path / "p.log", tmp_path / f"p.log.{kind}"
    plain.write_bytes(content)
    packed.write_bytes(COMPRESS[kind](content))
    name = {"gz": "gzip", "zst": "zstd"}[kind]
    with Decompressed(str(packed), name) as stream:
        streamed = list(stream_frames(stream, 0, 4096))
        assert stream.position == len(content)
    with open(plain, "rb") as handle:
        assert [span for span, _ in streamed] == list(frames(handle, 0, len(content), 4096))
    truncated = next(span for span, _ in streamed if span.flags & Flag.TRUNCATED)
    for span, data in [streamed[0], streamed[5], (truncated, None), streamed[-1]]:
        assert read_compressed_span(str(packed), name, span) == read_chunk(str(plain), span)
        assert data is None or data == read_chunk(str(plain), span)
    assert streamed[-1][0].flags & Flag.LAST


def test_an_empty_file_is_a_file_with_no_lines(tmp_path: Path) -> None:
    for name, content in [("e.log.gz", b""), ("f.log.gz", gzip.compress(b"")), ("g.log.zst", b"")]:
        (tmp_path / name).write_bytes(content)
        kind = compression_of(name)
        assert kind is not None
        with Decompressed(str(tmp_path / name), kind) as stream:
            assert list(stream_frames(stream, 0, 4096)) == [(Span(0, 0, 0, 0, Flag.LAST), b"")]


def test_a_compressed_chunk_that_keeps_killing_workers_is_named_by_its_decompressed_lines(tmp_path: Path) -> None:
    plain, packed = tmp_path / "plain", tmp_path / "packed"
    plain.mkdir()
    packed.mkdir()
    genlog(plain / "a.log", 20_000)
    (packed / "a.log.gz").write_bytes(gz((plain / "a.log").read_bytes()))
    named = {}
    for inputs in (plain, packed):  # cut into the same spans: the same lines
        result = run_cli(
            "--input", inputs, "--output", tmp_path / f"out-{inputs.name}", "-n", "2", "-q", "--chunk-bytes", "16K",
            "--max-retries", "1", env={"MPEVENTS_FAILPOINTS": "worker_kill_always=0:5"},
        )  # fmt: skip
        assert result.returncode == 1
        found = re.search(r"at lines ([0-9]+)-([0-9]+) killed 2 workers", result.stderr)
        assert found is not None, result.stderr
        named[inputs.name] = (int(found[1]), int(found[2]))
    first, last = named["plain"]
    lines = (plain / "a.log").read_bytes().splitlines(keepends=True)
    assert sum(map(len, lines[: first - 1])) > 5 * 8192 and last - first > 100  # the sixth span, of 16 KiB
    assert named["packed"] == named["plain"]
