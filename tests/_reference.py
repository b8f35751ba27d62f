"""The reference output of an input directory: what mpevents must write for it.

Built from scripts/sequential.py's line-by-line parser (``reference.split``
and ``reference.check``, the README's record spec one rule after another;
for any other schema, :func:`schema_check`, the issue's rules written out)
and the README's rules for a directory: the default patterns, files in byte
order of their names, ``.gz`` and ``.zst`` decompressed with the standard
library and ``zstandard`` (not mpevents' own code). Tests compare a run's
group files, ``rejected.jsonl`` and ``summary.json`` with it.
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import sequential as reference

from mpevents.core.schema import Field, Schema

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


# --- any schema -------------------------------------------------------------
#
# The rules for a schema, one after another, written from its text:
# not from mpevents' code. Floats are written "as msgspec writes that
# float64", so msgspec writes them here too; everything else is json's.

SCHEMA_UINT = re.compile(r"[0-9]{1,19}")
SCHEMA_INT = re.compile(r"-?[0-9]{1,19}")
SCHEMA_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _schema_value(field: Field, text: str) -> tuple[str, str] | str:
    """(JSON text, canonical text) of a non-empty field's value, or the reason it is refused."""
    bad = "bad_" + field.name
    if field.type == "string":
        if any(ord(char) < 0x20 or ord(char) == 0x7F for char in text):
            return "control_char"
        if field.values is not None and text not in field.values:
            return bad
        if field.max_bytes is not None and len(text.encode()) > field.max_bytes:
            return bad
        return json.dumps(text, ensure_ascii=False), text
    if field.type == "bool":
        if text in ("true", "1"):
            return "true", "true"
        if text in ("false", "0"):
            return "false", "false"
        return bad
    if field.type == "float":
        if not SCHEMA_FLOAT.fullmatch(text) or not math.isfinite(float(text)):
            return bad
        return msgspec.json.encode(float(text)).decode(), ""
    pattern = SCHEMA_UINT if field.type == "uint" else SCHEMA_INT
    if not pattern.fullmatch(text) or not -(2**63) <= int(text) <= 2**63 - 1:
        return bad
    return str(int(text)), str(int(text))


def schema_check(schema: Schema, line: bytes) -> tuple[str, bytes] | str | None:
    """(group's canonical text, record's JSON line), the reason, or None for a blank line."""
    if len(line) > schema.max_line_bytes:
        return "line_too_long"
    if line == b"":
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    parts = text.split(schema.delimiter)
    if len(parts) != len(schema.fields):
        return "field_count"
    members, group = [], ""
    for spec, part in zip(schema.fields, parts):
        if part == "" and spec.optional:
            members.append(f'"{spec.name}":null')
            continue
        if part == "":
            return "empty_field" if spec.type == "string" else "bad_" + spec.name
        outcome = _schema_value(spec, part)
        if isinstance(outcome, str):
            return outcome
        members.append(f'"{spec.name}":{outcome[0]}')
        if spec.name == schema.group_by:
            group = outcome[1]
    return group, ("{" + ",".join(members) + "}\n").encode()


def schema_parse(
    schema: Schema, data: bytes, *, file_start: bool = False
) -> tuple[int, int, dict[bytes, tuple[int, bytes]], list[tuple[int, str, str]]]:
    """(lines, blank, {group: (count, ndjson)}, [(line, reason, raw)]) of one chunk, as process_chunk gives them."""
    lines = reference.split(data, file_start=file_start)
    blank = 0
    groups: dict[bytes, list[bytes]] = {}
    rejects = []
    for number, line in enumerate(lines, 1):
        outcome = schema_check(schema, line)
        if outcome is None:
            blank += 1
        elif isinstance(outcome, str):
            rejects.append((number, outcome, line[:1024].decode("utf-8", "backslashreplace")))
        else:
            groups.setdefault(outcome[0].encode(), []).append(outcome[1])
    return len(lines), blank, {g: (len(r), b"".join(r)) for g, r in groups.items()}, rejects


def group_file_name(value: str) -> str:
    """The issue's file name of a group: its canonical text's UTF-8, each byte
    outside A-Z a-z 0-9 _ - as %XX; over 200 bytes, cut to 180 plus '~' and 16
    hex digits of the SHA-256 of the canonical text."""
    keep = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    encoded = "".join(chr(byte) if byte in keep else f"%{byte:02X}" for byte in value.encode())
    if len(encoded) > 200:
        encoded = encoded[:180] + "~" + hashlib.sha256(value.encode()).hexdigest()[:16]
    return f"group-{encoded}.jsonl"


def schema_reasons(schema: Schema) -> list[str]:
    """The issue's reasons in check order: the line's three, then each field's."""
    found = ["line_too_long", "invalid_utf8", "field_count"]
    for spec in schema.fields:
        if spec.type != "string":
            found.append("bad_" + spec.name)
            continue
        found += [] if spec.optional else ["empty_field"]
        found.append("control_char")
        if spec.values is not None or spec.max_bytes is not None:
            found.append("bad_" + spec.name)
    return list(dict.fromkeys(found))


def expected_schema_output(directory: Path, schema: Schema) -> dict[str, Any]:
    """What a run on the plain ``*.log`` files of ``directory`` with ``schema``
    must write: each output file's bytes by name, and summary.json's groups and
    rejected_by_reason (``"groups"``, ``"reasons"``)."""
    groups: dict[str, list[bytes]] = {}
    rejects = []
    reasons = dict.fromkeys(schema_reasons(schema), 0)
    for path in sorted(directory.glob("*.log"), key=lambda p: os.fsencode(p.name)):
        for number, line in enumerate(reference.split(path.read_bytes(), file_start=True), 1):
            outcome = schema_check(schema, line)
            if isinstance(outcome, str):
                reasons[outcome] += 1
                raw = line[:1024].decode("utf-8", "backslashreplace")
                rejects.append({"file": path.name, "line": number, "reason": outcome, "raw": raw})
            elif outcome is not None:
                groups.setdefault(outcome[0], []).append(outcome[1])
    files: dict[str, Any] = {
        "records.jsonl" if schema.group_by is None else group_file_name(value): b"".join(records)
        for value, records in groups.items()
    }
    files["rejected.jsonl"] = Expected(rejects=rejects).rejected_jsonl()
    group_type = next((spec.type for spec in schema.fields if spec.name == schema.group_by), None)
    order = (lambda value: (int(value), b"")) if group_type in ("uint", "int") else (lambda value: (0, value.encode()))
    files["groups"] = {value: len(groups[value]) for value in sorted(groups, key=order)}
    files["reasons"] = reasons
    return files
