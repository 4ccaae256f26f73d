"""Reading CSV and JSON-lines input into numbered records (imports and `events ingest`).

Every problem is reported as `line N: column: problem`; nothing here writes anything.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from outreach_cli.core.errors import InvalidInput

MAX_FIELD = 10_000  # characters; a longer cell is almost certainly a broken file

csv.field_size_limit(1_000_000)


@dataclass
class Record:
    line: int
    values: dict[str, Any]


def decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InvalidInput(
            f"{source}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None


def detect_format(text: str, source: str, explicit: str | None) -> str:
    if explicit:
        fmt = explicit.lower()
        if fmt not in ("csv", "jsonl"):
            raise InvalidInput(f"--input-format {explicit!r}: choose csv or jsonl")
        return fmt
    low = source.lower()
    if low.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if low.endswith((".csv", ".tsv", ".txt")):
        return "csv"
    stripped = text.lstrip()
    return "jsonl" if stripped.startswith("{") else "csv"


def read_records(text: str, fmt: str, *, columns: tuple[str, ...], errors: list[str]) -> Iterator[Record]:
    """Yields records; appends `line N: ...` problems to ``errors`` (bad lines are not yielded)."""
    if fmt == "jsonl":
        yield from _read_jsonl(text, columns, errors)
    else:
        yield from _read_csv(text, columns, errors)


def _check_cells(line: int, values: dict[str, Any], errors: list[str]) -> bool:
    ok = True
    for k, v in values.items():
        if isinstance(v, str) and len(v) > MAX_FIELD:
            errors.append(f"line {line}: {k}: value is {len(v):,} characters long (at most {MAX_FIELD:,})")
            ok = False
        if isinstance(v, str) and "\x00" in v:
            errors.append(f"line {line}: {k}: contains a NUL character")
            ok = False
    return ok


def column_name(header: str) -> str:
    """A header as spreadsheets write it, as the column it names: `Patient ID` -> `patient_id`."""
    return re.sub(r"[\s\-]+", "_", header.strip().lower())


def _read_csv(text: str, columns: tuple[str, ...], errors: list[str]) -> Iterator[Record]:
    # Excel's "sep=;" first line names the delimiter; otherwise a header with semicolons and no
    # commas is a semicolon-separated export (European spreadsheets).
    first, _, rest = text.partition("\n")
    delimiter = ","
    sep = re.fullmatch(r"\s*sep=(.)\s*", first)
    if sep:
        delimiter = sep.group(1)
        text = "\n" + rest  # keep line numbers: the header stays on line 2
        first = rest.partition("\n")[0]
    elif ";" in first and "," not in first:
        delimiter = ";"
    reader = csv.reader(io.StringIO(text, newline=""), strict=True, delimiter=delimiter)
    if sep:
        next(reader, None)
    try:
        header = next(reader)
    except StopIteration:
        raise InvalidInput("the input is empty: expected a header row with " + ", ".join(columns)) from None
    except csv.Error as exc:
        raise InvalidInput(f"line 1: cannot read the header row: {exc}") from None
    names = [column_name(h) for h in header]
    unknown = [n for n in names if n and n not in columns]
    if unknown:
        raise InvalidInput(
            "line 1: unknown column(s) "
            + ", ".join(repr(u) for u in unknown)
            + "; the columns are "
            + ", ".join(columns)
        )
    dup = sorted({n for n in names if n and names.count(n) > 1})
    if dup:
        raise InvalidInput("line 1: column(s) named twice: " + ", ".join(dup))
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.append(f"line {reader.line_num}: malformed CSV: {exc}")
            return
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(names):
            errors.append(f"line {line}: expected {len(names)} fields (as in the header), found {len(row)}")
            continue
        values = {n: c for n, c in zip(names, row, strict=True) if n}
        if _check_cells(line, values, errors):
            yield Record(line, values)


def json_objects(text: str, errors: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each JSON-lines object; blank lines skipped, problems noted."""
    for i, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            errors.append(f"line {i}: not valid JSON: {exc.msg} at column {exc.colno}")
            continue
        if not isinstance(obj, dict):
            errors.append(f"line {i}: expected a JSON object, found {type(obj).__name__}")
            continue
        yield i, obj


def _read_jsonl(text: str, columns: tuple[str, ...], errors: list[str]) -> Iterator[Record]:
    for i, obj in json_objects(text, errors):
        unknown = [k for k in obj if k not in columns]
        if unknown:
            errors.append(f"line {i}: unknown key(s) " + ", ".join(repr(u) for u in unknown))
            continue
        values: dict[str, Any] = {}
        bad = False
        for k, v in obj.items():
            if v is None:
                values[k] = ""
            elif isinstance(v, bool):
                values[k] = "true" if v else "false"
            elif isinstance(v, (int, float, str)):
                values[k] = v if k == "amount_cents" and isinstance(v, int) else str(v)
            else:
                errors.append(f"line {i}: {k}: expected a string or number, found {type(v).__name__}")
                bad = True
        if not bad and _check_cells(i, values, errors):
            yield Record(i, values)
