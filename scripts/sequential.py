"""The sequential baseline: the record spec in plain Python, line by line.

    python scripts/sequential.py INPUT_DIR OUTPUT_DIR

Two jobs, one piece of code: it is the benchmarks' "sequential Python script
with stdlib json" peer, and it is the tests' obviously correct reference
parser (one rule after another, standard library only), whose results the
fast pipeline must match exactly. It writes the group files and
rejected.jsonl like mpevents does (no summary, no atomic swap).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

MAX = 65_536
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
DIGITS = re.compile(r"[0-9]{1,19}")
SIGNED = re.compile(r"-?[0-9]{1,19}")


def split(data: bytes, *, file_start: bool) -> list[bytes]:
    if file_start and data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data:
        return []
    lines = data.split(b"\n")
    if data.endswith(b"\n"):
        lines.pop()
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def uint(text: str) -> int | None:
    if DIGITS.fullmatch(text) and int(text) <= INT64_MAX:
        return int(text)
    return None


def check(line: bytes) -> dict[str, object] | str | None:
    """A record as a dict, None for a blank line, or the reason code."""
    if len(line) > MAX:
        return "line_too_long"
    if line == b"":
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    fields = text.split("|")
    if len(fields) != 7:
        return "field_count"
    if uint(fields[0]) is None:
        return "bad_id"
    for field in fields[1:4]:
        if field == "":
            return "empty_field"
        if any(ord(char) < 32 or ord(char) == 127 for char in field):
            return "control_char"
    if not (SIGNED.fullmatch(fields[4]) and INT64_MIN <= int(fields[4]) <= INT64_MAX):
        return "bad_value"
    if uint(fields[5]) is None:
        return "bad_group_id"
    if uint(fields[6]) is None:
        return "bad_timestamp"
    return {
        "id": int(fields[0]),
        "log": fields[1],
        "event": fields[2],
        "user": fields[3],
        "value": int(fields[4]),
        "group_id": int(fields[5]),
        "timestamp": int(fields[6]),
    }


def to_json(record: dict[str, object]) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def parse(
    data: bytes, *, file_start: bool = False
) -> tuple[int, int, dict[bytes, tuple[int, bytes]], list[tuple[int, str, str]]]:
    """(lines, blank, {group: (count, ndjson)}, [(line, reason, raw)]) of one chunk."""
    lines = split(data, file_start=file_start)
    blank = 0
    groups: dict[bytes, list[bytes]] = {}
    rejects = []
    for number, line in enumerate(lines, 1):
        outcome = check(line)
        if outcome is None:
            blank += 1
        elif isinstance(outcome, str):
            rejects.append((number, outcome, line[:1024].decode("utf-8", "backslashreplace")))
        else:
            groups.setdefault(str(outcome["group_id"]).encode(), []).append(to_json(outcome))
    return len(lines), blank, {g: (len(r), b"".join(r)) for g, r in groups.items()}, rejects


def main(argv: list[str]) -> int:
    """Stream every ``*.log`` file of the input directory into the output directory."""
    source, target = Path(argv[0]), Path(argv[1])
    target.mkdir(parents=True, exist_ok=True)
    handles: dict[str, object] = {}
    with open(target / "rejected.jsonl", "w", encoding="utf-8") as rejected:
        names = sorted((p.name for p in source.glob("*.log") if p.is_file()), key=os.fsencode)
        for name in names:
            with open(source / name, "rb") as handle:
                first = True
                for number, raw in enumerate(handle, 1):
                    line = raw[:-1] if raw.endswith(b"\n") else raw
                    if first and line.startswith(b"\xef\xbb\xbf"):
                        line = line[3:]
                    first = False
                    line = line[:-1] if line.endswith(b"\r") else line
                    outcome = check(line)
                    if isinstance(outcome, str):
                        text = line[:1024].decode("utf-8", "backslashreplace")
                        entry = {"file": name, "line": number, "reason": outcome, "raw": text}
                        rejected.write(json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n")
                    elif outcome is not None:
                        group = str(outcome["group_id"])
                        out = handles.get(group)
                        if out is None:
                            out = handles[group] = open(target / f"group-{group}.jsonl", "wb")  # noqa: SIM115
                        out.write(to_json(outcome))  # type: ignore[attr-defined]
    for out in handles.values():
        out.close()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
