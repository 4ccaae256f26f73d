"""Row output shared by every row-printing command: table, tsv, csv, json, jsonl, ids.

`json` and `jsonl` stream (one row at a time), so memory stays flat on any number of rows.
Default: `table` on a terminal, `tsv` with a header row otherwise.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable
from typing import Any

from outreach_cli.cli.context import App

FORMATS = ("table", "tsv", "csv", "json", "jsonl", "ids")


def resolve_format(app: App, fmt: str | None, *, allowed: tuple[str, ...] = FORMATS) -> str:
    from outreach_cli.core.errors import InvalidInput

    if fmt is None:
        return "table" if app.env.stdout_isatty else "tsv"
    f = fmt.strip().lower()
    if f not in allowed:
        raise InvalidInput(f"--format {fmt!r}: choose one of {', '.join(allowed)}")
    return f


def _flat(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(_flat(x) for x in v)
    return str(v).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def write_rows(
    app: App,
    rows: Iterable[dict[str, Any]],
    columns: list[str],
    fmt: str,
    *,
    table: Callable[[list[dict[str, Any]]], None] | None = None,
    id_key: str = "id",
) -> int:
    """Writes rows in ``fmt``; returns how many."""
    out = app.env.stdout
    n = 0
    if fmt == "jsonl":
        for r in rows:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    elif fmt == "json":
        out.write("[")
        for r in rows:
            out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(r, ensure_ascii=False))
            n += 1
        out.write("\n]\n" if n else "]\n")
    elif fmt == "ids":
        for r in rows:
            out.write(f"{r[id_key]}\n")
            n += 1
    elif fmt == "tsv":
        out.write("\t".join(columns) + "\n")
        for r in rows:
            out.write("\t".join(_flat(r.get(c)) for c in columns) + "\n")
            n += 1
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        for r in rows:
            w.writerow([_flat(r.get(c)) for c in columns])
            n += 1
    else:  # table
        materialised = list(rows)
        n = len(materialised)
        if table is not None:
            table(materialised)
        else:
            simple_table(app, materialised, columns)
    return n


def simple_table(app: App, rows: list[dict[str, Any]], columns: list[str], title: str | None = None) -> None:
    from rich.table import Table

    t = Table(title=title, show_edge=False, pad_edge=False, header_style="bold")
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*(_flat(r.get(c)) for c in columns))
    app.out.print(t)


STATUS_STYLE = {
    "active": "green",
    "paused": "yellow",
    "expired": "magenta",
    "failed": "bold red",
    "will-fail": "red",
    "paid": "cyan",
    "cancelled": "dim",
    "written-off": "dim",
    "collections": "blue",
}


def badge(status: str) -> Any:
    from rich.text import Text

    from outreach_cli.core.statuses import Status

    try:
        label = Status(status).label
    except ValueError:
        label = status
    return Text(label, style=STATUS_STYLE.get(status, ""))
