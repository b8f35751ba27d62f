"""The record spec: bytes in, results out.

This module owns every rule about what a line of the built-in v1 schema
means, and the loop that cuts a chunk into windows and lines for any schema;
a schema read from a file is checked by ``core.compiled``, which builds on
this module. It is pure: no I/O, no processes, no shared state, so the rules
can be tested line by line. The worker (``local.worker``) and the Dask
engine call :func:`process_chunk`; the collector only writes what it returns.

A chunk is a run of whole lines cut by a reader. :func:`process_chunk` checks
every line in the order the spec gives and returns, per group, the NDJSON
bytes of the valid records, plus the rejects and the counts.

Two paths give the same bytes:

* the bulk path, for "plain" lines: valid UTF-8 without control characters,
  no empty field, canonical numbers of at most 18 digits (which can never
  overflow int64). For those the JSON is the input fields placed in a fixed
  template, '"' and '\\' escaped, so a window of a few hundred lines is
  checked and converted column by column with a few C-level calls, not a
  Python loop per line. A line that is not plain is found from where its
  column's check failed and taken out of the window;
* the exact path, :func:`check_line`, for every other line: it applies each
  rule of the spec in turn and encodes with msgspec.

The property tests compare both against a reference parser.
"""

from __future__ import annotations

import codecs
import itertools
import re
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from typing import Final, NamedTuple

import msgspec

from mpevents.core.schema import DEFAULT_MAX_LINE_BYTES, V1, Schema

MAX_LINE_BYTES: Final = DEFAULT_MAX_LINE_BYTES
"""Longer lines (terminator removed) are rejected as ``line_too_long``."""

RAW_BYTES: Final = 1_024
"""A reject keeps this many bytes of its line in ``raw``."""

INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)
BOM: Final = b"\xef\xbb\xbf"

REASONS: Final = V1.reasons()
"""Every reason code of v1, in the order the checks run (a schema's: ``Schema.reasons``)."""

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


class ChunkParts(NamedTuple):
    """A :class:`ChunkResult` before each group's parts are joined.

    ``groups`` maps a group to its number of records and their NDJSON bytes
    in one or more parts, in order: a chunk joins its records into parts
    while they are still in the CPU cache (:meth:`_Chunk.flush`), and the
    worker's part log joins each group's parts into its block (``output.parts``).
    """

    lines: int
    blank: int
    groups: dict[bytes, tuple[int, Sequence[bytes]]]
    rejects: list[Reject]

    @property
    def size(self) -> int:
        """The bytes of all the records."""
        return sum(len(part) for _, parts in self.groups.values() for part in parts)

    def joined(self) -> ChunkResult:
        groups = {group: (count, b"".join(parts)) for group, (count, parts) in self.groups.items()}
        return ChunkResult(self.lines, self.blank, groups, self.rejects)


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
# A window of lines is checked and converted as a whole, with a few C-level
# calls and no Python code per line or field:
#
#   17|log3|José|tom|24123|2|1587583122\n18|...
#
# Line ends become '|' (one replace), so one split gives seven
# pieces per line, every line's fields in a row:
#
#   17 | log3 | José | tom | 24123 | 2 | 1587583122 | 18 | ...
#
# Each rule is checked on a whole column of pieces (a join and a translate).
# A line that breaks one (a "bad" line, about one in 200 in real logs) is
# found from where its column's check failed, with C-level searches, and its
# pieces are taken out; the exact path gives its reason. The records of the
# other lines are the pieces formatted into a bytes format of the window's
# records (one '%' call). Records are put in their groups' lists and joined
# into one part per group every _FLUSH_BYTES of input, so that hundreds of
# groups cost little more than three.

_RUN_BYTES: Final = 1 << 14
"""Largest window converted at once: its pieces stay in the CPU cache (16 KiB
measured fastest, 8 to 256 KiB tried), and no line in it is too long."""
_FLUSH_BYTES: Final = 1 << 18
"""Input between two joins of the records made (:meth:`_Chunk.flush`): what
they make, about 2.5 times as much, still fits in a core's L2 cache."""
_PART_RECORDS: Final = 128
"""The records per group, on average, that make a flush worth its joins."""
_MAX_DIGITS: Final = 18
"""Canonical numbers of at most 18 digits are < 10^18 < 2^63: they can never
overflow int64. Longer ones and leading zeros take the exact path, which
normalises them."""
_MAX_LINES: Final = _RUN_BYTES // len(b"0|a|b|c|0|0|0\n") + 1
"""The most lines a window can hold."""
_FIELD_BYTES: Final = bytes(byte for byte in range(0x20, 0x100) if byte not in b"|\x7f")
"""The bytes a field of a plain line may hold: all but '|' and the control
characters. Those above 0x7F are checked as UTF-8 a window at once
(:func:`_first_invalid_utf8_line`), and msgspec writes the text they make as it
is; of the others, JSON escapes only '"' and '\\' (:data:`_ESCAPES`)."""
_LINE_SKELETON: Final = b"||||||"
"""What a plain line is without _FIELD_BYTES: seven fields."""
_SKELETON: Final = (_LINE_SKELETON + b"\n") * _MAX_LINES
"""What a window of plain lines is without _FIELD_BYTES."""
_ESCAPES: Final = ((b"\\", b"\\\\"), (b'"', b'\\"'))
"""JSON's escapes of printable characters, backslash first."""
_NUMBER_CLASSES: Final = bytes(
    ord("d") if chr(byte) in "0123456789" else byte if byte in b"|-" else ord("x") for byte in range(256)
)
"""A translation table: digits to 'd', '|' and '-' kept, anything else to 'x'."""
_PIPE: Final = ord("|")
_TOO_LONG: Final = b"d" * (_MAX_DIGITS + 1) + b"|"
"""In the classes of a column: a number with too many digits. The '|' that
ends every field makes the search skip ahead (a pattern of one repeated byte
is looked for one byte at a time: 40% slower)."""
_FIELDS: Final = 7
_LINE_FORMAT: Final = b'{"id":%s,"log":"%s","event":"%s","user":"%s","value":%s,"group_id":%s,"timestamp":%s}\n'
"""One record as a bytes format, a ``%s`` for each field: Record's keys in
order, with the quotes around strings, as msgspec writes it."""
_FORMAT: Final = _LINE_FORMAT * _MAX_LINES
"""The format of the longest window: a window's is a slice of it."""


def _first_invalid_utf8_line(run: bytes) -> int:
    """Where the first line of ``run`` that is not valid UTF-8 starts, or -1.

    A multi-byte character never spans a line end (no byte of one is below
    0x80), so a decoding error lies in the line around it. Checked a window
    at a time: the decoded text of a window stays in the CPU cache, where
    that of a whole chunk (four bytes a character once one needs them) did
    not, and cost 7% of a real-shaped chunk's time.
    """
    if run.isascii():
        return -1
    try:
        codecs.utf_8_decode(run, "strict", True)
    except UnicodeDecodeError as error:
        return run.rfind(b"\n", 0, error.start) + 1
    return -1


def _bad_numbers(column: bytes) -> set[int]:
    """Which fields of a column of fields ('|' before and after each) are not
    canonical unsigned numbers of at most 18 digits, counted from 0.

    A few C-level searches tell whether any field is wrong; only then is each
    wrong one found, by the search that saw it.
    """
    classes = column.translate(_NUMBER_CLASSES)

    def fields(text: bytes, pattern: bytes, shift: int = 0) -> Iterator[tuple[int, int]]:
        """(where, field) of ``pattern`` in ``text``, the first in each field."""
        found = text.find(pattern)
        while found >= 0:
            yield found, classes.count(b"|", 0, found + shift) - 1
            found = text.find(pattern, classes.find(b"|", found + 1))

    bad: set[int] = set()
    if b"x" in classes:  # not a digit
        bad.update(field for _, field in fields(classes, b"x"))
    if b"-" in classes:
        bad.update(field for _, field in fields(classes, b"-"))
    if _TOO_LONG in classes:
        bad.update(field for _, field in fields(classes, _TOO_LONG))
    if b"|0" in column and column.count(b"|0") != column.count(b"|0|"):  # a leading zero
        bad.update(field for found, field in fields(column, b"|0", 1) if column[found + 2] != _PIPE)
    return bad


def _unsigned(values: bytes) -> tuple[bytes, set[int]]:
    """A column of signed values ('|' before and after each) made unsigned for
    the digit checks, the '-' that may begin each field removed; and which
    fields that would leave looking canonical are not, counted from 0: "-0"
    (zero is written without a sign) and "-" alone."""
    if b"-" not in values:
        return values, set()
    wrong: set[int] = set()
    for pattern in (b"|-0|", b"|-|"):
        found = values.find(pattern)
        while found >= 0:
            wrong.add(values.count(b"|", 0, found))
            found = values.find(pattern, found + 1)
    return values.replace(b"|-", b"|"), wrong


def _bad_lines(pieces: list[bytes]) -> set[int]:
    """Which lines of aligned pieces (seven per line) break a rule of a plain
    line: an empty field, or a number that is not canonical or too long."""
    bad: set[int] = set()
    if not all(pieces):  # an empty field
        index = pieces.index(b"")
        while True:
            bad.add(index // _FIELDS)
            try:
                index = pieces.index(b"", index + 1)
            except ValueError:
                break
    lines = len(pieces) // _FIELDS
    # The values, signs removed, then the ids, the groups and the timestamps,
    # each column in line order: one column, checked at once.
    values, wrong = _unsigned(b"|" + b"|".join(pieces[4::_FIELDS]) + b"|")
    numbers = values + b"|".join(pieces[0::_FIELDS] + pieces[5::_FIELDS] + pieces[6::_FIELDS]) + b"|"
    bad.update(wrong)
    bad.update(field % lines for field in _bad_numbers(numbers))
    return bad


def _bad_shapes(skeleton: bytes) -> list[tuple[int, int]]:
    """The lines of a window's skeleton that are not seven fields, as (line,
    fields), in order.

    Every good line's skeleton becomes one 'g'; what is left between the
    runs of 'g' (found with lstrip) are the bad lines. A bad line that ends
    in six '|' loses them and its '\n' to a 'g' of its own, which then ends it.
    """
    marks = skeleton.replace(_LINE_SKELETON + b"\n", b"g")
    bad: list[tuple[int, int]] = []
    line = pos = 0  # where the marks still to look at start, and their first line
    while True:
        rest = marks[pos:]
        good = len(rest) - len(rest.lstrip(b"g"))
        if good == len(rest):
            return bad
        line += good
        start = pos + good
        end = marks.find(b"\n", start)
        if end < 0:  # the last line, swallowed
            end = len(marks)
        swallowed = marks.find(b"g", start, end)
        if swallowed >= 0:  # its last six '|' and its '\n' made a 'g'
            end = swallowed
        bad.append((line, marks.count(b"|", start, end) + (6 if swallowed >= 0 else 0) + 1))
        line += 1
        pos = end + 1


def _convert(pieces: list[bytes]) -> bytes:
    """The NDJSON records of plain lines given as aligned pieces: one C-level
    formatting of the pieces into the window's format (a fifth faster than
    slotting them into a list between the keys and joining it)."""
    return _FORMAT[: len(_LINE_FORMAT) * (len(pieces) // _FIELDS)] % tuple(pieces)


class _Chunk:
    """One chunk's results, built window by window and line by line: the
    records of each group, in line order, one bytes object per record."""

    run_bytes: int = _RUN_BYTES
    """The most bytes of whole lines :meth:`window` takes at once."""

    def __init__(self) -> None:
        self.lines = 0
        self.blank = 0
        self.groups: defaultdict[bytes, list[bytes]] = defaultdict(list)
        self.rejects: list[Reject] = []
        self.parts: dict[bytes, list[bytes]] = {}  # each group's records joined so far
        self.counts: dict[bytes, int] = {}
        self.flushed = 0  # lines before the last flush

    def flush(self, force: bool = True) -> None:
        """Join each group's records since the last flush into one part.

        Tried every _FLUSH_BYTES of input, while the records are still in
        the CPU cache: joined and freed a chunk at once, they no longer were.
        Unless ``force``, done only where the groups hold _PART_RECORDS
        records each on average: a join per group costs about as much as 50
        records, and with hundreds of groups a chunk's records fit in the
        cache all the same. Each step is a C-level pass over the groups, not
        a Python step per group: a chunk of 10,000 groups' lines holds
        thousands of them, with a record or two each.
        """
        if not force and self.lines - self.flushed < _PART_RECORDS * len(self.groups):
            return
        self.flushed = self.lines
        groups, self.groups = self.groups, defaultdict(list)
        lists = list(groups.values())
        counts = list(map(len, lists))
        # A last b"" ends the join with '\n': no second copy of each part to add it.
        deque(map(list.append, lists, itertools.repeat(b"")), maxlen=0)
        joined = list(map(b"\n".join, lists))
        if not self.parts:  # the chunk's first flush (with many groups, its only one)
            self.parts = dict(zip(groups, map(list, zip(joined))))
            self.counts = dict(zip(groups, counts))
            return
        parts, tallies = self.parts, self.counts
        for group, part, count in zip(groups, joined, counts):
            if group in parts:
                parts[group].append(part)
                tallies[group] += count
            else:
                parts[group] = [part]
                tallies[group] = count

    def result(self) -> ChunkParts:
        if not self.parts:  # never flushed (as with many groups): each group's one part, straight from its list
            groups = self.groups
            lists = list(groups.values())
            counts = list(map(len, lists))
            deque(map(list.append, lists, itertools.repeat(b"")), maxlen=0)  # a last b"": the join ends with '\n'
            parts: dict[bytes, tuple[int, Sequence[bytes]]]
            parts = dict(zip(groups, zip(counts, zip(map(b"\n".join, lists)))))
            return ChunkParts(self.lines, self.blank, parts, self.rejects)
        self.flush()
        joined = self.parts
        parts = dict(zip(joined, zip(map(self.counts.__getitem__, joined), joined.values())))
        return ChunkParts(self.lines, self.blank, parts, self.rejects)

    def line(self, line: bytes) -> None:
        """Add the next line, by the exact path."""
        self.lines += 1
        self._keep(self._exact(line, self.lines))

    def _exact(self, line: bytes, number: int) -> tuple[bytes, bytes] | None:
        """Check line ``number`` by the exact path: count a blank line or a
        reject, or return a valid line's group and record (without '\\n')."""
        outcome = check_line(line)
        if outcome is None:
            self.blank += 1
        elif isinstance(outcome, str):
            self.rejects.append(Reject(number, outcome, raw_text(line)))
        else:
            return b"%d" % outcome.group_id, encode_record(outcome)[:-1]
        return None

    def _keep(self, record: tuple[bytes, bytes] | None) -> None:
        if record is not None:
            self.groups[record[0]].append(record[1])

    def _add(self, pieces: list[bytes]) -> None:
        """Add plain lines given as aligned pieces."""
        records = _convert(pieces).split(b"\n")
        records.pop()  # after the last '\n'
        # C-level bucketing: list.append mapped over (the line's group's records, record).
        deque(map(list.append, map(self.groups.__getitem__, pieces[5::_FIELDS]), records), maxlen=0)

    def window(self, run: bytes) -> None:
        """Add a run of '\\n'-terminated lines, valid UTF-8, at most a window long."""
        skeleton = run.translate(None, _FIELD_BYTES)
        escaped = run
        for char, escape in _ESCAPES:
            if char in escaped:
                escaped = escaped.replace(char, escape)  # changes no line's skeleton
        # Line ends made '|' by a replace, which finds them with memchr: a
        # translate looks up every byte (4% more instructions a line).
        pieces = escaped.replace(b"\n", b"|").split(b"|")
        pieces.pop()  # after the last line's '|'
        bad: list[tuple[int, bytes]] = []  # (line, its text), in line order
        unescape = escaped is not run
        if len(skeleton) % 7 == 0 and skeleton == _SKELETON[: len(skeleton)]:
            lines = len(skeleton) // 7
        else:  # lines of other than seven fields, or with a control character: take their pieces out
            lines = skeleton.count(b"\n")
            shapes = _bad_shapes(skeleton)
            starts = []  # where each one's pieces start
            extra = 0  # pieces beyond seven per line, before it
            for line, fields in shapes:
                starts.append(_FIELDS * line + extra)
                extra += fields - _FIELDS
            for (line, fields), start in zip(reversed(shapes), reversed(starts)):
                bad.append((line, _unsplit(pieces[start : start + fields], unescape)))
                del pieces[start : start + fields]
            bad.reverse()
        wrong = _bad_lines(pieces)  # counted among the lines left
        if wrong:
            for index in sorted(wrong, reverse=True):
                line = index
                for taken, _ in bad:  # the lines taken out before it
                    if taken <= line:
                        line += 1
                bad.append((line, _unsplit(pieces[_FIELDS * index : _FIELDS * (index + 1)], unescape)))
                del pieces[_FIELDS * index : _FIELDS * (index + 1)]
            bad.sort()
        base = self.lines
        self.lines += lines
        self._merge(pieces, _FIELDS, bad, base)

    def _merge(self, pieces: list[bytes], fields: int, bad: list[tuple[int, bytes]], base: int) -> None:
        """Add a window's plain lines (``pieces``, ``fields`` to a line) and its
        ``bad`` ones ((line in the window, text), in order, checked by the exact
        path), in line order; ``base``: the lines before the window."""
        if not bad:
            self._add(pieces)
            return
        records = [self._exact(text, base + line + 1) for line, text in bad]
        if not any(records):  # all rejects or blank: the plain lines go in at once
            self._add(pieces)
            return
        # Rare: a line valid all the same (a leading zero, 19 digits): line order within its group.
        plain = previous = 0  # plain lines added; the line after the last bad one
        for (line, _), record in zip(bad, records):
            if line > previous:
                self._add(pieces[fields * plain : fields * (plain + line - previous)])
                plain += line - previous
            self._keep(record)
            previous = line + 1
        if fields * plain < len(pieces):
            self._add(pieces[fields * plain :])


def _unsplit(pieces: list[bytes], unescape: bool, delimiter: bytes = b"|") -> bytes:
    """A line again, from its pieces; ``unescape`` undoes :data:`_ESCAPES`
    (every '"' came with one '\\' before it, every other '\\' with another)."""
    line = delimiter.join(pieces)
    if unescape:
        line = line.replace(b'\\"', b'"').replace(b"\\\\", b"\\")
    return line


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


def process_chunk(data: bytes, *, file_start: bool = False, schema: Schema = V1) -> ChunkResult:
    """Check and encode every line of a chunk of whole lines against ``schema``.

    ``file_start`` says the chunk begins its file, where a UTF-8 byte-order
    mark is removed. Reject line numbers count from 1 within the chunk.
    """
    return process_chunk_parts(data, file_start=file_start, schema=schema).joined()


def process_chunk_parts(data: bytes, *, file_start: bool = False, schema: Schema = V1) -> ChunkParts:
    """:func:`process_chunk`, each group's records left in parts (the worker
    writes them to its part log as they are, ``output.parts``)."""
    if file_start and data.startswith(BOM):
        data = data[len(BOM) :]
    if not data:
        return ChunkParts(0, 0, {}, [])
    text = normalise(data)
    if schema is V1 or schema.same_format(V1):  # v1's own path, tuned to its seven fields
        chunk = _Chunk()
    else:
        from mpevents.core.compiled import compiled  # which builds on this module

        chunk = compiled(schema).chunk()
    run_bytes = chunk.run_bytes
    pos, end = 0, len(text)
    flush_at = _FLUSH_BYTES
    while pos < end:
        if pos >= flush_at:
            chunk.flush(force=False)
            flush_at = pos + _FLUSH_BYTES
        stop = text.rfind(b"\n", pos, pos + run_bytes) + 1  # the whole lines that fit
        if stop > pos:
            run = text[pos:stop]
            invalid = _first_invalid_utf8_line(run)
            if invalid < 0:
                chunk.window(run)
                pos = stop
                continue
            if invalid > 0:  # windows never hold a line that is not UTF-8
                chunk.window(run[:invalid])
                pos += invalid
        # `pos` starts a line that is not UTF-8, or longer than a window.
        newline = text.index(b"\n", pos)
        chunk.line(text[pos:newline])
        pos = newline + 1
    return chunk.result()
