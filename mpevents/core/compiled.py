"""A schema compiled for checking lines: the exact path and the bulk path of any schema.

Owns what ``core.spec`` does for v1, for a schema read from a file
(``core.schema``): :meth:`Compiled.check`, the exact path, applies the
issue's rules field after field and encodes with msgspec; :class:`SchemaChunk`
is ``core.spec``'s chunk with the bulk path generalised: a window of lines
checked and converted a column at a time, one check per type, the records
made from a template built from the schema. The built-in v1 never comes
here: ``core.spec`` keeps its own path for it, tuned to its seven fields.
Pure, like ``core.spec``, which calls it (:func:`compiled`).
"""

from __future__ import annotations

import functools
import math
import re
from collections import deque
from typing import Final

import msgspec

from mpevents.core.schema import Field, Schema
from mpevents.core.spec import (
    _ESCAPES,
    _RUN_BYTES,
    Reject,
    _Chunk,
    _parse_int,
    _parse_uint,
    _unsigned,
    _unsplit,
    raw_text,
)

_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")
_FLOAT: Final = re.compile(r"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_BOOLS: Final = {"true": True, "1": True, "false": False, "0": False}
_ENCODER: Final = msgspec.json.Encoder()

Value = int | float | bool | str | None


class _Check:
    """One field's rules on the exact path."""

    __slots__ = ("kind", "max_bytes", "name", "optional", "reason", "values")

    def __init__(self, field: Field) -> None:
        self.name = field.name
        self.kind = field.type
        self.optional = field.optional
        self.values = frozenset(field.values) if field.values is not None else None
        self.max_bytes = field.max_bytes
        self.reason = f"bad_{field.name}"

    def value(self, text: str) -> Value | str:
        """The value of a non-empty field, or the reason it is refused (as ``_Refused``)."""
        kind = self.kind
        if kind == "string":
            if _CONTROL.search(text):
                return _Refused("control_char")
            if (self.values is not None and text not in self.values) or (
                self.max_bytes is not None and len(text.encode()) > self.max_bytes
            ):
                return _Refused(self.reason)
            return text
        number: Value
        if kind == "uint":
            number = _parse_uint(text)
        elif kind == "int":
            number = _parse_int(text)
        elif kind == "bool":
            number = _BOOLS.get(text)
        elif _FLOAT.fullmatch(text) and math.isfinite(as_float := float(text)):
            number = as_float
        else:
            number = None
        return _Refused(self.reason) if number is None else number


class _Refused(str):
    """A reason code, told apart from a string field's value."""

    __slots__ = ()


class Compiled:
    """A schema made ready to check lines; see the module docstring."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self.delimiter = schema.delimiter
        self.fields = len(schema.fields)
        self.max_line_bytes = schema.max_line_bytes
        self.checks = tuple(_Check(field) for field in schema.fields)
        self.group = schema.group_index
        # A window's lines are never too long: a longer line takes the exact path.
        self.run_bytes = min(_RUN_BYTES, schema.max_line_bytes + 1)
        self._bulk(schema)

    def _bulk(self, schema: Schema) -> None:
        """What the bulk path needs: the skeleton of a plain line, the record
        template, and which columns get which check and conversion."""
        count = self.fields
        self.delimiter_byte = schema.delimiter.encode()
        self.field_bytes = bytes(byte for byte in range(0x20, 0x100) if byte not in (ord(schema.delimiter), 0x7F))
        self.line_skeleton = self.delimiter_byte * (count - 1) + b"\n"
        max_lines = self.run_bytes // count + 1  # a plain line has count - 1 delimiters and a line end, at least
        self.skeleton = self.line_skeleton * max_lines
        # Escaping a window before it is cut would change its delimiters when
        # the delimiter is one of the escaped bytes: then string columns are escaped one by one.
        self.escape_first = schema.delimiter not in '"\\'
        members = []
        for field in schema.fields:
            quoted = field.type == "string" and not field.optional
            members.append(b'"%s":%s' % (field.name.encode(), b'"%s"' if quoted else b"%s"))
        self.line_format = b"{" + b",".join(members) + b"}\n"
        self.format = self.line_format * max_lines
        columns = list(enumerate(schema.fields))
        # A line of one field that is empty is blank, not a record: the exact path says so.
        self.empty_bad = [k for k, field in columns if not field.optional or count == 1]
        self.empty_ok = [k for k in range(count) if k not in self.empty_bad]
        self.all_empty_bad = not self.empty_ok
        self.ints = [k for k, field in columns if field.type == "int"]
        self.uints = [k for k, field in columns if field.type == "uint"]
        self.floats = [(k, field.optional) for k, field in columns if field.type == "float"]
        self.bools = [
            (k, _BOOL_JSON if field.optional else _BOOL_JSON_PLAIN) for k, field in columns if field.type == "bool"
        ]
        self.strings = [
            (k, _allowed(field, escaped=False), _allowed(field, escaped=True), field.max_bytes)
            for k, field in columns
            if field.type == "string" and (field.values is not None or field.max_bytes is not None)
        ]
        self.nulls = [
            (k, field.type == "string")
            for k, field in columns
            if field.optional and field.type in ("uint", "int", "string")
        ]
        self.escape_columns = [] if self.escape_first else [k for k, field in columns if field.type == "string"]
        group = self.group
        self.group_kind = None if group is None else schema.fields[group].type

    def chunk(self) -> SchemaChunk:
        """A chunk's results to build, for :func:`~mpevents.core.spec.process_chunk_parts`."""
        return SchemaChunk(self)

    def check(self, line: bytes) -> tuple[bytes, bytes] | str | None:
        """Check one line (terminator removed): ``None`` for a blank line, the
        reason code of the first check that fails, or the line's group (its
        canonical text; ``b""`` without group_by) and its JSON (no newline)."""
        if len(line) > self.max_line_bytes:
            return "line_too_long"
        if not line:
            return None
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return "invalid_utf8"
        fields = text.split(self.delimiter)
        if len(fields) != self.fields:
            return "field_count"
        record: dict[str, Value] = {}
        for check, field in zip(self.checks, fields):
            if not field:
                if check.optional:
                    record[check.name] = None
                    continue
                if check.kind == "string":
                    return "empty_field"
                return check.reason
            value = check.value(field)
            if isinstance(value, _Refused):
                return str(value)
            record[check.name] = value
        return self._group_key(record), _ENCODER.encode(record)

    def _group_key(self, record: dict[str, Value]) -> bytes:
        if self.group is None:
            return b""
        value = record[self.checks[self.group].name]
        if isinstance(value, bool):
            return b"true" if value else b"false"
        if isinstance(value, int):
            return b"%d" % value
        assert isinstance(value, str)
        return value.encode()


@functools.lru_cache(maxsize=16)
def compiled(schema: Schema) -> Compiled:
    """The compiled form of ``schema``, made once per process."""
    return Compiled(schema)


_BOOL_JSON_PLAIN: Final = {b"true": b"true", b"1": b"true", b"false": b"false", b"0": b"false"}
"""A bool field's JSON, by its text."""
_BOOL_JSON: Final = {**_BOOL_JSON_PLAIN, b"": b"null"}
_FLOAT_BYTES: Final = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_FLOAT_CHARS: Final = b"0123456789.eE+-\n"
_FLOAT_ONLY_PYTHON: Final = (b"\n+", b"\n.", b"-.", b".\n", b".e", b".E")
"""What float() takes and the spec refuses, among the bytes of _FLOAT_CHARS: a
leading '+', a '.' without a digit before or after it."""
_DIGIT_CLASSES: Final = bytes(
    ord("d") if chr(byte) in "0123456789" else byte if byte == ord("\n") else ord("x") for byte in range(256)
)
"""A translation table: digits to 'd', line ends kept, anything else to 'x'."""
_TOO_LONG: Final = b"d" * 20
"""In the classes of a column: a number of 20 digits or more."""
_NINETEEN: Final = b"\n" + b"d" * 19 + b"\n"
"""A number of 19 digits: below 2^63 unless it begins with a 9, which the exact
path decides (nanosecond timestamps have 19 digits; v1's path sends every one there)."""
_INF: Final = math.inf


def _allowed(field: Field, *, escaped: bool) -> frozenset[bytes] | None:
    """The pieces a string column with ``values`` may hold, as a window's pieces are (JSON-escaped or not)."""
    if field.values is None:
        return None
    allowed = set()
    for value in field.values:
        text = value.encode()
        if escaped:
            for char, escape in _ESCAPES:
                text = text.replace(char, escape)
        allowed.add(text)
    if field.optional:
        allowed.add(b"")
    return frozenset(allowed)


def _column(pieces: list[bytes]) -> bytes:
    """Pieces as one column, a line end before and after each."""
    return b"\n" + b"\n".join(pieces) + b"\n"


def _bad_digits(column: bytes) -> set[int]:
    """Which fields of a :func:`_column` are neither empty nor canonical unsigned
    numbers below 9 * 10^18, counted from 0 (``core.spec``'s ``_bad_numbers``,
    on line ends: a piece may hold '|' here)."""
    classes = column.translate(_DIGIT_CLASSES)
    bad: set[int] = set()

    def fields(text: bytes, pattern: bytes, shift: int = 0) -> None:
        found = text.find(pattern)
        while found >= 0:
            bad.add(classes.count(b"\n", 0, found + shift) - 1)
            found = text.find(pattern, classes.find(b"\n", found + 1))

    if b"x" in classes:
        fields(classes, b"x")
    if _TOO_LONG in classes:
        fields(classes, _TOO_LONG)
    found = classes.find(_NINETEEN)
    while found >= 0:
        if column[found + 1] == 0x39:  # '9'
            bad.add(classes.count(b"\n", 0, found))
        found = classes.find(_NINETEEN, found + 20)
    if b"\n0" in column and column.count(b"\n0") != column.count(b"\n0\n"):  # perhaps a leading zero
        found = column.find(b"\n0")
        while found >= 0:
            if column[found + 2] != 0x0A:
                bad.add(column.count(b"\n", 0, found))
            found = column.find(b"\n0", found + 1)
    return bad


def _good_float(piece: bytes) -> bool:
    return bool(_FLOAT_BYTES.fullmatch(piece)) and math.isfinite(float(piece))


def _floats_plain(column: list[bytes], optional: bool) -> bool:
    """Whether every piece of a float column is one (or empty, if ``optional``): a few C-level passes."""
    joined = _column(column)
    if joined.translate(None, _FLOAT_CHARS) or any(ban in joined for ban in _FLOAT_ONLY_PYTHON):
        return False
    if optional and b"\n\n" in joined:
        column = _nulled(joined, b"nan")
    try:
        values = list(map(float, column))
    except ValueError:
        return False
    return _INF not in values and -_INF not in values


def _nulled(joined: bytes, null: bytes) -> list[bytes]:
    """The pieces of a :func:`_column`, each empty one made ``null`` (two
    passes: one replace leaves every second of adjacent empties)."""
    replacement = b"\n" + null + b"\n"
    joined = joined.replace(b"\n\n", replacement).replace(b"\n\n", replacement)
    return joined[1:-1].split(b"\n")


class SchemaChunk(_Chunk):
    """``core.spec``'s chunk for a schema other than v1: its exact path is
    :meth:`Compiled.check`, its windows are checked a column at a time."""

    def __init__(self, schema: Compiled) -> None:
        super().__init__()
        self.schema = schema
        self.run_bytes = schema.run_bytes
        self.unescape = False  # whether the window's pieces are JSON-escaped

    def _exact(self, line: bytes, number: int) -> tuple[bytes, bytes] | None:
        outcome = self.schema.check(line)
        if outcome is None:
            self.blank += 1
        elif isinstance(outcome, str):
            self.rejects.append(Reject(number, outcome, raw_text(line)))
        else:
            return outcome
        return None

    def window(self, run: bytes) -> None:
        """Add a run of '\\n'-terminated lines, valid UTF-8, at most a window long."""
        schema = self.schema
        count = schema.fields
        skeleton = run.translate(None, schema.field_bytes)
        escaped = run
        if schema.escape_first:
            for char, escape in _ESCAPES:
                if char in escaped:
                    escaped = escaped.replace(char, escape)  # changes no line's skeleton
        pieces = escaped.replace(b"\n", schema.delimiter_byte).split(schema.delimiter_byte)
        pieces.pop()  # after the last line's delimiter
        unescape = self.unescape = escaped is not run
        bad: list[tuple[int, bytes]] = []  # (line, its text), in line order
        width = len(schema.line_skeleton)
        if len(skeleton) % width == 0 and skeleton == schema.skeleton[: len(skeleton)]:
            lines = len(skeleton) // width
        else:  # lines of other than ``count`` fields, or with a control character: take their pieces out
            shapes = skeleton.split(b"\n")
            shapes.pop()
            lines = len(shapes)
            expected = schema.line_skeleton[:-1]
            start = 0
            taken: list[tuple[int, int, int]] = []  # (line, first piece, pieces)
            for line, shape in enumerate(shapes):
                fields = shape.count(schema.delimiter_byte) + 1
                if shape != expected:
                    taken.append((line, start, fields))
                start += fields
            for line, first, fields in reversed(taken):
                bad.append((line, _unsplit(pieces[first : first + fields], unescape, schema.delimiter_byte)))
                del pieces[first : first + fields]
            bad.reverse()
        wrong = self._bad_lines(pieces)  # counted among the lines left
        if wrong:
            for index in sorted(wrong, reverse=True):
                line = index
                for taken_line, _ in bad:  # the lines taken out before it
                    if taken_line <= line:
                        line += 1
                text = _unsplit(pieces[count * index : count * (index + 1)], unescape, schema.delimiter_byte)
                bad.append((line, text))
                del pieces[count * index : count * (index + 1)]
            bad.sort()
        base = self.lines
        self.lines += lines
        self._merge(pieces, count, bad, base)

    def _bad_lines(self, pieces: list[bytes]) -> set[int]:
        """Which lines of aligned pieces break a rule of a plain line, or may:
        the exact path decides those."""
        schema = self.schema
        count = schema.fields
        lines = len(pieces) // count
        bad: set[int] = set()
        if not lines:
            return bad
        # An empty field where it may not be; the optional columns' empties,
        # often many, counted first, so that only a bad one is looked for.
        if not all(pieces) and (
            schema.all_empty_bad or pieces.count(b"") > sum(pieces[k::count].count(b"") for k in schema.empty_ok)
        ):
            for k in schema.empty_bad:
                column = pieces[k::count]
                if b"" in column:
                    index = column.index(b"")
                    while True:
                        bad.add(index)
                        try:
                            index = column.index(b"", index + 1)
                        except ValueError:
                            break
        if schema.ints or schema.uints:
            # The signed columns, signs removed, then the unsigned ones: one column, checked at once.
            numbers = b""
            if schema.ints:
                signed, wrong = _unsigned(_column([piece for k in schema.ints for piece in pieces[k::count]]), b"\n")
                bad.update(field % lines for field in wrong)
                numbers = signed
            if schema.uints:
                unsigned = b"\n".join([piece for k in schema.uints for piece in pieces[k::count]]) + b"\n"
                numbers = (numbers or b"\n") + unsigned
            bad.update(field % lines for field in _bad_digits(numbers))
        for k, optional in schema.floats:
            column = pieces[k::count]
            if not _floats_plain(column, optional):
                bad.update(i for i, piece in enumerate(column) if not ((optional and not piece) or _good_float(piece)))
        for k, table in schema.bools:
            column = pieces[k::count]
            if not table.keys() >= set(column):
                bad.update(i for i, piece in enumerate(column) if piece not in table)
        unescape = self.unescape
        for k, raw, escaped, max_bytes in schema.strings:
            column = pieces[k::count]
            allowed = escaped if unescape else raw
            if allowed is not None and not allowed >= set(column):
                bad.update(i for i, piece in enumerate(column) if piece not in allowed)
            if max_bytes is not None and max(map(len, column)) > max_bytes:
                # An escaped piece is longer than its text: the exact path measures it.
                bad.update(i for i, piece in enumerate(column) if len(piece) > max_bytes)
        return bad

    def _add(self, pieces: list[bytes]) -> None:
        """Add plain lines given as aligned pieces: their columns converted to
        JSON where the template cannot hold them as they are, then formatted."""
        schema = self.schema
        count = schema.fields
        lines = len(pieces) // count
        if not lines:
            return
        group = schema.group
        keys: list[bytes] | None = None
        if group is not None:
            keys = pieces[group::count]
            if schema.group_kind == "bool":
                keys = list(map(_BOOL_JSON_PLAIN.__getitem__, keys))
            elif schema.group_kind == "string" and self.unescape:
                keys = _unsplit(keys, True, b"\n").split(b"\n")
        for k in schema.escape_columns:
            joined = b"\n".join(pieces[k::count])
            if b"\\" in joined or b'"' in joined:
                for char, escape in _ESCAPES:
                    joined = joined.replace(char, escape)
                pieces[k::count] = joined.split(b"\n")
        for k, optional in schema.floats:
            column = pieces[k::count]
            if optional and b"" in column:
                column = _nulled(_column(column), b"nan")  # msgspec writes NaN as null
            pieces[k::count] = _ENCODER.encode(list(map(float, column)))[1:-1].split(b",")
        for k, table in schema.bools:
            pieces[k::count] = list(map(table.__getitem__, pieces[k::count]))
        for k, quote in schema.nulls:
            column = pieces[k::count]
            if quote:
                joined = _column(column).replace(b"\n", b'"\n"')[1:-1]  # each piece quoted
                joined = joined.replace(b'\n""\n', b"\nnull\n").replace(b'\n""\n', b"\nnull\n")
                pieces[k::count] = joined[1:-1].split(b"\n")
            elif b"" in column:
                pieces[k::count] = _nulled(_column(column), b"null")
        records = (schema.format[: len(schema.line_format) * lines] % tuple(pieces)).split(b"\n")
        records.pop()  # after the last '\n'
        if keys is None:
            self.groups[b""].extend(records)
        else:
            # C-level bucketing: list.append mapped over (the line's group's records, record).
            deque(map(list.append, map(self.groups.__getitem__, keys), records), maxlen=0)
