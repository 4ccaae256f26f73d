"""The report's reach kept at write time (migration 0021, issue 15).

The report counts, per rule set, the sets in scope that reached any step before ``--until`` and
the sets that reached each step, with their owed (the funnel and "sets entered" per step). Counted
from the sends, each is a DISTINCT over every send; kept here, each is one pass over an index.

``step_reach`` holds one row per (set, step) the set reached: a send of it attempted or skipped
(`REACHED_SQL`), not an opt-out confirmation. ``first_at`` is the earliest time of those sends
(their ``coalesce(sent_at, finished_at, due_at)``, the time the report compares with ``--until``),
NULL when one of them has no time at all (such a send always counts). So the set reached the step
before ``--until`` exactly when ``first_at`` is NULL or before it. ``set_first`` marks one row per
set, its earliest: the set reached any step before ``--until`` exactly when that row's does. Each
row carries the set's rule set, creation time and owed, so the report filters and groups without a
join.

They are recomputed per set, as the kept attribution is (store/attribution.py): triggers (both
databases) mark a set in ``reach_stale`` in the writing transaction whenever anything the rows
depend on changes (a send that is or was reached written, deleted, or changed in set, step, status
or time; the set's rule set, creation time or owed), and `refresh` recomputes the marked sets before
the transaction commits (`Store.write`). Only `refresh` writes ``step_reach``, so writers of sends
never wait on its rows. The report counts the sets still marked (written outside the store) from
their sends as before, so the figures never depend on a refresh having happened.
"""

from __future__ import annotations

from sqlalchemy import Connection

from outreach_cli.store.attribution import REACHED_SQL, WHEN, done, run, take_marks

# The (set, step) rows of the sets ``{ids}``, from their reached sends.
_ROWS_SQL = """
INSERT INTO step_reach (set_id, step_day, step_title, first_at, set_first, rule_set_id, created_at, owed_cents)
SELECT g.set_id, g.step_day, g.step_title, g.first_at,
  CASE WHEN row_number() OVER (
    PARTITION BY g.set_id ORDER BY g.first_at NULLS FIRST, g.step_day, g.step_title) = 1 THEN 1 ELSE 0 END,
  s.rule_set_id, s.created_at, s.owed_cents
FROM (
  SELECT d.invoice_set_id AS set_id, d.step_day, d.step_title,
    CASE WHEN count(*) > count({when}) THEN NULL ELSE min({when}) END AS first_at
  FROM send d
  WHERE d.invoice_set_id {ids} AND d.status IN ({reached}) AND d.step_index >= 0
  GROUP BY d.invoice_set_id, d.step_day, d.step_title
) g JOIN invoice_set s ON s.id = g.set_id
"""


def _rows(ids: str) -> str:
    return _ROWS_SQL.format(ids=ids, when=WHEN.format(a="d"), reached=REACHED_SQL)


def refresh(conn: Connection) -> int:
    """Recompute the rows of the marked sets, in the caller's transaction; returns how many sets
    were marked."""
    marks = take_marks(conn, "reach_stale")
    if marks is None:
        return 0
    ids, params, n = marks
    run(conn, f"DELETE FROM step_reach WHERE set_id {ids}", params)
    run(conn, _rows(ids), params)
    done(conn, "reach_stale")
    return n


def rebuild(conn: Connection) -> None:
    """Every set's rows afresh and no set marked (the migration's backfill, and the tests' fresh
    computation)."""
    conn.exec_driver_sql("DELETE FROM step_reach")
    conn.exec_driver_sql(_rows("IS NOT NULL"))
    conn.exec_driver_sql("DELETE FROM reach_stale")
