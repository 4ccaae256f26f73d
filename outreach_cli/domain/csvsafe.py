"""Spreadsheet-safe cells for CSV/TSV exports (OWASP "CSV injection").

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula by
Excel and LibreOffice. Such cells get a leading apostrophe, which spreadsheets hide and treat as
"this is text". Plain numbers (`-12.50`) are left alone so amounts stay numeric.
"""

from __future__ import annotations

import json
import re
from typing import Any

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def neutralize(value: str) -> str:
    """The cell as a spreadsheet will show it, never as a formula."""
    if value and value.startswith(_TRIGGERS) and not _NUMBER.match(value):
        return "'" + value
    return value


def flat(v: Any) -> str:
    """A value as one TSV/CSV cell: no tabs or newlines; lists comma-joined; None empty."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(flat(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    return str(v).replace("\t", " ").replace("\r", " ").replace("\n", " ")
