"""Every row-printing command's output: the `--format` option and one `emit()`.

Formats: `table` for people (default on a terminal), `tsv` (default when piped), `csv`, `json`
(one document), `jsonl` (one object per line), `ids`. Each command states the formats it allows
with a `Formats` bundle; the option validates the choice and its help lists them.

- `json` and `jsonl` stream row by row, so memory stays flat on any number of rows.
- TSV and CSV are written by the `csv` module (TSV: the excel-tab dialect); tabs and newlines
  inside values become spaces, and cells a spreadsheet would run as formulas are neutralised.
- Nothing is written before the first row has been read, so a query that fails on a bad option
  leaves stdout empty.
- Tables never truncate their key columns (ID, status, amounts): on a narrow terminal the
  least important columns wrap, then are dropped, and a line on stderr says which.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer

from outreach_cli.domain.csvsafe import flat
from outreach_cli.domain.statuses import Status

if TYPE_CHECKING:
    from rich.text import Text

    from outreach_cli.cli.context import App


class Format(StrEnum):
    TABLE = "table"
    TSV = "tsv"
    CSV = "csv"
    JSON = "json"
    JSONL = "jsonl"
    IDS = "ids"


ROW_FORMATS = (Format.TABLE, Format.TSV, Format.CSV, Format.JSON, Format.JSONL)


@dataclass(frozen=True)
class Formats:
    """The formats one command allows, and its defaults on a terminal and in a pipe."""

    allowed: tuple[Format, ...] = ROW_FORMATS
    tty: Format = Format.TABLE
    pipe: Format = Format.TSV
    note: str = ""

    def option(self) -> Any:
        """The `--format` option (a Typer parameter); an unknown format is a usage error (exit 2)."""
        names = [f.value for f in self.allowed]

        def parse(value: str) -> Format:
            f = value.strip().lower()
            if f not in names:
                raise typer.BadParameter(f"{value!r}: choose one of {', '.join(names)}")
            return Format(f)

        default = (
            f"default {self.tty}"
            if self.tty == self.pipe
            else f"default {self.tty} on a terminal, {self.pipe} when piped"
        )
        return typer.Option(
            "--format",
            metavar="FORMAT",
            parser=parse,
            help=f"{', '.join(names[:-1])} or {names[-1]} ({default}).{(' ' + self.note) if self.note else ''}",
        )

    def resolve(self, app: App, value: str | None) -> Format:
        if value is None:
            return self.tty if app.env.stdout_isatty else self.pipe
        f = str(value).strip().lower()
        if f not in self.allowed:  # only reachable when called directly, not through the option
            from outreach_cli.domain.errors import InvalidInput

            raise InvalidInput(f"--format {value!r}: choose one of {', '.join(x.value for x in self.allowed)}")
        return Format(f)


# --- cells -----------------------------------------------------------------------------------


def _cell(v: Any) -> str:
    from outreach_cli.domain.csvsafe import neutralize

    return neutralize(flat(v))


# --- emit ------------------------------------------------------------------------------------


def emit(
    app: App,
    rows: Iterable[Mapping[str, Any]],
    fmt: Format,
    *,
    columns: Sequence[str],
    table: Sequence[Col] | None = None,
    id_key: str = "id",
    title: str | None = None,
) -> int:
    """Writes ``rows`` in ``fmt``; returns how many rows were written. A reader that goes away
    (`| head`) ends the writing quietly; the command still finishes and exits with its own code
    (an `act` refused all-or-nothing still exits 3 under `set -o pipefail`)."""
    try:
        return _emit(app, rows, fmt, columns=columns, table=table, id_key=id_key, title=title)
    except BrokenPipeError:
        reader_gone()
        return 0


def reader_gone() -> None:
    """stdout's reader went away: whatever is written from now on goes to /dev/null."""
    import sys

    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    stdout_to_devnull()


def stdout_to_devnull() -> None:
    """Point file descriptor 1 at /dev/null: whatever is still buffered, or written later
    (Python flushes stdout at exit), goes nowhere instead of failing."""
    import os
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno() if sys.__stdout__ else 1)
        os.close(devnull)
    except (OSError, ValueError):
        pass


def _emit(
    app: App,
    rows: Iterable[Mapping[str, Any]],
    fmt: Format,
    *,
    columns: Sequence[str],
    table: Sequence[Col] | None,
    id_key: str,
    title: str | None,
) -> int:
    it: Iterator[Mapping[str, Any]] = iter(rows)
    # Read the first row before writing anything: a bad option found by the query (an unknown
    # rule set, a bad sort) then fails with an empty stdout, not half a JSON array.
    first = next(it, None)
    pending: Iterator[Mapping[str, Any]] = _chain(first, it)
    out = app.env.stdout
    n = 0
    if fmt == Format.JSONL:
        for r in pending:
            out.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    elif fmt == Format.JSON:
        out.write("[")
        for r in pending:
            out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(r, ensure_ascii=False))
            n += 1
        out.write("\n]\n" if n else "]\n")
    elif fmt == Format.IDS:
        for r in pending:
            out.write(f"{r[id_key]}\n")
            n += 1
    elif fmt in (Format.TSV, Format.CSV):
        w = csv.writer(out, dialect="excel-tab" if fmt == Format.TSV else "excel", lineterminator="\n")
        w.writerow(columns)
        for r in pending:
            w.writerow([_cell(r.get(c)) for c in columns])
            n += 1
    else:
        materialised = list(pending)
        n = len(materialised)
        if n:  # no rows, no table: the summary line on stderr says so
            print_table(app, materialised, table or [Col(c, c) for c in columns], title=title)
    return n


def _chain(first: Mapping[str, Any] | None, rest: Iterator[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    if first is None:
        return
    yield first
    yield from rest


def emit_document(app: App, doc: Any) -> None:
    """One JSON document (an object), for `show`, `metrics`, `rulesets show`, summaries."""
    app.env.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


# --- tables ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Col:
    """One table column.

    ``keep``: never dropped and never cut (IDs, statuses, amounts). Otherwise ``wrap`` columns
    wrap down to ``min_width``; the others are shown whole or not at all. When the table does not
    fit, columns are dropped in descending ``drop`` order (the largest first).
    """

    key: str
    header: str
    get: Callable[[Mapping[str, Any]], Any] | None = None
    justify: str = "left"
    keep: bool = False
    wrap: bool = False
    min_width: int = 12
    drop: int = 0
    optional: bool = False  # left out when every row is empty in it
    whole_words: bool = False  # a wrap column never narrower than its longest word (up to 24)

    def value(self, row: Mapping[str, Any]) -> Any:
        v = self.get(row) if self.get is not None else row.get(self.key)
        if v is None:
            return ""
        if hasattr(v, "plain"):  # rich Text (styled)
            return v
        if isinstance(v, (list, tuple)):
            return ", ".join(str(x) for x in v)
        return str(v)


def _plain_len(v: Any) -> int:
    text = v.plain if hasattr(v, "plain") else str(v)
    return max((_cell_len(line) for line in text.split("\n")), default=0)


def _cell_len(line: str) -> int:
    """The terminal cells ``line`` takes: its length when it is printable ASCII (as rich counts
    it, without loading rich), else rich's count."""
    if line.isascii() and line.isprintable():
        return len(line)
    from rich.cells import cell_len

    return cell_len(line)


def _longest_word(v: Any) -> int:
    text = v.plain if hasattr(v, "plain") else str(v)
    return max((_plain_len(w) for w in text.split()), default=0)


def layout(cols: Sequence[Col], cells: list[list[Any]], width: int) -> tuple[list[int], list[int], list[Col]]:
    """Which columns to show and how wide: returns (shown indexes, widths, hidden columns).

    Key columns get their full width; wrap columns shrink to their minimum; then columns are
    dropped (highest ``drop`` first) until the table fits in ``width``.
    """
    natural = [max([_plain_len(c.header)] + [_plain_len(row[i]) for row in cells]) for i, c in enumerate(cols)]

    def need(i: int) -> int:
        c = cols[i]
        if not c.wrap:
            return natural[i]
        least = max(c.min_width, _plain_len(c.header))
        if c.whole_words:  # "final-notice", not "final-notic" over "e"
            least = max(least, min(24, max((_longest_word(row[i]) for row in cells), default=0)))
        return min(natural[i], least)

    shown = list(range(len(cols)))

    def total(idx: list[int], w: Callable[[int], int]) -> int:
        return sum(w(i) for i in idx) + 3 * (len(idx) - 1)

    droppable = sorted((i for i, c in enumerate(cols) if not c.keep), key=lambda i: (-cols[i].drop, -i))
    hidden: list[Col] = []
    for i in droppable:
        if total(shown, need) <= width:
            break
        shown.remove(i)
        hidden.append(cols[i])
    widths = {i: need(i) for i in shown}
    spare = width - total(shown, need)
    # Spare room goes to the wrapped columns in proportion to what they lack.
    short = sorted((i for i in shown if cols[i].wrap and natural[i] > widths[i]), key=lambda i: cols[i].drop)
    lacking = sum(natural[i] - widths[i] for i in short)
    if short and spare > 0:
        if lacking <= spare:
            for i in short:
                widths[i] = natural[i]
        else:
            given = {i: spare * (natural[i] - widths[i]) // lacking for i in short}
            left = spare - sum(given.values())
            for i in short:  # the rounding remainder, most important column first
                extra = min(left, natural[i] - widths[i] - given[i])
                given[i] += extra
                left -= extra
                widths[i] += given[i]
    return shown, [widths[i] for i in shown], hidden


def print_table(
    app: App,
    rows: Sequence[Mapping[str, Any]],
    cols: Sequence[Col],
    *,
    title: str | None = None,
    hint: bool = True,
    see_all: str = "--format tsv or a wider terminal",
) -> list[Col]:
    """Prints rows as a table fitted to the terminal; returns the columns it had to hide."""
    cols = [c for c in cols if not c.optional or any(c.value(r) != "" for r in rows)]
    cells = [[c.value(r) for c in cols] for r in rows]
    # Not a terminal: no styles, and rich's Console is PIPE_WIDTH columns wide (App.out).
    width = PIPE_WIDTH if not app.env.stdout_isatty else app.out.width
    shown, widths, hidden = layout(cols, cells, width)
    text = None if app.env.stdout_isatty or title is not None else plain_table(cols, cells, shown, widths)
    if text is not None:
        app.write(text)
    else:
        _rich_table(app, cols, cells, shown, widths, width, title)
    if hidden and hint and rows:
        names = ", ".join(c.header for c in hidden)
        them = "it" if len(hidden) == 1 else "them"
        app.info(f"({names} hidden at {width} columns; {see_all} shows {them})")
    return hidden


PIPE_WIDTH = 200  # tables written to a pipe or a file (App.out's width there)


def _rich_table(
    app: App,
    cols: Sequence[Col],
    cells: list[list[Any]],
    shown: list[int],
    widths: list[int],
    width: int,
    title: str | None,
) -> None:
    from rich.table import Table

    t = Table(
        title=title, title_justify="left", show_edge=False, pad_edge=False, header_style="bold", title_style="bold"
    )
    for i, w in zip(shown, widths, strict=True):
        c = cols[i]
        t.add_column(c.header, justify=c.justify, width=w, no_wrap=not c.wrap, overflow="fold")  # type: ignore[arg-type]
    for row in cells:
        t.add_row(*(row[i] if hasattr(row[i], "plain") else str(row[i]) for i in shown))
    needed = sum(widths) + 3 * (len(widths) - 1)
    # Never cut a key column: when even the minimum does not fit, let the terminal wrap the lines.
    app.out.print(t, width=max(width, needed))


def plain_table(cols: Sequence[Col], cells: list[list[Any]], shown: list[int], widths: list[int]) -> str | None:
    """The table rich draws where there is no terminal (no styles), character for character,
    drawn without loading rich (about 30 ms of a read command's start). None when it is not that
    simple: a header or cell that is not one line of printable ASCII, that rich would read as
    markup (`[`) or perhaps an emoji code (`:name:`), that is wider than its column (rich would
    wrap it) or starts or ends with a space (rich strips some); a justification other than left
    or right. tests/cli/test_plain_table.py holds it
    to rich's own drawing."""
    texts: list[list[str]] = [[cols[i].header for i in shown]]
    for row in cells:
        line: list[str] = []
        for i in shown:
            v = row[i]
            if isinstance(v, Styled):
                line.append(v.plain)
            elif isinstance(v, str):
                line.append(v)
            else:
                return None
        texts.append(line)
    justify = [cols[i].justify for i in shown]
    if not widths or any(j not in ("left", "right") for j in justify):
        return None
    for line in texts:
        for t, w in zip(line, widths, strict=True):
            if len(t) > w or "[" in t or t.count(":") > 1 or not (t.isascii() and t.isprintable()) or t != t.strip():
                return None

    def draw(line: list[str], bar: str) -> str:
        return f" {bar} ".join(
            t.rjust(w) if j == "right" else t.ljust(w) for t, w, j in zip(line, widths, justify, strict=True)
        )

    last = len(widths) - 1
    rule = "╇".join("━" * (w + (i > 0) + (i < last)) for i, w in enumerate(widths))
    return "".join([draw(texts[0], "┃"), "\n", rule, "\n", *(draw(line, "│") + "\n" for line in texts[1:])])


STATUS_STYLE = {
    Status.ACTIVE.value: "green",
    Status.PAUSED.value: "yellow",
    Status.EXPIRED.value: "magenta",
    Status.FAILED.value: "bold red",
    Status.WILL_FAIL.value: "red",
    Status.PAID.value: "cyan",
    Status.CANCELLED.value: "dim",
    Status.WRITTEN_OFF.value: "dim",
    Status.COLLECTIONS.value: "blue",
}


class Styled:
    """A text and its rich style: rich draws it as `Text` (``__rich__``); a table drawn without
    rich (``plain_table``) shows the text alone, as rich does where there is no terminal."""

    __slots__ = ("plain", "style")

    def __init__(self, plain: str, style: str = "") -> None:
        self.plain = plain
        self.style = style

    def __rich__(self) -> Text:
        from rich.text import Text

        return Text(self.plain, style=self.style)


def badge(status: str | None) -> Styled | str:
    if not status:
        return ""
    try:
        label = Status(status).label
    except ValueError:
        label = status
    return Styled(label, STATUS_STYLE.get(status, ""))


def dollars(cents: int | None) -> str:
    from outreach_cli.domain.money import format_dollars

    return "" if cents is None else format_dollars(int(cents))


# --- times -----------------------------------------------------------------------------------

_ISO = r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d"  # compiled on first use


class Clock:
    """Times for people: practice-local, short, relative when near (`Nov 26 09:00 (in 3h)`)."""

    def __init__(self, app: App) -> None:
        from outreach_cli.domain.timeutil import get_zone

        self.now = app.now
        self.tz = get_zone(app.settings.timezone)

    def __call__(self, value: str | datetime | None, *, relative: bool = True) -> str:
        from outreach_cli.domain.timeutil import format_local, parse_datetime

        if value is None or value == "":
            return ""
        dt = parse_datetime(value) if isinstance(value, str) else value
        return format_local(dt, self.now, self.tz, relative=relative)


def human_detail(detail: Any, clock: Clock | None = None) -> str:
    """An event's detail as words: `amount $120.50; fallback; error code 21211`.

    None and False values are left out, `*_cents` become dollars, times become local.
    """
    if not detail:
        return ""
    if not isinstance(detail, dict):
        return str(detail)
    parts: list[str] = []
    for k, v in detail.items():
        if v is None or v is False or v == "" or v == []:
            continue
        name = k.replace("_", " ")
        if v is True:
            parts.append(name)
        elif k.endswith("_cents") and isinstance(v, int):
            parts.append(f"{name[: -len(' cents')]} {dollars(v)}")
        elif isinstance(v, str) and clock is not None and re.match(_ISO, v):
            try:
                parts.append(f"{name} {clock(v, relative=False)}")
            except ValueError:
                parts.append(f"{name} {v}")
        elif isinstance(v, (list, tuple)):
            parts.append(f"{name} {', '.join(str(x) for x in v)}")
        elif isinstance(v, dict):
            parts.append(f"{name} ({human_detail(v, clock)})")
        else:
            parts.append(f"{name} {v}")
    return "; ".join(parts)


def utc_times(value: Any) -> Any:
    """Every ISO datetime string inside ``value`` (nested) as `2026-11-26T14:00:00Z`."""
    from outreach_cli.domain.timeutil import iso_z, parse_datetime

    if isinstance(value, dict):
        return {k: utc_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [utc_times(v) for v in value]
    if isinstance(value, str) and re.match(_ISO, value):
        try:
            return iso_z(parse_datetime(value))
        except ValueError:
            return value
    return value
