"""`metrics`' counts kept at write time: sets and cents outstanding per status and day of creation.

`metrics --all` used to count every set's index entry (0.3 s of queries at a million sets, a
0.5 s target for the whole command). The tally has one row per status and UTC day of creation
(a few thousand rows), kept by triggers (migration 0022) in the writing transaction whoever
writes: imports, actions, payments, runs, plain SQL.

- SQLite: each inserted, deleted or changed set adds itself to its (status, day) row.
- PostgreSQL: each statement appends its sums to `set_tally_delta` (an append: concurrent writers
  never wait on one row), and `fold` moves the delta into `set_tally` at the end of a store
  write, one transaction at a time. Readers add the two, so the figures never depend on a fold.

Aging stays exact to the microsecond: the open sets created at or before a boundary ``b`` are
the tally's whole days before ``b``'s day plus the sets of ``b``'s own day up to ``b``, read from
the (status, created_at, amount) index, one day of sets per boundary. Everything is one
statement, so it reads one snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Date, DateTime, column, func, literal_column, select, table, union_all

_COLS = ("status", "day", "sets", "cents")
_tally = table("set_tally", column("status"), column("day", Date), column("sets"), column("cents"))
_delta = table("set_tally_delta", column("status"), column("day", Date), column("sets"), column("cents"))
_sets = table(
    "invoice_set",
    column("status"),
    column("created_at", DateTime(timezone=True)),
    column("amount_outstanding_cents"),
)
# A key well away from the others (attribution's, reach's): one folder at a time.
FOLD_LOCK = 7_260_022
Counts = dict[str, list[int]]  # status -> [sets, cents]


def stored(now: datetime, dialect: str) -> datetime:
    """``now`` as the store keeps times (models.UTCDateTime): UTC, naive on SQLite."""
    now = now.astimezone(UTC)
    return now.replace(tzinfo=None) if dialect == "sqlite" else now


def _day_sql(dialect: str) -> str:
    return "substr(created_at, 1, 10)" if dialect == "sqlite" else "(created_at AT TIME ZONE 'UTC')::date"


def statement(bounds: Sequence[datetime], open_statuses: Sequence[str], dialect: str) -> Any:
    """Rows (key, status, sets, cents): key -1 every set per status; key i the open sets created
    at or before ``bounds[i]``."""
    kept = union_all(*(select(*(t.c[c] for c in _COLS)) for t in (_tally, _delta))).cte("kept")

    def totals(key: int) -> Any:
        return select(literal_column(str(key)), kept.c.status, func.sum(kept.c.sets), func.sum(kept.c.cents))

    parts = [totals(-1).group_by(kept.c.status)]
    amount = _sets.c.amount_outstanding_cents
    for i, b in enumerate(bounds):
        b = b.astimezone(UTC)
        day = b.replace(hour=0, minute=0, second=0, microsecond=0)
        parts.append(totals(i).where(kept.c.status.in_(open_statuses), kept.c.day < day.date()).group_by(kept.c.status))
        parts.append(
            select(literal_column(str(i)), _sets.c.status, func.count(), func.coalesce(func.sum(amount), 0))
            .where(
                _sets.c.status.in_(open_statuses),
                _sets.c.created_at >= stored(day, dialect),
                _sets.c.created_at <= stored(b, dialect),
            )
            .group_by(_sets.c.status)
        )
    return union_all(*parts)


def read(conn: Connection, bounds: Sequence[datetime], open_statuses: Sequence[str]) -> tuple[Counts, list[Counts]]:
    """(sets and cents per status, and for each of ``bounds`` those of the open sets created at
    or before it, per status)."""
    totals: Counts = {}
    upto: list[Counts] = [{} for _ in bounds]
    for key, status, sets, cents in conn.execute(statement(bounds, open_statuses, conn.dialect.name)):
        into = totals if int(key) < 0 else upto[int(key)]
        got = into.setdefault(status, [0, 0])
        got[0] += int(sets or 0)
        got[1] += int(cents or 0)
    return totals, upto


def rebuild(conn: Connection) -> None:
    """The tally afresh from every set (the migration's backfill; tests compare with it)."""
    conn.exec_driver_sql("DELETE FROM set_tally_delta")
    conn.exec_driver_sql("DELETE FROM set_tally")
    conn.exec_driver_sql(
        "INSERT INTO set_tally (status, day, sets, cents) SELECT status, day, count(*), sum(amount_outstanding_cents)"
        f" FROM (SELECT status, {_day_sql(conn.dialect.name)} AS day, amount_outstanding_cents FROM invoice_set) AS s"
        " GROUP BY status, day"
    )


def fold(conn: Connection) -> None:
    """PostgreSQL: move the committed delta into the tally, unless another transaction is doing
    so (it will take these rows too, or the next fold will). Only a folder updates tally rows,
    and one at a time, so writers never wait on each other here."""
    if not conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({FOLD_LOCK})").scalar():
        return
    conn.exec_driver_sql(
        "WITH d AS (DELETE FROM set_tally_delta RETURNING status, day, sets, cents)"
        " INSERT INTO set_tally (status, day, sets, cents)"
        " SELECT status, day, sum(sets), sum(cents) FROM d GROUP BY status, day ORDER BY status, day"
        " ON CONFLICT (status, day) DO UPDATE"
        " SET sets = set_tally.sets + excluded.sets, cents = set_tally.cents + excluded.cents"
    )
