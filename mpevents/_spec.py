"""The record spec (v1): bytes in, results out.

This module owns every rule about what a line means. It is pure: no I/O, no
processes, no shared state, so the rules can be tested line by line. The
worker (``_worker.py``) and the Dask engine call :func:`process_chunk`; the
collector only writes what it returns.

A chunk is a run of whole lines cut by a reader. :func:`process_chunk` checks
every line in the order the spec gives and returns, per group, the NDJSON
bytes of the valid records, plus the rejects and the counts.

Two paths give the same bytes:

* the bulk path: one regular expression accepts a run of "plain" lines
  (printable ASCII strings without quote or backslash, canonical numbers of at
  most 18 digits, which can never overflow int64). For those the JSON is
  the input fields placed in a fixed template, so a whole run is converted
  with a few C-level calls instead of a Python loop per field;
* the exact path, :func:`check_line`, for every other line: it applies each
  rule of the spec in turn and encodes with msgspec.

The property tests compare both against a reference parser.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from typing import Final, NamedTuple

import msgspec

MAX_LINE_BYTES: Final = 65_536
"""Longer lines (terminator removed) are rejected as ``line_too_long``."""

RAW_BYTES: Final = 1_024
"""A reject keeps this many bytes of its line in ``raw``."""

INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)
BOM: Final = b"\xef\xbb\xbf"

REASONS: Final = (
    "line_too_long",
    "invalid_utf8",
    "field_count",
    "bad_id",
    "empty_field",
    "control_char",
    "bad_value",
    "bad_group_id",
    "bad_timestamp",
)
"""Every reason code, in the order the checks run."""

REASON_INDEX: Final = {reason: i for i, reason in enumerate(REASONS)}


class Record(msgspec.Struct, gc=False):
    """One valid line. Field order is the JSON key order of the output."""

    id: int
    log: str
    event: str
    user: str
    value: int
    group_id: int
    timestamp: int


class Reject(NamedTuple):
    """One rejected line; ``line`` counts from 1 within its chunk."""

    line: int
    reason: str
    raw: str


class ChunkResult(NamedTuple):
    """What one chunk holds, ready for the collector.

    ``groups`` maps a canonical group id (ASCII digits) to the number of
    records and their NDJSON bytes, records in line order.
    """

    lines: int
    blank: int
    groups: dict[bytes, tuple[int, bytes]]
    rejects: list[Reject]

    @property
    def valid(self) -> int:
        return sum(count for count, _ in self.groups.values())


# --- the exact path -------------------------------------------------------

_ENCODER: Final = msgspec.json.Encoder()
_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")


def _parse_uint(field: str) -> int | None:
    """1 to 19 ASCII digits with value <= 2^63-1, else None."""
    if not (0 < len(field) <= 19 and field.isascii() and field.isdigit()):
        return None
    number = int(field)
    return number if number <= INT64_MAX else None


def _parse_int(field: str) -> int | None:
    """An optional '-', then 1 to 19 ASCII digits, within int64, else None."""
    digits = field[1:] if field.startswith("-") else field
    if not (0 < len(digits) <= 19 and digits.isascii() and digits.isdigit()):
        return None
    number = int(field)
    return number if INT64_MIN <= number <= INT64_MAX else None


def check_line(line: bytes) -> Record | str | None:
    """Check one line (terminator already removed) against the spec.

    Returns the :class:`Record` of a valid line, ``None`` for a blank line,
    or the reason code of the first check that fails.
    """
    if len(line) > MAX_LINE_BYTES:
        return "line_too_long"
    if not line:
        return None
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "invalid_utf8"
    fields = text.split("|")
    if len(fields) != 7:
        return "field_count"
    id_ = _parse_uint(fields[0])
    if id_ is None:
        return "bad_id"
    for field in fields[1:4]:
        if not field:
            return "empty_field"
        if _CONTROL.search(field):
            return "control_char"
    value = _parse_int(fields[4])
    if value is None:
        return "bad_value"
    group_id = _parse_uint(fields[5])
    if group_id is None:
        return "bad_group_id"
    timestamp = _parse_uint(fields[6])
    if timestamp is None:
        return "bad_timestamp"
    return Record(id_, fields[1], fields[2], fields[3], value, group_id, timestamp)


def encode_record(record: Record) -> bytes:
    """The output line of a record: msgspec's compact JSON plus a newline."""
    return _ENCODER.encode(record) + b"\n"


def raw_text(line: bytes) -> str:
    """The ``raw`` field of a reject: the first bytes, undecodable ones escaped."""
    return line[:RAW_BYTES].decode("utf-8", "backslashreplace")


# --- the bulk path --------------------------------------------------------

# Canonical numbers of at most 18 digits are < 10^18 < 2^63, so a match can
# never overflow; 19-digit numbers and leading zeros take the exact path,
# which normalises them. Possessive quantifiers: a failed line never backtracks.
_UINT: Final = rb"(?:0|[1-9][0-9]{0,17}+)"
_SINT: Final = rb"(?:0|-?[1-9][0-9]{0,17}+)"
# Printable ASCII except '"' (0x22), '\' (0x5c) and '|' (0x7c): the bytes that
# JSON writes as they are, so the template below needs no escaping. At most
# 21,800 bytes each, so that a plain line (3 strings, 4 numbers of at most 19
# bytes, 6 separators: 65,479 bytes) is never longer than MAX_LINE_BYTES.
_PLAIN: Final = rb"[ !#-\[\]-{}~]{1,21800}+"
_PLAIN_LINES: Final = re.compile(
    rb"(?:" + rb"\|".join((_UINT, _PLAIN, _PLAIN, _PLAIN, _SINT, _UINT, _UINT)) + rb"\n)*+"
)
_RUN_BYTES: Final = 1 << 16
"""Longest run converted at once. It holds the longest plain line (65,480
bytes with its newline); runs this small also measured fastest (cache)."""
_TEMPLATE: Final = b'{"id":%b,"log":"%b","event":"%b","user":"%b","value":%b,"group_id":%b,"timestamp":%b}\n'


def _bulk(run: bytes, parts: dict[bytes, list[bytes]], counts: dict[bytes, int]) -> None:
    """Convert a run of plain lines, each ending in '\\n', into NDJSON by group.

    Every step is one C-level call over the whole run: split into fields,
    fill the template per line, then bucket the records by group id through
    a defaultdict's ``__getitem__`` and ``list.append`` mapped over the lines.
    """
    fields = run.replace(b"\n", b"|").split(b"|")
    fields.pop()  # the empty piece after the last '\n'
    records = map(_TEMPLATE.__mod__, zip(*[iter(fields)] * 7))
    buckets: defaultdict[bytes, list[bytes]] = defaultdict(list)
    deque(map(list.append, map(buckets.__getitem__, fields[5::7]), records), maxlen=0)
    for group, selected in buckets.items():
        _add(parts, counts, group, selected)


def _add(parts: dict[bytes, list[bytes]], counts: dict[bytes, int], group: bytes, records: list[bytes]) -> None:
    joined = b"".join(records)
    if group in parts:
        parts[group].append(joined)
        counts[group] += len(records)
    else:
        parts[group] = [joined]
        counts[group] = len(records)


def normalise(data: bytes) -> bytes:
    """A chunk's lines, each ending in '\\n', with no '\\r' terminator left.

    One trailing '\\r' is removed from every line, also from a last line that
    lacks its '\\n'; a last line without '\\n' gets one. The common chunk,
    '\\n'-terminated without '\\r', comes back as it is, without a copy.
    """
    if b"\r" in data:
        body = data[:-1] if data.endswith(b"\n") else data
        body = body.replace(b"\r\n", b"\n")
        if body.endswith(b"\r"):
            body = body[:-1]
        return body + b"\n"
    return data if data.endswith(b"\n") else data + b"\n"


def process_chunk(data: bytes, *, file_start: bool = False) -> ChunkResult:
    """Check and encode every line of a chunk of whole lines.

    ``file_start`` says the chunk begins its file, where a UTF-8 byte-order
    mark is removed. Reject line numbers count from 1 within the chunk.
    """
    if file_start and data.startswith(BOM):
        data = data[len(BOM) :]
    if not data:
        return ChunkResult(0, 0, {}, [])
    text = normalise(data)
    parts: dict[bytes, list[bytes]] = {}
    counts: dict[bytes, int] = {}
    rejects: list[Reject] = []
    blank = 0
    line_no = 0  # lines before `pos`
    pos, end = 0, len(text)
    match = _PLAIN_LINES.match
    while pos < end:
        # One run at most _RUN_BYTES long, so the run's field list stays small
        # whatever the chunk size. A plain line always fits in a window, so a
        # run that stops where it started stopped at a line that is not plain.
        stop = match(text, pos, min(end, pos + _RUN_BYTES)).end()  # type: ignore[union-attr]  # '*+' always matches
        if stop > pos:
            run = text[pos:stop]
            _bulk(run, parts, counts)
            line_no += run.count(b"\n")
            pos = stop
            continue
        newline = text.index(b"\n", stop)
        line = text[stop:newline]
        line_no += 1
        pos = newline + 1
        outcome = check_line(line)
        if outcome is None:
            blank += 1
        elif isinstance(outcome, str):
            rejects.append(Reject(line_no, outcome, raw_text(line)))
        else:
            group = b"%d" % outcome.group_id
            _add(parts, counts, group, [encode_record(outcome)])
    groups = {group: (counts[group], b"".join(chunks)) for group, chunks in parts.items()}
    return ChunkResult(line_no, blank, groups, rejects)


def concat(results: list[ChunkResult]) -> ChunkResult:
    """One result for consecutive chunks: groups joined in order, reject line
    numbers counted from the first chunk's first line."""
    parts: dict[bytes, list[bytes]] = {}
    counts: dict[bytes, int] = {}
    rejects: list[Reject] = []
    lines = blank = 0
    for result in results:
        for group, (count, data) in result.groups.items():
            parts.setdefault(group, []).append(data)
            counts[group] = counts.get(group, 0) + count
        rejects.extend(reject._replace(line=reject.line + lines) for reject in result.rejects)
        lines += result.lines
        blank += result.blank
    groups = {group: (counts[group], b"".join(chunks)) for group, chunks in parts.items()}
    return ChunkResult(lines, blank, groups, rejects)
