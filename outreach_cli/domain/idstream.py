"""Invoice-set IDs read from a pipe (SPEC section 7, `act ... -`).

Lines may be plain IDs (several on a line, separated by spaces or commas), JSON objects with an
`id` key, or TSV/CSV rows whose first field is the ID (a header row whose first field is `id`,
`invoice_set_id` or `set_id` is skipped); blank lines and `#` comments are ignored; duplicates
collapse (first occurrence keeps its place). Anything else is an error naming the line and the
value as it was typed.
"""

from __future__ import annotations

import json
import re

from outreach_cli.domain.errors import InvalidInput

_ID = re.compile(r"[0-9]{1,18}")
# A header row's first field: `list` calls the column `id`, `collections export`
# `invoice_set_id`, `audit` `set_id`.
HEADER_NAMES = ("id", "invoice_set_id", "set_id")


def _shown(token: str) -> str:
    return token if len(token) <= 40 else token[:40] + "..."


def _row_fields(line: str, sep: str) -> list[str]:
    import csv

    try:
        return [f.strip() for f in next(csv.reader([line], delimiter=sep))]
    except (csv.Error, StopIteration):
        return [line]


def _line_tokens(line: str) -> tuple[list[str], bool]:
    """The ID candidates of one non-JSON line, and whether the line is a header row.

    - TSV row (has a tab): the first field is the ID.
    - Commas: when every field is a number, every field is an ID (`20,27`); otherwise a CSV row
      whose first field is the ID.
    - Otherwise: whitespace-separated IDs (`20 27 30`, as `echo $(outreach list --format ids)`
      gives them).
    """
    if "\t" in line:
        fields = _row_fields(line, "\t")
    elif "," in line:
        fields = _row_fields(line, ",")
        values = [f for f in fields if f]
        if values and all(_ID.fullmatch(f) for f in values):
            return values, False
    else:
        fields = line.split()
        return fields, len(fields) == 1 and fields[0].lower() in HEADER_NAMES
    first = fields[0] if fields else ""
    return [first], first.lower() in HEADER_NAMES


_PLAIN = re.compile(r"[0-9 \r\n]*")


def parse_ids(text: str, source: str = "<stdin>") -> list[int]:
    """The IDs of ``text`` in order, duplicates collapsed (see the module docstring)."""
    if _PLAIN.fullmatch(text):
        # Only digits, spaces and line breaks (`list --format ids`, `echo 1 2 3`): every word is
        # an ID, as the line-by-line reading below would find, in one pass.
        words = text.split()
        if all(len(w) <= 18 for w in words):
            return list(dict.fromkeys(map(int, words)))
    return parse_lines(text, source)


def parse_lines(text: str, source: str = "<stdin>") -> list[int]:
    """`parse_ids` line by line: any mix of plain IDs, JSON lines and TSV/CSV rows."""
    out: list[int] = []
    seen: set[int] = set()
    problems: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff").strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {n}: not valid JSON: {exc.msg}")
                continue
            key = next((k for k in HEADER_NAMES if isinstance(obj, dict) and k in obj), None)
            if key is None:
                problems.append(f'line {n}: JSON object without an "id" key')
                continue
            value = obj[key]
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                tokens = [str(value)]
            elif isinstance(value, str) and _ID.fullmatch(value.strip()):
                tokens = [value.strip()]
            else:
                # As typed in the input: 27.0, true, "27a", null.
                shown = value if isinstance(value, str) else json.dumps(value)
                problems.append(f"line {n}: not an invoice set ID: {_shown(shown)!r} (IDs are whole numbers)")
                continue
        elif line.startswith("["):
            problems.append(f"line {n}: a JSON array; use --format jsonl or ids to pipe sets")
            continue
        else:
            tokens, header = _line_tokens(line)
            if header:
                continue
        for token in tokens:
            if not _ID.fullmatch(token):
                problems.append(f"line {n}: not an invoice set ID: {_shown(token)!r} (IDs are whole numbers)")
                continue
            i = int(token)
            if i not in seen:
                seen.add(i)
                out.append(i)
    if problems:
        raise InvalidInput(f"{source}: {len(problems)} unreadable line(s); nothing was changed", details=problems[:50])
    return out


def parse_id_args(values: list[str]) -> list[int]:
    out: list[int] = []
    seen: set[int] = set()
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            if not re.fullmatch(r"[0-9]{1,18}", part):
                raise InvalidInput(
                    f"not an invoice set ID: {part!r} (IDs are whole numbers; use - to read them from stdin)"
                )
            i = int(part)
            if i not in seen:
                seen.add(i)
                out.append(i)
    return out
