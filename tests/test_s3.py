"""Input from object storage: a real S3 API (moto's server on 127.0.0.1), read through fsspec."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mpevents.core.sources import list_url, open_url
from tests.conftest import genlog, run_cli, settled, temp_dirs, tree

pytestmark = pytest.mark.usefixtures("clean_processes")

DASK_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """An S3 endpoint with a bucket ``logs``; yields the environment that points at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)  # for fsspec in this process too
    try:
        yield env
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("s3-corpus")
    genlog(directory / "a.log", 20_000, groups=5, seed=1)
    genlog(directory / "b.log", 3_000, groups=3, seed=2)
    (directory / "c.log").write_bytes(b"1|log|ev|u|1|1|1\r\nbad line\n" + b"z" * 70_000 + b"\n2|x|y|z|1|2|3")
    (directory / "d.log.gz").write_bytes(gzip.compress((directory / "b.log").read_bytes()))
    return settled(directory)


@pytest.fixture(scope="module")
def bucket(s3: dict[str, str], on_disk: Path) -> str:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("logs")
    for path in sorted(on_disk.iterdir()):
        fs.pipe(f"logs/app/{path.name}", path.read_bytes())
    fs.pipe("logs/app/notes.txt", b"not a log\n")
    return "s3://logs/app/"


def test_the_dask_engine_reads_s3_and_writes_what_it_writes_from_disk(
    s3: dict[str, str], bucket: str, on_disk: Path, tmp_path: Path
) -> None:
    local = tmp_path / "local"
    assert run_cli("--input", on_disk, "--output", local, "-q", "--chunk-bytes", "16K").returncode == 0
    out = tmp_path / "out"
    result = run_cli(
        "--input", bucket, "--output", out, "--engine", "dask", "-n", "2", "-q", "--chunk-bytes", "16K",
        env=s3, timeout=DASK_TIMEOUT_S,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert tree(out) == tree(local)
    assert json.loads((out / "summary.json").read_bytes())["engine"] == "dask"
    assert temp_dirs(tmp_path) == []


def test_the_local_engine_refuses_a_url_naming_the_dask_engine(s3: dict[str, str], bucket: str, tmp_path: Path) -> None:
    result = run_cli("--input", bucket, "--output", tmp_path / "out", "-q", env=s3)
    assert result.returncode == 2
    assert "--engine dask" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("url", ["s3://no-such-bucket/app/", "s3://logs/no-such-prefix/"])
def test_a_missing_bucket_or_prefix_exits_2(s3: dict[str, str], bucket: str, tmp_path: Path, url: str) -> None:
    result = run_cli("--input", url, "--output", tmp_path / "out", "--engine", "dask", "-q", env=s3)
    assert result.returncode == 2, result.stderr
    assert url.split("/")[2] in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_object_that_changed_since_it_was_listed_is_refused(s3: dict[str, str], bucket: str) -> None:
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.pipe("logs/changing/x.log", b"1|a|b|c|1|1|1\n")
    ((name, url, size, tag),) = list_url("s3://logs/changing/", ["*.log"])
    assert (name, size) == ("x.log", 14)
    with open_url(url, tag) as handle:
        assert handle.read() == b"1|a|b|c|1|1|1\n"
    fs.pipe("logs/changing/x.log", b"2|a|b|c|1|1|1\n")
    fs.invalidate_cache()
    with pytest.raises(OSError, match="changed while it was being read"):
        open_url(url, tag)
