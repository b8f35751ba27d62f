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
from collections.abc import Callable
from typing import Final

import msgspec

from mpevents.core.schema import Field, Schema
from mpevents.core.spec import _RUN_BYTES, Reject, _Chunk, _parse_int, _parse_uint, raw_text

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

    def chunk(self, on_flush: Callable[[list[tuple[bytes, bytes]]], object] | None = None) -> SchemaChunk:
        """A chunk's results to build, for :func:`~mpevents.core.spec.process_chunk_parts`."""
        return SchemaChunk(self, on_flush)

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


class SchemaChunk(_Chunk):
    """``core.spec``'s chunk for a schema other than v1."""

    def __init__(self, schema: Compiled, on_flush: Callable[[list[tuple[bytes, bytes]]], object] | None) -> None:
        super().__init__(on_flush)
        self.schema = schema
        self.run_bytes = schema.run_bytes

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
        lines = run.split(b"\n")
        lines.pop()
        for line in lines:
            self.line(line)
