"""The record spec (v1): bytes in, results out.

This module owns every rule about what a line means. It is pure: no I/O, no
processes, no shared state, so the rules can be tested line by line. The
worker (``_worker.py``) and the Dask engine call :func:`process_chunk`; the
collector only writes what it returns.

A chunk is a run of whole lines cut by a reader. :func:`process_chunk` checks
every line in the order the spec gives and returns, per group, the NDJSON
bytes of the valid records, plus the rejects and the counts.

Two paths give the same bytes:

* the bulk path, for windows of "plain" lines (printable ASCII strings
  without quote or backslash, canonical numbers of at most 18 digits, which
  can never overflow int64). For those the JSON is the input fields placed in
  a fixed template, so a window of about a thousand lines is checked and
  converted column by column with a few C-level calls, not a Python loop per
  line. A window that is not all plain goes line by line: a regular
  expression takes the plain lines before the first other one;
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
#
# A window of plain lines is checked and converted as a whole, with a few
# C-level calls and no Python code per line or field:
#
#   17|log3|appsetup|tom|24123|2|1587583122\n18|...
#
# Every line end becomes the JSON between two records, then one split at '|'
# gives piece 0 (the first id) and six pieces per line, the sixth holding a
# timestamp, that joint and the next id:
#
#   17 | log3 | appsetup | tom | 24123 | 2 | 1587583122}\n{"id":18 | ...
#
# Each rule is checked on a whole column of pieces (a join and a translate),
# and the records are the pieces placed between the keys of a template list
# by slice assignment, then joined.

_RUN_BYTES: Final = 1 << 14
"""Largest window converted at once: its pieces stay in the CPU cache (16 KiB
measured fastest, 8 to 256 KiB tried), and no line in it is too long."""
_MAX_DIGITS: Final = 18
"""Canonical numbers of at most 18 digits are < 10^18 < 2^63: they can never
overflow int64. Longer ones and leading zeros take the exact path, which
normalises them."""
_MAX_LINES: Final = _RUN_BYTES // len(b"0|a|b|c|0|0|0\n") + 1
"""The most lines a window can hold."""
_NOT_SEPARATORS: Final = bytes(byte for byte in range(0x20, 0x7F) if byte not in b'"\\|')
"""The bytes a plain field may hold: printable ASCII except '|' and the two
that JSON escapes, '"' and '\\', so the template needs no escaping."""
_SKELETON: Final = b"||||||\n" * _MAX_LINES
"""What a plain window is without _NOT_SEPARATORS: seven fields per line."""
_NUMBER_CLASSES: Final = bytes(
    ord("d") if chr(byte) in "0123456789" else byte if byte == ord("|") else ord("x") for byte in range(256)
)
"""A translation table: digits to 'd', '|' kept, anything else to 'x'."""
_TOO_LONG: Final = b"d" * (_MAX_DIGITS + 1)
"""In the classes of a column: a number with too many digits."""
_JOINT: Final = b'}\n{"id":'
"""What comes between one record's timestamp and the next one's id."""
_KEYS: Final = (b',"log":"', b'","event":"', b'","user":"', b'","value":', b',"group_id":', b',"timestamp":')
"""What goes before each piece of a line: Record's keys in order, with the
quotes around strings."""
_SLOTS: Final = 2 * len(_KEYS)
_TEMPLATE: Final = [b'{"id":', b""] + [slot for key in _KEYS for slot in (key, b"")] * (_MAX_LINES + 1)
"""The template of the longest window: a window's list is a slice of it,
its empty slots then filled with the pieces."""


def _pieces(run: bytes) -> list[bytes]:
    """Split a run of '\\n'-terminated lines of seven fields as drawn above,
    the last piece being the last timestamp."""
    pieces = run.replace(b"\n", _JOINT).split(b"|")
    pieces[-1] = pieces[-1][: -len(_JOINT)]
    return pieces


def _plain_pieces(run: bytes) -> list[bytes] | None:
    """The pieces of a run of '\\n'-terminated lines if every line is plain, else None."""
    skeleton = run.translate(None, _NOT_SEPARATORS)
    if len(skeleton) % 7 or skeleton != _SKELETON[: len(skeleton)]:
        return None  # a byte no plain field holds, or a line of other than seven fields
    if b"||" in run:  # an empty string (empty numbers are found below)
        return None
    pieces = _pieces(run)
    # |id|group|...|group|timestamp}\n{"id":id|...|timestamp| -> one number between each two '|'
    unsigned = b"|".join([b"", pieces[0], *pieces[5::6], *pieces[6::6], b""]).replace(_JOINT, b"|")
    if _numbers(unsigned) and _numbers(b"|".join([b"", *pieces[4::6], b""]), signed=True):
        return pieces
    return None


def _numbers(joined: bytes, signed: bool = False) -> bool:
    """Whether every field between two '|' is a canonical number of at most 18 digits."""
    if signed and b"-" in joined:
        if b"|-0" in joined:  # "-0" and "-05" are not canonical
            return False
        joined = joined.replace(b"|-", b"|")
    classes = joined.translate(_NUMBER_CLASSES)
    if b"x" in classes or b"||" in classes or _TOO_LONG in classes:
        return False
    return b"|0" not in joined or joined.count(b"|0") == joined.count(b"|0|")


def _convert(pieces: list[bytes], parts: dict[bytes, list[bytes]], counts: dict[bytes, int]) -> None:
    """Add the NDJSON records of plain lines, given as pieces, to their groups."""
    lines = len(pieces) // 6
    slots = _TEMPLATE[: 2 + _SLOTS * lines + 1]
    slots[1] = pieces[0]
    for column in range(6):
        slots[3 + 2 * column :: _SLOTS] = pieces[1 + column :: 6]
    slots[-1] = b"}\n"  # in place of the next line's first key
    records = b"".join(slots)
    groups = pieces[5::6]
    first = groups[0]
    if groups.count(first) == lines:  # one group: no need to cut the records apart
        _add(parts, counts, first, records, lines)
        return
    cut = records.split(b"\n")
    cut.pop()  # the empty piece after the last '\n'
    buckets: defaultdict[bytes, list[bytes]] = defaultdict(list)
    # C-level bucketing: list.append mapped over (bucket of the line's group, record).
    deque(map(list.append, map(buckets.__getitem__, groups), cut), maxlen=0)
    for group, records_of_group in buckets.items():
        records_of_group.append(b"")  # so that the join ends the last record with '\n'
        _add(parts, counts, group, b"\n".join(records_of_group), len(records_of_group) - 1)


def _add(parts: dict[bytes, list[bytes]], counts: dict[bytes, int], group: bytes, data: bytes, count: int) -> None:
    if group in parts:
        parts[group].append(data)
        counts[group] += count
    else:
        parts[group] = [data]
        counts[group] = count


# For a window that is not all plain: the plain lines before the first other
# line, by the same rules as _plain_pieces. It only ever runs within a window,
# so no line it accepts is too long. Possessive quantifiers: a failed line
# never backtracks.
_DIGITS_AFTER_FIRST: Final = b"[0-9]{0,%d}+" % (_MAX_DIGITS - 1)
_UINT: Final = rb"(?:0|[1-9]" + _DIGITS_AFTER_FIRST + rb")"
_SINT: Final = rb"(?:0|-?[1-9]" + _DIGITS_AFTER_FIRST + rb")"
_PLAIN: Final = rb"[ !#-\[\]-{}~]++"
_PLAIN_LINES: Final = re.compile(
    rb"(?:" + rb"\|".join((_UINT, _PLAIN, _PLAIN, _PLAIN, _SINT, _UINT, _UINT)) + rb"\n)*+"
)


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
    columnar = True  # the last window was all plain: check the next one by columns
    while pos < end:
        stop = text.rfind(b"\n", pos, pos + _RUN_BYTES) + 1  # the whole lines that fit a window
        if stop > pos:
            pieces = _plain_pieces(text[pos:stop]) if columnar else None
            if pieces is None:
                # Not all plain: the regex finds the plain lines before the first
                # other one, and until a window is all plain again it goes first,
                # so that scattered rejects do not cost a failed column check each.
                plain_end = match(text, pos, stop).end()  # type: ignore[union-attr]  # '*+' always matches
                columnar = plain_end == stop
                pieces = _pieces(text[pos:plain_end]) if plain_end > pos else None
                stop = plain_end
            if pieces:
                _convert(pieces, parts, counts)
                line_no += len(pieces) // 6
                pos = stop
                continue
        # `pos` starts a line that is not plain, or longer than a window.
        newline = text.index(b"\n", pos)
        line = text[pos:newline]
        line_no += 1
        pos = newline + 1
        outcome = check_line(line)
        if outcome is None:
            blank += 1
        elif isinstance(outcome, str):
            rejects.append(Reject(line_no, outcome, raw_text(line)))
        else:
            _add(parts, counts, b"%d" % outcome.group_id, encode_record(outcome), 1)
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
