"""The record format: a schema, what its file says, and the built-in v1.

Owns the :class:`Schema` model, reading a schema file (TOML, with the
standard library's ``tomllib``) and refusing a bad one in one line naming
the key (:class:`SchemaError`, exit 2), the built-in v1 schema
(:data:`V1`), writing a schema back as TOML (``--print-schema``), drafting
one from a log's first lines (``--infer-schema``), a schema's hash (named
in summary.json) and its reason codes in check order. Pure: no I/O but
the reads of :func:`load` and :func:`infer_file`. Talks to: nothing; ``core.spec`` and
``core.fields`` check lines against a schema, the command line loads one.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from mpevents.core.errors import UsageError

FieldType = Literal["uint", "int", "float", "bool", "string"]
TYPES: Final[tuple[FieldType, ...]] = ("uint", "int", "float", "bool", "string")
DEFAULT_MAX_LINE_BYTES: Final = 65_536
NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""A field's name, which is its JSON key: no character JSON would escape."""
INFER_LINES: Final = 10_000
"""The lines --infer-schema looks at."""
INFER_DELIMITERS: Final = ("|", "\t", ",", ";")
INFER_SHARE: Final = 0.99
"""The share of the lines a delimiter must cut into one number of fields; the others are left out of the draft."""
INFER_VALUES: Final = 20
"""A string column of at most this many distinct values is drafted with ``values``."""


class SchemaError(UsageError):
    """A schema file that cannot be used: one line naming the file and the key."""


class Field(msgspec.Struct, frozen=True, gc=False):
    """One field of a line; ``name`` is its JSON key."""

    name: str
    type: FieldType
    optional: bool = False
    """An empty field is written as null instead of being refused."""
    values: tuple[str, ...] | None = None
    """String only: the only values allowed."""
    max_bytes: int | None = None
    """String only: the most UTF-8 bytes a value may have."""


class Schema(msgspec.Struct, frozen=True, gc=False):
    """A record format: the fields of a line, in order, and how lines are cut
    and grouped. Small and picklable: it travels to every worker and task."""

    fields: tuple[Field, ...]
    delimiter: str = "|"
    group_by: str | None = None
    """The field whose value names a record's group file; None: records.jsonl."""
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    name: str = ""

    @property
    def group_field(self) -> Field | None:
        return next((field for field in self.fields if field.name == self.group_by), None)

    @property
    def group_index(self) -> int | None:
        """The position of the group_by field, or None."""
        return next((i for i, field in enumerate(self.fields) if field.name == self.group_by), None)

    @property
    def numeric_groups(self) -> bool:
        """Whether group values sort as numbers (summary.json's ``groups``)."""
        field = self.group_field
        return field is not None and field.type in ("uint", "int")

    def same_format(self, other: Schema) -> bool:
        """Whether both read lines alike: everything but the name."""
        return (self.fields, self.delimiter, self.group_by, self.max_line_bytes) == (
            other.fields,
            other.delimiter,
            other.group_by,
            other.max_line_bytes,
        )

    def reasons(self) -> tuple[str, ...]:
        """Every reason a line can be refused for, in the order the checks run."""
        found = ["line_too_long", "invalid_utf8", "field_count"]
        for field in self.fields:
            if field.type == "string":
                found += [] if field.optional else ["empty_field"]
                found.append("control_char")
                if field.values is not None or field.max_bytes is not None:
                    found.append(f"bad_{field.name}")
            else:
                found.append(f"bad_{field.name}")
        return tuple(dict.fromkeys(found))  # empty_field and control_char once, where first checked

    def digest(self) -> str:
        """The SHA-256 of the schema's TOML text (:func:`to_toml`): the same for
        the same format however its file was written."""
        return hashlib.sha256(to_toml(self).encode()).hexdigest()


V1: Final = Schema(
    name="events-v1",
    delimiter="|",
    group_by="group_id",
    fields=(
        Field("id", "uint"),
        Field("log", "string"),
        Field("event", "string"),
        Field("user", "string"),
        Field("value", "int"),
        Field("group_id", "uint"),
        Field("timestamp", "uint"),
    ),
)
"""The built-in schema: the seven fields of ``id|log|event|user|value|group_id|timestamp``."""


# --- reading a schema file --------------------------------------------------

_TOP_KEYS: Final = ("name", "delimiter", "group_by", "max_line_bytes", "field")
_FIELD_KEYS: Final = ("name", "type", "optional", "values", "max_bytes")


def load(path: Path) -> Schema:
    """The schema in the TOML file ``path``; a file without ``name`` is named by its stem."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SchemaError(f"cannot read schema {str(path)!r}: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise SchemaError(f"schema {str(path)!r}: not UTF-8") from None
    return parse(text, str(path), default_name=path.stem)


def parse(text: str, source: str = "<schema>", *, default_name: str = "") -> Schema:
    """The schema in TOML ``text``; ``source`` names it in errors."""
    # Imported here, not with the module: a run without --schema never parses
    # TOML, and every run's main process imports this module (2-3 ms of its
    # start-up, which is the busiest non-worker thread of a short run).
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"schema {source!r}: not TOML: {exc}") from None
    return from_dict(data, source, default_name=default_name)


def from_dict(data: dict[str, Any], source: str = "<schema>", *, default_name: str = "") -> Schema:
    """The schema of a parsed TOML document, each key checked."""

    def fail(key: str, message: str) -> SchemaError:
        return SchemaError(f"schema {source!r}: {key}: {message}")

    for key in data:
        if key not in _TOP_KEYS:
            raise fail(key, f"unknown key (known: {', '.join(_TOP_KEYS)})")
    name = _typed(data, "name", str, default_name, fail)
    delimiter = _typed(data, "delimiter", str, "|", fail)
    if len(delimiter.encode()) != 1 or delimiter in "\n\r" or ord(delimiter) > 0x7F:
        raise fail("delimiter", f"must be one byte, not a line end nor above 0x7F, got {delimiter!r}")
    max_line_bytes = _typed(data, "max_line_bytes", int, DEFAULT_MAX_LINE_BYTES, fail)
    if not 1 <= max_line_bytes <= DEFAULT_MAX_LINE_BYTES:
        # The readers keep only the first 64 KiB of a longer line (``core.framing``).
        raise fail("max_line_bytes", f"must be 1 to {DEFAULT_MAX_LINE_BYTES}, got {max_line_bytes}")
    tables = data.get("field")
    if not isinstance(tables, list) or not tables or not all(isinstance(table, dict) for table in tables):
        raise fail("field", "give one [[field]] table per field, at least one")
    fields = tuple(_field(table, f"field[{i}]", fail) for i, table in enumerate(tables))
    seen: set[str] = set()
    for i, field in enumerate(fields):
        if field.name in seen:
            raise fail(f"field[{i}].name", f"{field.name!r} is the name of an earlier field")
        seen.add(field.name)
    group_by = _typed(data, "group_by", str, None, fail)
    if group_by is not None:
        group = next((field for field in fields if field.name == group_by), None)
        if group is None:
            raise fail("group_by", f"{group_by!r} names no field")
        if group.optional or group.type == "float":
            raise fail(
                "group_by", f"{group_by!r} is {'optional' if group.optional else 'a float'}: it cannot name a file"
            )
    return Schema(fields, delimiter, group_by, max_line_bytes, name)


_Fail = Callable[[str, str], SchemaError]


def _typed(data: dict[str, Any], key: str, kind: type, default: Any, fail: _Fail) -> Any:
    """``data[key]`` if it is of ``kind`` (a bool is no int), ``default`` if absent."""
    if key not in data:
        return default
    value = data[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise fail(key, f"must be {'a whole number' if kind is int else 'a ' + kind.__name__}, got {value!r}")
    return value


def _field(table: dict[str, Any], at: str, fail: _Fail) -> Field:
    def check(key: str, message: str) -> SchemaError:
        return fail(f"{at}.{key}", message)

    for key in table:
        if key not in _FIELD_KEYS:
            raise check(key, f"unknown key (known: {', '.join(_FIELD_KEYS)})")
    for key in ("name", "type"):
        if key not in table:
            raise fail(at, f"has no {key}")
    name = _typed(table, "name", str, None, check)
    if not NAME.fullmatch(name):
        raise check("name", f"must be a letter or '_', then letters, digits or '_', got {name!r}")
    kind = _typed(table, "type", str, None, check)
    if kind not in TYPES:
        raise check("type", f"must be one of {', '.join(TYPES)}, got {kind!r}")
    optional = _typed(table, "optional", bool, False, check)
    values = _typed(table, "values", list, None, check)
    max_bytes = _typed(table, "max_bytes", int, None, check)
    if kind != "string":
        for key in ("values", "max_bytes"):
            if key in table:
                raise check(key, f"is for string fields only; this one is {kind}")
    if values is not None and (not values or not all(isinstance(value, str) for value in values)):
        raise check("values", "must be a list of strings, at least one")
    if max_bytes is not None and max_bytes < 1:
        raise check("max_bytes", f"must be at least 1, got {max_bytes}")
    return Field(name, kind, optional, tuple(values) if values is not None else None, max_bytes)


# --- writing a schema -------------------------------------------------------


def toml_string(text: str) -> str:
    """A TOML basic string: what TOML forbids in one (control characters) escaped."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + re.sub("[\x00-\x1f\x7f]", lambda match: f"\\u{ord(match.group()):04x}", escaped) + '"'


def to_toml(schema: Schema) -> str:
    """The schema as a TOML file that :func:`parse` reads back as it is."""
    lines = []
    if schema.name:
        lines.append(f"name = {toml_string(schema.name)}")
    lines.append(f"delimiter = {toml_string(schema.delimiter)}")
    if schema.group_by is not None:
        lines.append(f"group_by = {toml_string(schema.group_by)}")
    lines.append(f"max_line_bytes = {schema.max_line_bytes}")
    for field in schema.fields:
        lines += ["", "[[field]]", f"name = {toml_string(field.name)}", f"type = {toml_string(field.type)}"]
        if field.optional:
            lines.append("optional = true")
        if field.values is not None:
            lines.append(f"values = [{', '.join(map(toml_string, field.values))}]")
        if field.max_bytes is not None:
            lines.append(f"max_bytes = {field.max_bytes}")
    return "\n".join(lines) + "\n"


# --- drafting a schema ------------------------------------------------------

_UINT: Final = re.compile(r"[0-9]{1,19}")
_INT: Final = re.compile(r"-?[0-9]{1,19}")
_FLOAT: Final = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_BOOLS: Final = frozenset(("true", "false", "1", "0"))
_NARROWEST_FIRST: Final[tuple[FieldType, ...]] = ("bool", "uint", "int", "float")
"""The types a draft tries, each accepting fewer values than the next (then string)."""


def _fits(kind: FieldType, value: str) -> bool:
    """Whether ``value`` (not empty) is one of ``kind``'s, roughly: a draft's types."""
    if kind == "bool":
        return value in _BOOLS
    if kind == "uint":
        return bool(_UINT.fullmatch(value)) and int(value) < 2**63
    if kind == "int":
        return bool(_INT.fullmatch(value)) and -(2**63) <= int(value) < 2**63
    if kind == "float":
        return bool(_FLOAT.fullmatch(value)) and abs(float(value)) != float("inf")
    return True


def infer(data: bytes, name: str = "") -> Schema:
    """A draft schema for the lines of ``data`` (its first :data:`INFER_LINES`):
    the delimiter of :data:`INFER_DELIMITERS` that cuts the most lines (at
    least :data:`INFER_SHARE` of them) into one number of fields, each field of the narrowest type
    every value fits, ``optional`` where a column has empties, ``values``
    for a string column of few distinct values. Raises :class:`UsageError`
    when no delimiter fits."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", "replace")
    lines = [line.removesuffix("\r") for line in text.split("\n")[:INFER_LINES]]
    lines = [line for line in lines if line]
    if not lines:
        raise UsageError("--infer-schema: the file has no line to infer from")
    best: tuple[int, int, str] | None = None  # (lines cut alike, fields, delimiter)
    for delimiter in INFER_DELIMITERS:
        counts = Counter(line.count(delimiter) + 1 for line in lines)
        width, alike = counts.most_common(1)[0]
        # A broken line or two (a field too many) do not hide the log's format.
        if width > 1 and alike >= INFER_SHARE * len(lines) and (best is None or (alike, width) > best[:2]):
            best = (alike, width, delimiter)
    if best is None:
        raise UsageError(
            "--infer-schema: no delimiter of '|', tab, ',' and ';' cuts the lines into the same number of fields"
        )
    _, count, delimiter = best
    columns = list(zip(*(parts for line in lines if len(parts := line.split(delimiter)) == count)))
    fields = [_draft_field(f"field{i}", column) for i, column in enumerate(columns, 1)]
    return Schema(tuple(fields), delimiter, None, DEFAULT_MAX_LINE_BYTES, name)


def infer_file(path: Path) -> Schema:
    """:func:`infer` on the first lines of the plain log ``path``, named by its stem."""
    if path.name.endswith((".gz", ".zst")):
        raise UsageError(f"--infer-schema reads a plain log; decompress {str(path)!r} first")
    head = bytearray()
    try:
        with open(path, "rb") as handle:
            while head.count(b"\n") < INFER_LINES and (block := handle.read(1 << 20)):
                head += block
    except OSError as exc:
        raise UsageError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    return infer(bytes(head), path.name.split(".")[0])


def _draft_field(name: str, column: Sequence[str]) -> Field:
    values = [value for value in column if value]
    optional = len(values) < len(column)
    for kind in _NARROWEST_FIRST:
        if values and all(_fits(kind, value) for value in values):
            return Field(name, kind, optional)
    distinct = _distinct(values)
    return Field(name, "string", optional, tuple(distinct) if 0 < len(distinct) <= INFER_VALUES else None)


def _distinct(values: Iterable[str]) -> list[str]:
    """The distinct values, sorted, or more than INFER_VALUES of them (unsorted) once there are that many."""
    found: set[str] = set()
    for value in values:
        found.add(value)
        if len(found) > INFER_VALUES:
            return list(found)
    return sorted(found)
