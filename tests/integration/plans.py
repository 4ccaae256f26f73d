"""Query plans of the statements the commands really run (issue 13).

`captured()` records every SELECT that reaches the database driver while a real command runs
in-process (a SQLAlchemy `before_cursor_execute` listener on all engines); `explain()` asks the
same database for the plan of each one, with the parameters it was run with: EXPLAIN QUERY PLAN
on SQLite, EXPLAIN on PostgreSQL with fresh statistics and sequential scans disabled (a test
database holds a few rows, where a sequential scan is cheapest; with them disabled a `Seq Scan`
still appears when no index can serve the statement, which is what the tests ask). With
``sorts=False`` sorts are disabled too, so a `Sort` appears only when no index gives the order.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

from outreach_cli.store.database import Store
from outreach_cli.store.export import _iso_of_stored

# The tables that grow with the number of sets: none may be read row by row without an index.
BIG = ("invoice_set", "patient", "charge", "send", "event", "payment", "payment_allocation", "step_reach")
_BIG_RE = re.compile(r'\b(?:FROM|JOIN)\s+"?(' + "|".join(BIG) + r')"?\b', re.I)


@dataclass
class Statement:
    sql: str
    params: Any
    plan: list[str]

    def __str__(self) -> str:
        return self.sql + "\n  " + "\n  ".join(self.plan)


@contextmanager
def captured() -> Iterator[list[tuple[str, Any]]]:
    """The (statement, parameters) of every single-row-set SELECT run meanwhile, in order (a
    `COPY (SELECT ...) TO STDOUT`: its SELECT)."""
    got: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        copied = re.match(r"\s*COPY \((.*)\) TO STDOUT\b", statement, re.S)  # an export's query, streamed
        if copied:
            statement = copied.group(1)
        if not executemany and re.match(r"\s*(SELECT|WITH)\b", statement, re.I) and _BIG_RE.search(statement):
            got.append((statement, parameters))

    event.listen(Engine, "before_cursor_execute", grab)
    try:
        yield got
    finally:
        event.remove(Engine, "before_cursor_execute", grab)


def explain(db: str, statements: list[tuple[str, Any]], *, sorts: bool = True) -> list[Statement]:
    store = Store(db)
    try:
        with store.engine.connect() as conn:
            if store.dialect == "sqlite":
                # the export's own SQL function must exist for SQLite to plan its statement
                conn.connection.dbapi_connection.create_function("outreach_iso", 1, _iso_of_stored)  # type: ignore[union-attr]
                return [
                    Statement(s, p, [str(r[3]) for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + s, p)])
                    for s, p in statements
                ]
            # The planner's statistics are made afresh for the rows the test holds: the schema is
            # emptied between tests, and another test's rows would otherwise steer the plan.
            conn.exec_driver_sql("ANALYZE " + ", ".join(BIG))
            conn.exec_driver_sql("SET enable_seqscan = off")
            if not sorts:
                conn.exec_driver_sql("SET enable_sort = off")
            return [
                Statement(s, p, [str(r[0]) for r in conn.exec_driver_sql("EXPLAIN " + s, p)]) for s, p in statements
            ]
    finally:
        store.engine.dispose()


def plans_of(cli: Any, *args: str, sorts: bool = True, **kw: Any) -> list[Statement]:
    """Runs the real command (it must succeed) and returns the plans of the SELECTs it ran."""
    with captured() as got:
        cli.ok(*args, **kw)
    assert got, f"{args} ran no SELECT on {BIG}"
    return explain(cli.db, got, sorts=sorts)


def _names(sql: str) -> list[str]:
    """The big tables a statement reads, and the aliases it gives them (`send AS d`)."""
    aliases = re.findall(r'\b"?(' + "|".join(BIG) + r')"?\s+AS\s+"?(\w+)"?', sql, re.I)
    return [*BIG, *(alias for _, alias in aliases)]


def full_scans(stmts: list[Statement], *, allowed: tuple[str, ...] = ()) -> list[str]:
    """Plan lines that read one of the big tables (but ``allowed``) row by row without an index."""
    bad = []
    for st in stmts:
        name = "(?:" + "|".join(re.escape(n) for n in _names(st.sql) if n not in allowed) + r")\b(?!_)"
        for ln in st.plan:
            if re.search(r"Seq Scan on " + name, ln) or (re.match(r"^SCAN " + name, ln) and "USING" not in ln):
                bad.append(f"{ln}   <- {st.sql}")
    return bad


def lines(stmts: list[Statement]) -> list[str]:
    return [ln for st in stmts for ln in st.plan]
