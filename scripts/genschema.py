"""Lines for any schema, with the real mix: what ``scripts/genlog.sh --schema FILE`` writes.

    python3 scripts/genschema.py SCHEMA LINES GROUPS SEED   (lines on stdout)

Standard library only (``tomllib``), so that genlog.sh needs no installed
mpevents. Each field gets values of its type: numbers of every size (up to
nanosecond timestamps), floats
as applications print them (``12.5``, ``0.003``, ``1E3``), bools as ``true``,
``false``, ``1`` and ``0``; a string field takes its ``values``, or one of
three pools by its place (users, 45% outside ASCII; events; long messages),
with about 1% holding a '"' or a '\\'; an optional field is empty 30% of the
time. The ``group_by`` field takes GROUPS values. One line in 200 is broken,
spread over nine kinds: a missing field, an extra field, an empty field, a
tab in a string, a number with a letter, a '+' sign, a 20-digit number, a
value not among ``values`` (or an invalid float), a blank line.
"""

from __future__ import annotations

import random
import sys
import tomllib
from collections.abc import Callable
from typing import Any

USERS = [
    "tom",
    "alice",
    "bob",
    "carol",
    "dave",
    "eve",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "oscar",
    "peggy",
    "trent",
    "victor",
    "walter",
    "admin",
    "svc-backup",
    "j.doe",
    "m_smith",
    "guest42",
]
INTL = [
    "José",
    "Łukasz",
    "Zoë",
    "François",
    "Müller",
    "Søren",
    "Dvořák",
    "Ångström",
    "Björk",
    "Çelik",
    "Nguyễn Văn An",
    "Ólafur",
    "山田太郎",
    "李娜",
    "王伟",
    "佐藤花子",
    "김민준",
    "Иван",
    "Ольга",
    "Дмитрий",
    "Γιώργος",
    "Ζωή",
    "Αλέξανδρος",
    "محمد",
    "דוד",
    "राहुल",
    "Thảo",
    "Ђорђе",
    "Renée 🎉",
    "ひろし",
]
EVENTS = [
    "appsetup",
    "login",
    "logout",
    "page view",
    "add to cart",
    "checkout",
    "search",
    "error report",
    "session start",
    "file upload",
]
MESSAGES = [
    "GET /api/v1/items?page=2 returned 200 in 12 ms",
    "user signed in from a new device, second factor accepted",
    "payment authorised by the gateway after one retry",
    "Überprüfung abgeschlossen: keine Fehler gefunden, 3 Warnungen",
    "ジョブが完了しました（処理件数 1,204 件）",
    "cache miss for key cart:1234, loaded from the primary in 4 ms",
    "Задание выполнено, следующий запуск через 5 минут",
]
QUOTED = ['O"Brien', "CORP\\jsmith", 'say "hi"', "C:\\temp\\app", '"quoted"', "back\\slash"]
BROKEN = ("missing", "extra", "empty", "tab", "alpha", "plus", "long", "values", "blank")


def _string_pool(rng: random.Random, index: int) -> Callable[[], str]:
    kind = index % 3
    if kind == 0:
        return lambda: rng.choice(INTL) if rng.random() < 0.45 else rng.choice(USERS)
    if kind == 1:
        return lambda: rng.choice(EVENTS)
    return lambda: rng.choice(MESSAGES)


def _value_maker(
    rng: random.Random, field: dict[str, Any], index: int, groups: int, grouped: bool
) -> Callable[[], str]:
    kind = field["type"]
    if grouped:
        if kind == "uint":
            return lambda: str(rng.randint(1, groups))
        if kind == "int":
            return lambda: str(rng.randint(1, groups) - groups // 2)
        if kind == "bool":
            return lambda: rng.choice(("true", "false"))
        hosts = [f"web-{i:03d}" if i % 10 else f"hôte-{i}" for i in range(1, groups + 1)]
        return lambda: rng.choice(hosts)
    if kind == "uint":
        # Counts, sizes, and nanosecond timestamps (19 digits).
        return lambda: str(
            rng.choice((rng.randint(0, 999), rng.randint(0, 10**6), rng.randint(15 * 10**17, 18 * 10**17)))
        )
    if kind == "int":
        return lambda: str(rng.randint(-(10**6), 10**6))
    if kind == "float":
        return lambda: rng.choice((f"{rng.uniform(0, 1000):.3f}", f"{rng.uniform(-50, 50):.1f}", "1E3", "0.003"))
    if kind == "bool":
        return lambda: rng.choice(("true", "false", "1", "0"))
    if "values" in field:
        values = field["values"]
        return lambda: rng.choice(values)
    pool = _string_pool(rng, index)
    limit = field.get("max_bytes")

    def string() -> str:
        text = rng.choice(QUOTED) if rng.random() < 0.01 else pool()
        return text if limit is None or len(text.encode()) <= limit else rng.choice(USERS)[:limit]

    return string


def main(argv: list[str]) -> int:
    path, lines, groups, seed = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    with open(path, "rb") as handle:
        schema = tomllib.load(handle)
    fields = schema["field"]
    delimiter = schema.get("delimiter", "|")
    rng = random.Random(seed)
    group_by = schema.get("group_by")
    makers = [_value_maker(rng, field, i, groups, field["name"] == group_by) for i, field in enumerate(fields)]
    optional = [field.get("optional", False) for field in fields]
    strings = [i for i, field in enumerate(fields) if field["type"] == "string"]
    numbers = [i for i, field in enumerate(fields) if field["type"] in ("uint", "int") and field["name"] != group_by]
    checked = [i for i, field in enumerate(fields) if "values" in field or field["type"] == "float"]
    out = sys.stdout.buffer
    batch = []
    for number in range(1, lines + 1):
        values = [
            ("" if opt and rng.random() < 0.3 else make()).replace(delimiter, " ")
            for make, opt in zip(makers, optional)
        ]
        if numbers and values[numbers[0]]:
            values[numbers[0]] = str(number)  # a line number, as an id would be
        if rng.random() < 0.005:
            kind = rng.choice(BROKEN)
            if kind == "missing" and len(values) > 1:
                del values[rng.randrange(len(values))]
            elif kind == "extra":
                values.append("extra")
            elif kind == "empty":
                values[rng.randrange(len(values))] = ""
            elif kind == "tab" and strings and delimiter != "\t":
                values[rng.choice(strings)] += "\tx"
            elif kind == "alpha" and numbers:
                values[rng.choice(numbers)] = "12a"
            elif kind == "plus" and numbers:
                values[rng.choice(numbers)] = "+" + values[numbers[-1]].lstrip("-")
            elif kind == "long" and numbers:
                values[rng.choice(numbers)] = "1" + "0" * 19
            elif kind == "values" and checked:
                values[rng.choice(checked)] = "unknown"
            elif kind == "blank":
                values = []
        batch.append(delimiter.join(values).encode() + b"\n")
        if len(batch) >= 10_000:
            out.write(b"".join(batch))
            batch.clear()
    out.write(b"".join(batch))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
