"""The reference output of an input directory: what mpevents must write for it.

Built from scripts/sequential.py's line-by-line parser (``reference.split``
and ``reference.check``, the README's record spec one rule after another)
and the README's rules for a directory: the default patterns, files in byte
order of their names, ``.gz`` and ``.zst`` decompressed with the standard
library and ``zstandard`` (not mpevents' own code). Tests compare a run's
group files, ``rejected.jsonl`` and ``summary.json`` with it.
"""

from __future__ import annotations

import fnmatch
import gzip
import io
import json
import os
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import sequential as reference

PATTERNS = ("*.log", "*.log.gz", "*.log.zst")
"""The default ``--pattern``s, as the README gives them."""
COMPRESSION = {".gz": "gzip", ".zst": "zstd"}
REASONS = (
    "line_too_long", "invalid_utf8", "field_count", "bad_id", "empty_field", "control_char", "bad_value",
    "bad_group_id", "bad_timestamp",
)  # fmt: skip
"""Every reason code, in the spec's check order (summary.json lists them all, in this order)."""


@dataclass
class Expected:
    """A directory's output by the reference parser."""

    groups: dict[str, list[bytes]] = field(default_factory=dict)
    """Each group's records, in input order."""
    rejects: list[dict[str, object]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("lines", "valid", "rejected", "blank"), 0))
    files: dict[str, dict[str, object]] = field(default_factory=dict)
    """summary.json's entry of each file, in input order."""
    reasons: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    def group_counts(self) -> dict[str, int]:
        """summary.json's ``groups``: record count per group, in numeric order."""
        return {group: len(self.groups[group]) for group in sorted(self.groups, key=int)}

    def rejected_jsonl(self) -> bytes:
        """``rejected.jsonl`` as sequential.py writes it (compact JSON, UTF-8 unescaped)."""
        return b"".join(
            json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n" for entry in self.rejects
        )


def decompressed(path: Path) -> bytes:
    """A file's bytes, decompressed by its suffix; several members or frames are read whole."""
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        import zstandard

        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as stream:
            return stream.read()
    return data


def expected_output(directory: Path, complete_lines_only: Collection[str] = ()) -> Expected:
    """What the reference parser says the output of ``directory`` must be.

    Files named in ``complete_lines_only`` are taken up to their last line
    end: a last line without one was still being written, and is not read.
    """
    expected = Expected()
    names = sorted(
        (p.name for p in directory.iterdir() if p.is_file() and any(fnmatch.fnmatchcase(p.name, g) for g in PATTERNS)),
        key=os.fsencode,
    )
    for name in names:
        path = directory / name
        data = decompressed(path)
        if name in complete_lines_only:
            data = data[: data.rfind(b"\n") + 1]
        lines = reference.split(data, file_start=True)
        counts = dict.fromkeys(("lines", "valid", "rejected", "blank"), 0)
        counts["lines"] = len(lines)
        for number, line in enumerate(lines, 1):
            outcome = reference.check(line)
            if outcome is None:
                counts["blank"] += 1
            elif isinstance(outcome, str):
                counts["rejected"] += 1
                expected.reasons[outcome] += 1
                raw = line[:1024].decode("utf-8", "backslashreplace")
                expected.rejects.append({"file": name, "line": number, "reason": outcome, "raw": raw})
            else:
                counts["valid"] += 1
                expected.groups.setdefault(str(outcome["group_id"]), []).append(reference.to_json(outcome))
        for key, value in counts.items():
            expected.totals[key] += value
        kind = next((kind for suffix, kind in COMPRESSION.items() if name.endswith(suffix)), "none")
        expected.files[name] = {**counts, "bytes": len(data), "size_on_disk": path.stat().st_size, "compression": kind}
    return expected
