"""Streaming imports (issue 13): rows go to a staging table as they are read, checks and writes
are set-based or page by page, so memory stays bounded however large the file is.

Everything happens in the import's one transaction: the staging tables are temporary tables of
that connection, dropped before the commit (a rollback takes them away with everything else).
Problems are kept bounded too (`ErrorLog`): counted, and listed in full only when they are
printed in full (`--skip-invalid`), else the first `MAX_ERRORS_SHOWN` by line.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from sqlalchemy import Column, Connection, Integer, MetaData, Select, Table, func, select

MAX_ERRORS_SHOWN = 50
PAGE = 5000  # rows per page when reading a staging table back (and per insert batch)


class ErrorLog:
    """Problems as `line N: column: problem`, in line order.

    Each source of problems (the file as read, then each check over the staging table) reports
    in line order, and a line's problems all come from one source, so distinct lines are counted
    as they arrive. ``keep_all`` keeps every message (they are all printed); otherwise only the
    first ``keep`` by line (the error's details), whatever order the sources report in.
    """

    def __init__(self, *, keep_all: bool, keep: int = MAX_ERRORS_SHOWN) -> None:
        self.keep_all = keep_all
        self.keep = keep
        self.count = 0
        self.lines = 0
        self._last: int | None = None
        self._seq = 0
        self._kept: list[tuple[int, int, str]] = []  # (-line, -seq, message): a max-heap when bounded

    def __len__(self) -> int:
        return self.count

    def append(self, message: str) -> None:
        self.add(line_of(message), message)

    def add(self, line: int, message: str) -> None:
        self.count += 1
        if line != self._last:
            self.lines += 1
            self._last = line
        self._seq += 1
        item = (-line, -self._seq, message)
        if self.keep_all:
            self._kept.append(item)
        elif len(self._kept) < self.keep:
            heapq.heappush(self._kept, item)
        elif item > self._kept[0]:
            heapq.heapreplace(self._kept, item)

    def source(self) -> None:
        """A new source of problems begins (its lines start again from the top)."""
        self._last = None

    def messages(self) -> list[str]:
        return [m for _, _, m in sorted(self._kept, reverse=True)]


def line_of(err: str) -> int:
    try:
        return int(err.split(":", 1)[0].split()[1])
    except (IndexError, ValueError):
        return 0


def staging_table(name: str, *columns: Any) -> Table:
    return Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])


def create(conn: Connection, table: Table) -> None:
    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table.name}")  # left on a pooled SQLite connection
    table.create(conn)


def drop(conn: Connection, *tables: Table) -> None:
    for t in tables:
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t.name}")


def index(conn: Connection, table: Table, *cols: str) -> None:
    # Plain SQL: an Index object would stay on the (module-level) Table and come back at `create`.
    conn.exec_driver_sql(f"CREATE INDEX ix_{table.name}_{'_'.join(cols)} ON {table.name} ({', '.join(cols)})")


def analyze(conn: Connection, table: Table) -> None:
    """PostgreSQL: statistics for a filled staging table (autovacuum never analyses temporary
    tables, and the planner would guess their size when it joins them with a million rows)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {table.name}")


def bulk_insert(conn: Connection, table: Table, cols: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Rows (tuples in ``cols`` order) straight to the driver: COPY on PostgreSQL, executemany on
    SQLite with each column's bind conversion done once per distinct value."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with raw.cursor() as cur, cur.copy(f"COPY {table.name} ({', '.join(cols)}) FROM STDIN") as cp:  # type: ignore[attr-defined]
            for row in rows:
                cp.write_row(row)
        return
    convert = [_converter(conn, table, c) for c in cols]
    one = f"({', '.join('?' * len(cols))})"
    sql = f"INSERT INTO {table.name} ({', '.join(cols)}) VALUES "
    params = (
        list(rows)
        if all(f is None for f in convert)
        else [tuple(v if f is None else f(v) for v, f in zip(r, convert, strict=True)) for r in rows]
    )
    if not _has_insert_trigger(conn, table.name):
        conn.exec_driver_sql(sql + one, params)
        return
    # A statement that fires a trigger opens a statement journal (a temporary file here, about
    # 28 µs) for each execution: many rows per statement instead of one statement per row.
    limit = conn.connection.dbapi_connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
    per = max(1, min(MULTI_ROWS, limit // len(cols)))
    for i in range(0, len(params), per):
        chunk = params[i : i + per]
        conn.exec_driver_sql(sql + ", ".join([one] * len(chunk)), tuple(v for r in chunk for v in r))


MULTI_ROWS = 200  # rows per INSERT into a table with an insert trigger (SQLite)


def _has_insert_trigger(conn: Connection, table: str) -> bool:
    """Whether SQLite fires a trigger on inserts into ``table`` (migrations 0009-0022)."""
    found = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ? AND upper(sql) GLOB '* INSERT ON *'",
        (table,),
    ).first()
    return found is not None


def _converter(conn: Connection, table: Table, col: str) -> Callable[[Any], Any] | None:
    proc = table.c[col].type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
    if proc is None:
        return None
    cache: dict[Any, Any] = {}

    def conv(v: Any) -> Any:
        if v is None:
            return None
        try:
            return cache[v]
        except KeyError:
            out = cache[v] = proc(v)
            if len(cache) > 100_000:  # distinct values (times) kept bounded
                cache.clear()
            return out

    return conv


def pages(conn: Connection, stmt: Select[Any], key: Any, size: int | None = None) -> Iterator[list[Any]]:
    """The rows of ``stmt`` a page at a time (``size``, default PAGE), by ``key`` (unique,
    ascending): each page is its own query, so the caller may write between pages (even to the
    tables read)."""
    size = size or PAGE
    last = None
    while True:
        q = stmt if last is None else stmt.where(key > last)
        rows: list[Any] = list(conn.execute(q.order_by(key).limit(size)).all())
        if not rows:
            return
        yield rows
        if len(rows) < size:
            return
        last = getattr(rows[-1], key.name)


def duplicates(conn: Connection, stg: Table, key: str, cols: Sequence[str], errs: ErrorLog) -> tuple[int, int]:
    """Rows whose ID appeared on an earlier line: identical ones (``cols`` equal) are ignored,
    others are errors; both leave the staging table (the first row stands).
    Returns (identical, with other values)."""
    k = stg.c[key]
    dup = staging_table("import_dup", Column("k", k.type, primary_key=True), Column("first_line", Integer))
    create(conn, dup)
    conn.execute(
        dup.insert().from_select(
            ["k", "first_line"], select(k, func.min(stg.c.line)).group_by(k).having(func.count() > 1)
        )
    )
    later, orig = stg.alias("later"), stg.alias("orig")
    stmt = (
        select(later, *(orig.c[c].label("o_" + c) for c in cols), dup.c.first_line)
        .join(dup, dup.c.k == later.c[key])
        .join(orig, orig.c.line == dup.c.first_line)
        .where(later.c.line > dup.c.first_line)
    )
    identical = other = 0
    errs.source()
    for page in pages(conn, stmt, later.c.line):
        for r in page:
            if all(getattr(r, c) == getattr(r, "o_" + c) for c in cols):
                identical += 1
                continue
            other += 1
            errs.add(
                r.line,
                f"line {r.line}: {key}: {getattr(r, key)!r} appears again (first on line {r.first_line}) "
                "with other values",
            )
        delete_lines(conn, stg, [r.line for r in page])
    drop(conn, dup)
    return identical, other


def delete_lines(conn: Connection, stg: Table, lines: list[int]) -> None:
    for i in range(0, len(lines), 900):
        conn.execute(stg.delete().where(stg.c.line.in_(lines[i : i + 900])))


def tune(conn: Connection) -> None:
    """SQLite: a larger page cache for this connection while it writes a big import (index
    inserts in random order otherwise re-read pages from the OS), reset by `untune`."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA cache_size=-131072")  # 128 MB
        conn.exec_driver_sql("PRAGMA temp.cache_size=-32768")  # 32 MB for the staging tables


def untune(conn: Connection) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA cache_size=-2000")
        conn.exec_driver_sql("PRAGMA temp.cache_size=-2000")


def flag_problems(
    conn: Connection,
    stmt: Any,
    table: Any,
    problems: Callable[[Any, ErrorLog], bool],
    errs: ErrorLog,
    *,
    skip_invalid: bool,
) -> int:
    """Checks every staged row ``stmt`` reads (in line order) with ``problems``; returns how many
    were bad, dropping them from ``table`` when ``skip_invalid``."""
    errs.source()
    bad = 0
    for page in pages(conn, stmt, table.c.line):
        lines = [r.line for r in page if problems(r, errs)]
        bad += len(lines)
        if skip_invalid:
            delete_lines(conn, table, lines)
    return bad
