"""Reading CSV and JSON-lines input into numbered records (imports and `events ingest`).

Every problem is reported as `line N: column: problem`; nothing here writes anything.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

from outreach_cli.domain.errors import InvalidInput

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


def iter_lines(data: bytes | IO[bytes], source: str) -> Iterator[str]:
    """The input's lines, decoded one at a time (a file is never held whole in memory).

    Lines end at `\\n`, `\\r\\n` or a lone `\\r` (as a text file opened with ``newline=""``
    splits them); a byte that is not UTF-8 stops the reading with `line N: not UTF-8 text`,
    N counted by `\\n` as `decode` does.
    """
    stream = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    for n, raw in enumerate(stream, start=1):
        if n == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                f"{source}: line {n}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
            ) from None
        if "\r" in (text[:-2] if text.endswith("\r\n") else text[:-1]):  # a lone \r ends a line (old Mac files)
            yield from (piece for piece in _CR_SPLIT.split(text) if piece)
        else:
            yield text


_CR_SPLIT = re.compile(r"(?<=\r)(?!\n)")


def peek_text(lines: Iterator[str], limit: int = 1000) -> tuple[str, Iterator[str]]:
    """The start of the input up to its first non-blank line (for sniffing), and all its lines."""
    head: list[str] = []
    for line in lines:
        head.append(line)
        if line.strip() or len(head) >= limit:
            break
    return "".join(head), itertools.chain(head, lines)


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


class ErrorSink(Protocol):
    """Where problems go: a list of messages, or anything that appends and counts them."""

    def append(self, message: str, /) -> None: ...

    def __len__(self) -> int: ...


def _lines(text: str | Iterable[str]) -> Iterator[str]:
    # StringIO(newline="") splits at \n, \r\n and \r, as iter_lines does.
    return iter(io.StringIO(text, newline="")) if isinstance(text, str) else iter(text)


def read_records(
    text: str | Iterable[str], fmt: str, *, columns: tuple[str, ...], errors: ErrorSink
) -> Iterator[Record]:
    """Yields records from the text or its lines (streamed); appends `line N: ...` problems to
    ``errors`` (bad lines are not yielded)."""
    if fmt == "jsonl":
        yield from _read_jsonl(_lines(text), columns, errors)
    else:
        yield from _read_csv(_lines(text), columns, errors)


def _check_cells(line: int, values: dict[str, Any], errors: ErrorSink) -> bool:
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


def _read_csv(lines: Iterator[str], columns: tuple[str, ...], errors: ErrorSink) -> Iterator[Record]:
    # Excel's "sep=;" first line names the delimiter; otherwise a header with semicolons and no
    # commas is a semicolon-separated export (European spreadsheets).
    first = next(lines, None)
    if first is None:
        raise InvalidInput("the input is empty: expected a header row with " + ", ".join(columns))
    delimiter = ","
    sep = re.fullmatch(r"\s*sep=(.)\s*", first.removesuffix("\n"))
    if sep:
        delimiter = sep.group(1)
        first = next(lines, "")  # the header, on line 2
        lines = itertools.chain(["\n", first], lines)  # keep line numbers: a blank line 1
    elif ";" in first and "," not in first:
        delimiter = ";"
    if not sep:
        lines = itertools.chain([first], lines)
    reader = csv.reader(lines, strict=True, delimiter=delimiter)
    if sep:
        next(reader, None)
    names = _csv_header(reader, columns)
    yield from _csv_rows(reader, names, errors)


def _csv_header(reader: Any, columns: tuple[str, ...]) -> list[str]:
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
    return names


def _csv_rows(reader: Any, names: list[str], errors: ErrorSink) -> Iterator[Record]:
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


def json_objects(text: str | Iterable[str], errors: ErrorSink) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each JSON-lines object of the text or its lines (streamed);
    blank lines skipped, problems noted."""
    pieces = text.splitlines() if isinstance(text, str) else (p for t in text for p in t.splitlines())
    for i, raw in enumerate(pieces, start=1):
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


def _read_jsonl(lines: Iterator[str], columns: tuple[str, ...], errors: ErrorSink) -> Iterator[Record]:
    for i, obj in json_objects(lines, errors):
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
