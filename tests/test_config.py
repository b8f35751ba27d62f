"""Config on its own: size options, and what they refuse."""

from __future__ import annotations

import os

import pytest

from mpevents._cli import build_parser, config_from_args
from mpevents._config import Config, parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1", 1),
        ("4096", 4096),
        ("4K", 4 << 10),
        ("4k", 4 << 10),
        ("4KiB", 4 << 10),
        ("1M", 1 << 20),
        ("1MiB", 1 << 20),
        ("1mib", 1 << 20),
        ("2G", 2 << 30),
        ("2GiB", 2 << 30),
    ],
)
def test_sizes_take_powers_of_1024(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["1MB", "1iM", "1Mi", "M", "", "-5", "1.5M", "1 M", "0x10", "１M", "1KB", "1T"])
def test_anything_else_is_refused_quoting_what_was_given(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size") as refused:
        parse_size(text)
    assert repr(text) in str(refused.value)


def test_a_size_is_at_least_one_byte() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        parse_size("0M")


def test_the_default_worker_count_is_the_cores_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5})  # a taskset or a container's cpuset
    assert Config().workers == 3
    assert config_from_args(build_parser().parse_args([])).workers == 3
    assert config_from_args(build_parser().parse_args(["-n", "1"])).workers == 1  # the original's one worker
