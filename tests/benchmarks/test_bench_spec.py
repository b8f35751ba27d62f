"""Benchmarks of the record spec: one line, and one worker chunk.

    pytest tests/benchmarks --benchmark-only -k chunk

The chunk benchmarks put one feature of real logs at a time on top of the
seed's template (issue #11, target 2), then all of them together; each
reports ``ns_per_line`` in its extra info, and the ratio to the template's is
what the target names.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from mpevents import check_line, process_chunk
from mpevents._config import DEFAULT_CHUNK_BYTES

SEED = b"17|log3|appsetup|tom|24123|2|1587583122"
NAMES = ["José", "Łukasz", "山田太郎", "Иван", "Γιώργος", "Zoë", "Müller", "李娜", "Renée 🎉"]
QUOTED = ['O"Brien', "CORP\\jsmith", 'say "hi"']
BROKEN = [
    "{i}|log1|appsetup|tom|5|1",
    "{i}|log1||tom|5|1|1587583122",
    "{i}|log1|app\tsetup|tom|5|1|1587583122",
    "{i}|log1|appsetup|tom|12a|1|1587583122",
    "",
    "{i}|log1|appsetup|tom|5|1|1587583122|x",
]
VARIANTS: dict[str, dict[str, Any]] = {
    "template": {},
    "non-ascii names": {"non_ascii": 0.45},
    "200 groups": {"groups": 200},
    "1 broken line in 200": {"broken": 1 / 200},
    "1% quotes or backslashes": {"quotes": 0.01},
    "all together": {"non_ascii": 0.45, "groups": 200, "broken": 1 / 200, "quotes": 0.01},
}


def seed_chunk(
    size: int = DEFAULT_CHUNK_BYTES,
    groups: int = 3,
    non_ascii: float = 0.0,
    broken: float = 0.0,
    quotes: float = 0.0,
    seed: int = 1,
) -> bytes:
    """Template lines with features of real logs mixed in, at the given shares."""
    rng = random.Random(seed)
    lines = []
    total = i = 0
    while total < size:
        i += 1
        user = rng.choice(NAMES) if rng.random() < non_ascii else "tom"
        if rng.random() < quotes:
            user = rng.choice(QUOTED)
        if rng.random() < broken:
            text = rng.choice(BROKEN).format(i=i)
        else:
            value, group = rng.randrange(32768), rng.randrange(groups) + 1
            text = f"{i}|log{i % 9 + 1}|appsetup|{user}|{value}|{group}|{1587583122 + i}"
        line = text.encode() + b"\n"
        lines.append(line)
        total += len(line)
    return b"".join(lines)


@pytest.mark.benchmark(group="line")
def test_check_one_line(benchmark: Any) -> None:
    record = benchmark(check_line, SEED)
    assert record is not None and not isinstance(record, str)


@pytest.mark.benchmark(group="chunk")
@pytest.mark.parametrize("variant", VARIANTS)
def test_process_one_chunk(benchmark: Any, variant: str) -> None:
    data = seed_chunk(**VARIANTS[variant])
    result = benchmark(process_chunk, data)
    assert result.lines == data.count(b"\n")
    assert result.valid + len(result.rejects) + result.blank == result.lines
    benchmark.extra_info["lines"] = result.lines
    benchmark.extra_info["ns_per_line"] = round(benchmark.stats.stats.median / result.lines * 1e9)


@pytest.mark.benchmark(group="chunk")
def test_process_one_chunk_with_rejects(benchmark: Any) -> None:
    data = seed_chunk().replace(b"|tom|", b"|t\tm|", 500)
    result = benchmark(process_chunk, data)
    assert len(result.rejects) == 500
