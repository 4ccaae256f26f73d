"""The report's last-touch attribution kept at write time (migration 0020, issue 15).

Two tables hold what the report's attribution would compute, for every set with payments:

- ``payment_touch``: one row per (set, payment), the payment's allocations to the set's charges
  summed (``cents``, negative for a refund), and the set's *last delivered send at or before the
  payment*, whatever its age (its step and method, and ``touch_age_us``: the payment's time less
  the send's, in microseconds). The report applies its window (``report.attribution_days``) when
  it reads: the last delivered send within the window is that send when it is inside the window,
  and there is none when it is not (every other candidate is older still). So the kept touch
  serves any number of days.
- ``set_paid``: one row per set with payments: the latest payment time and whether any payment
  is a refund (the report reads only the sets whose payments all fall before ``--until``, with no
  refund: any other goes the way it did before), what the positive payments come to, the one that
  completed the owed (``full_at``, and ``days_us`` from the set's creation), the touch of the
  payment the set is credited at (the completing one, else the last), and for the funnel the last
  step reached at or before ``full_at``.

Both carry the set's rule set, creation time and status (``set_paid`` also its A/B arm), so the
report filters and groups them without a join. They are recomputed per set: triggers (both
databases) mark a set stale (``report_stale``) in the writing transaction whenever anything they
depend on changes (an allocation written, moved or deleted; a payment's time or ID; a charge with
allocations moved or deleted; the set's owed, rule set, creation time, status or arm; a send of a
set with payments written, changed in status, time, step, method or set, or deleted: a delivery
receipt that arrives after the payment for a send attempted before it included), and `refresh`
recomputes the stale sets in the same transaction (`Store.write` calls it at the end of every
write). The report reads any set still stale the way it did before (computed afresh), so the
figures never depend on a refresh having happened: only the speed does.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from outreach_cli.domain.statuses import SendStatus

WHEN = "coalesce({a}.sent_at, {a}.finished_at, {a}.due_at)"
# The sends that reached the patient's side (attempted), as the report counts them.
REACHED_SQL = ", ".join(
    f"'{s.value}'"
    for s in (SendStatus.SENT, SendStatus.DELIVERED, SendStatus.FAILED, SendStatus.UNKNOWN, SendStatus.SKIPPED)
)

# (set, payment) groups of the stale sets, with the last delivered send at or before each and its
# age at the payment (microseconds), and the set's facts the report filters and groups by.
_TOUCH_SQL = """
INSERT INTO payment_touch (set_id, pay_id, paid_at, cents, touch_age_us, t_day, t_title, t_method,
  rule_set_id, created_at, status, refunded, last_paid_at)
SELECT g.set_id, g.pay_id, g.paid_at, g.cents, {age}, t.step_day, t.step_title, t.method,
  s.rule_set_id, s.created_at, s.status,
  max(CASE WHEN g.cents < 0 THEN 1 ELSE 0 END) OVER (PARTITION BY g.set_id),
  max(g.paid_at) OVER (PARTITION BY g.set_id)
FROM (
  SELECT g0.*, (
    SELECT d.id FROM send d
    WHERE d.invoice_set_id = g0.set_id AND d.status = 'delivered' AND d.step_index >= 0 AND {when_d} <= g0.paid_at
    ORDER BY {when_d} DESC, d.id DESC LIMIT 1) AS touch_id
  FROM (
    SELECT c.invoice_set_id AS set_id, p.payment_id AS pay_id, p.paid_at AS paid_at, sum(a.amount_cents) AS cents
    FROM charge c JOIN payment_allocation a ON a.charge_pk = c.id JOIN payment p ON p.id = a.payment_pk
    WHERE c.invoice_set_id {ids}
    GROUP BY c.invoice_set_id, p.payment_id, p.paid_at
  ) g0
) g JOIN invoice_set s ON s.id = g.set_id LEFT JOIN send t ON t.id = g.touch_id
"""

# Each stale set's outcome, from its payment_touch rows: the running total of its positive
# payments in time order (ties by payment ID) reaching the owed completes it.
_SET_SQL = """
WITH run AS (
  SELECT p.set_id, p.paid_at, p.cents, p.touch_age_us, p.t_day, p.t_title, p.t_method,
    sum(p.cents) OVER w AS cum, row_number() OVER w AS n
  FROM payment_touch p WHERE p.set_id {ids} AND p.cents > 0
  WINDOW w AS (PARTITION BY p.set_id ORDER BY p.paid_at, p.pay_id {c} ROWS UNBOUNDED PRECEDING)
),
s1 AS (
  SELECT r.set_id, min(CASE WHEN s.owed_cents > 0 AND r.cum >= s.owed_cents THEN r.n END) AS full_n,
    max(r.n) AS last_n, sum(r.cents) AS collected
  FROM run r JOIN invoice_set s ON s.id = r.set_id GROUP BY r.set_id
),
k AS (
  SELECT s1.set_id, s1.collected, CASE WHEN s1.full_n IS NOT NULL THEN r.paid_at END AS full_at,
    r.touch_age_us, r.t_day, r.t_title, r.t_method
  FROM s1 JOIN run r ON r.set_id = s1.set_id AND r.n = coalesce(s1.full_n, s1.last_n)
),
f AS (
  SELECT k.set_id, (
    SELECT min(d.id) FROM send d
    WHERE d.invoice_set_id = k.set_id AND d.status IN ({reached}) AND d.step_index >= 0 AND {when_d} <= k.full_at
    GROUP BY d.step_day, d.step_title
    ORDER BY min({when_d}) DESC, d.step_day DESC, d.step_title {c} DESC LIMIT 1) AS last_id
  FROM k WHERE k.full_at IS NOT NULL
),
a AS (
  SELECT set_id, max(paid_at) AS last_paid_at, max(CASE WHEN cents < 0 THEN 1 ELSE 0 END) AS refunded
  FROM payment_touch WHERE set_id {ids} GROUP BY set_id
)
INSERT INTO set_paid (set_id, last_paid_at, refunded, collected, full_at, days_us, key_age_us,
  key_day, key_title, key_method, f_day, f_title, rule_set_id, created_at, status, experiment, arm)
SELECT a.set_id, a.last_paid_at, a.refunded, coalesce(k.collected, 0), k.full_at, {days_us}, k.touch_age_us,
  k.t_day, k.t_title, k.t_method, ft.step_day, ft.step_title, s.rule_set_id, s.created_at, s.status,
  s.experiment, s.arm
FROM a JOIN invoice_set s ON s.id = a.set_id LEFT JOIN k ON k.set_id = a.set_id LEFT JOIN f ON f.set_id = a.set_id
  LEFT JOIN send ft ON ft.id = f.last_id
"""


def age_us(dialect: str, later: str, earlier: str) -> str:
    """SQL for ``later - earlier`` in whole microseconds (NULL when either is)."""
    if dialect == "sqlite":  # UTC text 'YYYY-MM-DD HH:MM:SS.ffffff'
        return (
            f"(CAST(strftime('%s', {later}) AS INTEGER) - CAST(strftime('%s', {earlier}) AS INTEGER)) * 1000000"
            f" + CAST(substr({later}, 21) AS INTEGER) - CAST(substr({earlier}, 21) AS INTEGER)"
        )
    return f"round(extract(epoch FROM ({later} - {earlier})) * 1000000)::bigint"


def _fmt(sql: str, dialect: str, ids: str) -> str:
    return sql.format(
        ids=ids,
        age=age_us(dialect, "g.paid_at", WHEN.format(a="t")),
        days_us=age_us(dialect, "k.full_at", "s.created_at"),
        c="" if dialect == "sqlite" else 'COLLATE "C"',
        when_d=WHEN.format(a="d"),
        reached=REACHED_SQL,
    )


def take_marks(conn: Connection, table: str) -> tuple[str, dict[str, Any], int] | None:
    """The sets marked in ``table`` as SQL (``set_id {ids}``) with its parameters, and how many;
    None when none is. On PostgreSQL the marks are taken first (a writer that marks one of these
    sets again meanwhile waits for this transaction, then marks it anew), so the sets are then
    recomputed from what is committed; SQLite's single writer deletes them at the end (`done`)."""
    if conn.dialect.name == "sqlite":
        n = int(conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
        return (f"IN (SELECT set_id FROM {table})", {}, n) if n else None
    got = [int(r[0]) for r in conn.execute(text(f"DELETE FROM {table} RETURNING set_id"))]
    return ("= ANY(CAST(:ids AS bigint[]))", {"ids": got}, len(got)) if got else None


def run(conn: Connection, sql: str, params: dict[str, Any]) -> None:
    """``sql`` with ``params`` (none: as written, no bind parameters parsed)."""
    if params:
        conn.execute(text(sql), params)
    else:
        conn.exec_driver_sql(sql)


def done(conn: Connection, table: str) -> None:
    """The marks of ``table`` dealt with (SQLite; PostgreSQL's were taken by `take_marks`)."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"DELETE FROM {table}")


def refresh(conn: Connection) -> int:
    """Recompute the stored attribution of the stale sets, in the caller's transaction; returns how
    many sets were stale."""
    marks = take_marks(conn, "report_stale")
    if marks is None:
        return 0
    ids, params, n = marks
    for table in ("payment_touch", "set_paid"):
        run(conn, f"DELETE FROM {table} WHERE set_id {ids}", params)
    run(conn, _fmt(_TOUCH_SQL, conn.dialect.name, ids), params)
    run(conn, _fmt(_SET_SQL, conn.dialect.name, ids), params)
    done(conn, "report_stale")
    return n


def mark_all(conn: Connection) -> None:
    """Mark every set with payments stale (the migration's backfill, and the tests' fresh
    computation)."""
    conflict = "" if conn.dialect.name == "sqlite" else " ON CONFLICT DO NOTHING"
    verb = "INSERT OR IGNORE" if conn.dialect.name == "sqlite" else "INSERT"
    conn.exec_driver_sql(
        f"{verb} INTO report_stale (set_id) SELECT DISTINCT c.invoice_set_id FROM payment_allocation a"
        f" JOIN charge c ON c.id = a.charge_pk WHERE c.invoice_set_id IS NOT NULL"
        f" UNION SELECT set_id FROM set_paid{conflict}"
    )
