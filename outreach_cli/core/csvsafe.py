"""Spreadsheet-safe cells for CSV/TSV exports (OWASP "CSV injection").

A cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is read as a formula by
Excel and LibreOffice. Such cells get a leading apostrophe, which spreadsheets hide and treat as
"this is text". Plain numbers (`-12.50`) are left alone so amounts stay numeric.
"""

from __future__ import annotations

import re

_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")


def neutralize(value: str) -> str:
    """The cell as a spreadsheet will show it, never as a formula."""
    if value and value.startswith(_TRIGGERS) and not _NUMBER.match(value):
        return "'" + value
    return value
