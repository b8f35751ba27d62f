"""Benchmarks of the record spec: one line, and one worker chunk.

pytest tests/benchmarks --benchmark-only
"""

from __future__ import annotations

from typing import Any

import pytest

from mpevents import check_line, process_chunk
from mpevents._config import DEFAULT_CHUNK_BYTES

SEED = b"17|log3|appsetup|tom|24123|2|1587583122"


def seed_chunk(size: int = DEFAULT_CHUNK_BYTES, groups: int = 3) -> bytes:
    lines = []
    total = 0
    i = 0
    while total < size:
        i += 1
        line = b"%d|log%d|appsetup|tom|%d|%d|%d\n" % (i, i % 9 + 1, (i * 7919) % 32768, i % groups + 1, 1587583122 + i)
        lines.append(line)
        total += len(line)
    return b"".join(lines)


@pytest.mark.benchmark(group="line")
def test_check_one_line(benchmark: Any) -> None:
    record = benchmark(check_line, SEED)
    assert record is not None and not isinstance(record, str)


@pytest.mark.benchmark(group="chunk")
@pytest.mark.parametrize("groups", [1, 3, 100])
def test_process_one_chunk(benchmark: Any, groups: int) -> None:
    data = seed_chunk(groups=groups)
    result = benchmark(process_chunk, data)
    assert result.valid == result.lines == data.count(b"\n")
    benchmark.extra_info["lines"] = result.lines
    benchmark.extra_info["ns_per_line"] = round(benchmark.stats.stats.median / result.lines * 1e9)


@pytest.mark.benchmark(group="chunk")
def test_process_one_chunk_with_rejects(benchmark: Any) -> None:
    data = seed_chunk().replace(b"|tom|", b"|t\tm|", 500)
    result = benchmark(process_chunk, data)
    assert len(result.rejects) == 500
