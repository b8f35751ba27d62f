"""A schema compiled for checking lines: the exact path and the bulk path of any schema.

Owns what ``core.spec`` does for v1, for a schema read from a file
(``core.schema``): :meth:`Compiled.check`, the exact path, applies the
issue's rules field after field and encodes with msgspec; :class:`SchemaChunk`
is ``core.spec``'s chunk with a bulk path of its own: a window of lines
checked at once by one regular expression of a plain line of the schema
(:func:`plain_lines`), cut into fields, a few columns converted, the records
made from a template built from the schema. The built-in v1 never comes
here: ``core.spec`` keeps its own path for it, tuned to its seven fields.
Pure, like ``core.spec``, which calls it (:func:`compiled`).
"""

from __future__ import annotations

import functools
import math
import re
from collections import deque
from collections.abc import Sequence
from typing import Any, Final

import msgspec

from mpevents.core.schema import Field, Schema
from mpevents.core.spec import (
    _ESCAPES,
    _RUN_BYTES,
    Reject,
    _Chunk,
    _parse_int,
    _parse_uint,
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
        """What the bulk path needs: the pattern of a window of plain lines,
        the record template, and which columns get which conversion."""
        count = self.fields
        self.delimiter_byte = schema.delimiter.encode()
        self.plain_lines = plain_lines(schema)
        max_lines = self.run_bytes // count + 1  # a plain line has count - 1 delimiters and a line end, at least
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
        self.floats = [(k, field.optional) for k, field in columns if field.type == "float"]
        self.bools = [
            (k, _BOOL_JSON if field.optional else _BOOL_JSON_PLAIN) for k, field in columns if field.type == "bool"
        ]
        self.nulls = [
            (k, field.type == "string")
            for k, field in columns
            if field.optional and field.type in ("uint", "int", "string")
        ]
        self.escape_columns = [] if self.escape_first else [k for k, field in columns if field.type == "string"]
        group = self.group
        self.group_kind = None if group is None else schema.fields[group].type

    def plain_end(self, run: bytes, pos: int = 0) -> int:
        """Where the first line of ``run`` from ``pos`` on that is not plain begins, or the run's end."""
        found = self.plain_lines.match(run, pos)
        assert found is not None  # the pattern matches no line too
        return found.end()

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


# --- the pattern of plain lines -----------------------------------------------
#
# A window's lines are checked at once by one regular expression of what a
# plain line is: a line it matches breaks no rule, and the template can hold
# its pieces as they are (a few columns converted). It is stricter than the
# rules where that keeps it simple: a number with a leading zero, a uint or
# an int of 19 digits from 9e18 on, "-0", a float with an exponent of three
# digits or more than 200 digits before its point (which could overflow) do
# not match, and the exact path decides them. No field's pattern matches the
# delimiter, so a match cuts a line where ``split`` does. Repeats of one
# character are possessive (no step back); groups are not: Python 3.11.0 to
# 3.11.4 leave a possessive group that matched in part where it stopped
# (CPython gh-106052), and each optional group begins with a byte that cannot
# follow its field, so its step back costs one test.

_CONTROL_BYTES: Final = bytes(range(0x20)) + b"\x7f"

_DIGITS: Final = "0123456789"


def _set(chars: str, delimiter: str) -> str:
    """A character class of ``chars`` but the delimiter."""
    return "[" + re.escape("".join(char for char in chars if char != delimiter)) + "]"


_TRIE_NESTING: Final = 100
"""The deepest a pattern of allowed values nests (a level for each place
where values that begin alike part, or one ends where others go on), beyond
which the plain alternation is used: sre's parser recurses once for each."""


class _TooDeep(Exception):
    """A trie of allowed values nests deeper than _TRIE_NESTING."""


def _one_of(texts: Sequence[str], delimiter: str) -> str:
    """A pattern of the texts that can be a field; one that never matches if none.

    Shaped as a trie (texts that share a beginning share its test), so that
    a field of thousands of allowed values costs a few tests, not one per
    value: an alternation of 5,000 short values cost 20 times v1's bytes.
    """
    usable = sorted({text for text in texts if delimiter not in text})
    if not usable:
        return "(?!)"
    trie: dict[str, dict[str, Any]] = {}
    for text in usable:
        node = trie
        for char in text:
            node = node.setdefault(char, {})
        node[""] = {}  # a text ends here
    try:
        return _trie_pattern(trie, 0)
    except _TooDeep:  # e.g. a chain of texts, each beginning the next
        return "(?:" + "|".join(map(re.escape, sorted(usable, key=len, reverse=True))) + ")"


def _trie_pattern(node: dict[str, dict[str, Any]], depth: int) -> str:
    """The pattern of what follows ``node``: each branch a run of characters,
    optional where a text ends at ``node`` (greedy: a longer text is tried
    first, and the delimiter after the field decides)."""
    if depth > _TRIE_NESTING:
        raise _TooDeep
    branches = []
    for char in sorted(key for key in node if key):
        run, child = [char], node[char]
        while len(child) == 1 and "" not in child:  # one way on: no branch
            ((following, child),) = child.items()
            run.append(following)
        branches.append(re.escape("".join(run)) + _trie_pattern(child, depth + 1))
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?>" + "|".join(branches) + ")"
    return f"(?:{body})?" if "" in node else body


def _field_pattern(field: Field, delimiter: str, alone: bool, longest: int) -> str:
    """What a plain field of ``field`` is; ``alone``: the line's only field,
    never empty (an empty line is blank, not a record); ``longest``: the
    longest line's bytes."""
    digit = _set(_DIGITS, delimiter)
    # Below 9e18, without a step back: 19 digits at most if the first is 1 to 8, 18 if it is 9.
    nine = "" if delimiter == "9" else f"|9{digit}{{0,17}}+"
    natural = f"(?:{_set('12345678', delimiter)}{digit}{{0,18}}+{nine})"
    sign = "" if delimiter == "-" else "-?"
    if field.type == "uint":
        pattern = f"(?:0|{natural})" if delimiter != "0" else natural
    elif field.type == "int":
        pattern = f"(?:{sign}{natural}|0)" if delimiter != "0" else f"{sign}{natural}"
    elif field.type == "float":
        point = "" if delimiter == "." else f"(?:\\.{digit}++)?"
        exponent = f"(?:{_set('eE', delimiter)}{_set('+-', delimiter)}?{digit}{{1,2}}+)?"
        pattern = f"{sign}{digit}{{1,200}}+{point}{exponent}"
    elif field.type == "bool":
        pattern = _one_of(["true", "false", "1", "0"], delimiter)
    elif field.values is not None:  # those that pass the rules checked before and with it
        limit = field.max_bytes
        pattern = _one_of(
            [
                value
                for value in field.values
                if value and not _CONTROL.search(value) and (limit is None or len(value.encode()) <= limit)
            ],
            delimiter,
        )
    else:
        text = "[^" + re.escape(_CONTROL_BYTES.decode() + delimiter) + "]"
        least = 0 if field.optional and not alone else 1
        # No field is longer than a line: a bigger limit is none (and past what sre can count).
        most = "" if field.max_bytes is None or field.max_bytes >= longest else str(field.max_bytes)
        return f"{text}{{{least},{most}}}+"  # bytes: max_bytes counts UTF-8 bytes, as the rule does
    return f"(?:{pattern})?" if field.optional and not alone else pattern


def plain_lines(schema: Schema) -> re.Pattern[bytes]:
    """The pattern of a run of plain lines: ``match(run, pos).end()`` is where
    the first line from ``pos`` that is not plain begins (or the run's end)."""
    delimiter = schema.delimiter
    alone = len(schema.fields) == 1
    fields = [_field_pattern(field, delimiter, alone, schema.max_line_bytes) for field in schema.fields]
    line = re.escape(delimiter).join(fields) + "\n"
    return re.compile(f"(?>{line})*".encode())


def _column(pieces: list[bytes]) -> bytes:
    """Pieces as one column, a line end before and after each."""
    return b"\n" + b"\n".join(pieces) + b"\n"


def _nulled(joined: bytes, null: bytes) -> list[bytes]:
    """The pieces of a :func:`_column`, each empty one made ``null`` (two
    passes: one replace leaves every second of adjacent empties)."""
    replacement = b"\n" + null + b"\n"
    joined = joined.replace(b"\n\n", replacement).replace(b"\n\n", replacement)
    return joined[1:-1].split(b"\n")


class SchemaChunk(_Chunk):
    """``core.spec``'s chunk for a schema other than v1: its exact path is
    :meth:`Compiled.check`, its windows are checked by :func:`plain_lines`."""

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
        end = len(run)
        plain = schema.plain_end(run)
        bad: list[tuple[int, bytes]] = []  # (line, its text), in line order
        if plain < end:  # a line that is not plain: its text goes to the exact path
            kept, line, start = [], 0, 0
            while True:
                if plain > start:
                    kept.append(run[start:plain])
                    line += run.count(b"\n", start, plain)
                if plain == end:
                    break
                start = run.index(b"\n", plain) + 1
                bad.append((line, run[plain : start - 1]))
                line += 1
                plain = schema.plain_end(run, start)
            run = b"".join(kept)
        escaped = run
        if schema.escape_first:
            for char, escape in _ESCAPES:
                if char in escaped:
                    escaped = escaped.replace(char, escape)  # changes no line's delimiters
        self.unescape = escaped is not run
        pieces = escaped.replace(b"\n", schema.delimiter_byte).split(schema.delimiter_byte)
        pieces.pop()  # after the last line's delimiter
        base = self.lines
        self.lines += len(pieces) // schema.fields + len(bad)
        self._merge(pieces, schema.fields, bad, base)

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
                joined = b"\n".join(keys)
                if b"\\" in joined:  # a group's name with an escaped '"' or '\\' in it
                    keys = _unsplit([joined], True, b"\n").split(b"\n")
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
