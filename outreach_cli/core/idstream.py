"""Invoice-set IDs read from a pipe (SPEC section 7, `act ... -`).

Lines may be plain IDs, JSON objects with an `id` key, or TSV/CSV rows whose first field is the
ID (a header row whose first field is `id` is skipped); blank lines and `#` comments are
ignored; duplicates collapse (first occurrence keeps its place).
"""

from __future__ import annotations

import json
import re

from outreach_cli.core.errors import InvalidInput

_FIRST_FIELD = re.compile(r"^\s*\"?([^\t,\"]*)\"?")


def parse_ids(text: str, source: str = "<stdin>") -> list[int]:
    out: list[int] = []
    seen: set[int] = set()
    problems: list[str] = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip().lstrip("\ufeff")
        if not line or line.startswith("#"):
            continue
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"line {n}: not valid JSON: {exc.msg}")
                continue
            if not isinstance(obj, dict) or "id" not in obj:
                problems.append(f'line {n}: JSON object without an "id" key')
                continue
            value = obj["id"]
            token = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
        elif line.startswith("["):
            problems.append(f"line {n}: a JSON array; use --format jsonl or ids to pipe sets")
            continue
        else:
            m = _FIRST_FIELD.match(line)
            token = m.group(1).strip() if m else ""
            if token.lower() == "id":
                continue  # header row
        if not re.fullmatch(r"[0-9]{1,18}", token):
            shown = token if len(token) <= 40 else token[:40] + "..."
            problems.append(f"line {n}: not an invoice set ID: {shown!r} (IDs are whole numbers)")
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
