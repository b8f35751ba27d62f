"""Decompression speed of one 500,000-line template file (21.7 MB): zlib, ISA-L and zstd.

    pytest tests/benchmarks --benchmark-only -k decompress

Why mpevents takes ISA-L for gzip where it is installed (``core.compression``).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from typing import Any

import pytest
import zstandard
from isal import igzip

from mpevents.core.compression import _ZstdStream
from tests.conftest import genlog

BLOCK = 1 << 20


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return genlog(tmp_path_factory.mktemp("decompress") / "t.log", 500_000).read_bytes()


def drain(read: Callable[[int], bytes]) -> int:
    total = 0
    while block := read(BLOCK):
        total += len(block)
    return total


@pytest.mark.benchmark(group="decompress")
@pytest.mark.parametrize("how", ["zlib", "isal", "zstd"])
def test_decompress(benchmark: Any, data: bytes, how: str) -> None:
    if how == "zstd":
        packed = zstandard.ZstdCompressor(level=3).compress(data)

        def run() -> int:
            return drain(_ZstdStream(io.BytesIO(packed)).read)
    else:
        packed = gzip.compress(data, 6)
        module: Any = gzip if how == "zlib" else igzip

        def run() -> int:
            return drain(module.GzipFile(fileobj=io.BytesIO(packed)).read)

    assert benchmark(run) == len(data)
    benchmark.extra_info["MB_per_s"] = round(len(data) / benchmark.stats.stats.median / 1e6)
    benchmark.extra_info["compressed_MB"] = round(len(packed) / 1e6, 2)
