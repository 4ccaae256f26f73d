"""`metrics`: counts and amounts per status, aging of open balances, written off and credit.

Served by covering indexes (SPEC section 10), each index entry read once: the closed statuses'
counts from (status, amount); the open sets per age bucket and status, one range of (status,
created_at, amount) per bucket, which also gives the open statuses' cards. At 1,000,000 sets this
took 0.08 s of CPU against 0.11 s for all statuses plus aging apart, and 0.37 s for one pass
computing every figure per row with FILTER clauses.

The statements name their columns with SQLAlchemy's lightweight `table()`/`column()`, not the
schema in `models` (building every Table, index and type costs a read command more than its query).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import DateTime, column, func, literal_column, select, table, union_all

from outreach_cli.domain.money import plain_dollars
from outreach_cli.domain.statuses import ATTENTION, OPEN, ChargeStatus, Status

if TYPE_CHECKING:
    from outreach_cli.store.database import Store

AGING = (("0-30", 0, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("91-120", 91, 120), ("120+", 121, None))

_sets = table(
    "invoice_set",
    column("status"),
    column("created_at", DateTime(timezone=True)),
    column("amount_outstanding_cents"),
)
_charges = table("charge", column("id"), column("status"), column("amount_cents"))
_allocations = table("payment_allocation", column("charge_pk"), column("amount_cents"))
_payments = table("payment", column("patient_pk"), column("unapplied_cents"))


def _stored(now: datetime, dialect: str) -> datetime:
    """``now`` as the store keeps times (models.UTCDateTime): UTC, naive on SQLite."""
    now = now.astimezone(UTC)
    return now.replace(tzinfo=None) if dialect == "sqlite" else now


def _status_statement(statuses: list[Status]) -> Any:
    amount = _sets.c.amount_outstanding_cents
    return (
        select(_sets.c.status, func.count(), func.coalesce(func.sum(amount), 0))
        .where(_sets.c.status.in_([s.value for s in statuses]))
        .group_by(_sets.c.status)
    )


def _aging_statement(now: datetime, dialect: str = "sqlite") -> Any:
    """Count and amount of the open sets per age bucket and status ("days since creation" d falls
    in the bucket holding d), plus those created after ``now`` (bucket "future", no age): one
    range of the (status, created_at, amount) index per bucket, read without touching the table.
    Together they are every open set, so they give the open statuses' cards as well."""
    open_values = [s.value for s in OPEN]
    base = upper = _stored(now, dialect)
    ranges: list[tuple[str, list[Any]]] = [("future", [_sets.c.created_at > base])]
    for name, _, hi in AGING:
        cond = [_sets.c.created_at <= upper]
        if hi is not None:
            upper = base - timedelta(days=hi + 1)
            cond.append(_sets.c.created_at > upper)
        ranges.append((name, cond))
    parts = [
        select(
            literal_column(f"'{name}'").label("bucket"),
            _sets.c.status,
            func.count(),
            func.coalesce(func.sum(_sets.c.amount_outstanding_cents), 0),
        )
        .where(_sets.c.status.in_(open_values), *cond)
        .group_by(_sets.c.status)
        for name, cond in ranges
    ]
    return union_all(*parts)


def metrics_statements(now: datetime, dialect: str = "sqlite") -> list[Any]:
    """The SELECTs behind `metrics --all`, for query-plan checks: the closed statuses' counts and
    the aging ranges (which count the open statuses too)."""
    return [_status_statement([s for s in Status if s not in OPEN]), _aging_statement(now, dialect)]


def _card(count: int, cents: int) -> dict[str, Any]:
    return {"count": count, "amount_outstanding_cents": cents, "amount_outstanding": plain_dollars(cents)}


def _all_counts(conn: Any, now: datetime, dialect: str) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """[count, cents] per status and per aging bucket, reading each index entry once."""
    closed, aging = metrics_statements(now, dialect)
    per_status = {s: [int(c), int(a)] for s, c, a in conn.execute(closed)}
    buckets: dict[str, list[int]] = {name: [0, 0] for name, _, _ in AGING}
    for bucket, status, count, cents in conn.execute(aging):
        for key, into in ((status, per_status), (bucket, buckets)):
            total = into.setdefault(key, [0, 0])
            total[0] += int(count)
            total[1] += int(cents)
    buckets.pop("future", None)
    return per_status, buckets


def metrics(store: Store, *, show_all: bool, now: datetime) -> dict[str, Any]:
    with store.read() as conn:
        if not show_all:
            got = {s: (int(c), int(a)) for s, c, a in conn.execute(_status_statement(list(ATTENTION)))}
            return {s.value: _card(*got.get(s.value, (0, 0))) for s in ATTENTION}
        per_status, buckets = _all_counts(conn, now, store.dialect)
        out: dict[str, Any] = {s.value: _card(*per_status.get(s.value, (0, 0))) for s in Status}
        out["total"] = _card(sum(c for c, _ in per_status.values()), sum(a for _, a in per_status.values()))
        out["aging"] = [{"bucket": name, **_card(*buckets[name])} for name, _, _ in AGING]
        written_off = _written_off_net(conn)
        out[Status.WRITTEN_OFF.value]["written_off_cents"] = written_off
        out[Status.WRITTEN_OFF.value]["written_off"] = plain_dollars(written_off)
        n, cents = _credit_totals(conn)
        out["credit"] = {"count": n, "credit_cents": cents, "credit": plain_dollars(cents)}
    return out


def _written_off_net(conn: Any) -> int:
    """Cents written off and not recovered since: written-off charges less what was paid on them
    (as ledger.written_off_net)."""
    amount = conn.execute(
        select(func.coalesce(func.sum(_charges.c.amount_cents), 0)).where(_charges.c.status == ChargeStatus.WRITTEN_OFF)
    ).scalar_one()
    paid = conn.execute(
        select(func.coalesce(func.sum(_allocations.c.amount_cents), 0))
        .select_from(_allocations.join(_charges, _charges.c.id == _allocations.c.charge_pk))
        .where(_charges.c.status == ChargeStatus.WRITTEN_OFF)
    ).scalar_one()
    return int(amount) - int(paid)


def _credit_totals(conn: Any) -> tuple[int, int]:
    """(patients with credit, total credit cents), as ledger.credit_totals."""
    count, cents = conn.execute(
        select(
            func.count(func.distinct(_payments.c.patient_pk)), func.coalesce(func.sum(_payments.c.unapplied_cents), 0)
        ).where(_payments.c.unapplied_cents > 0)
    ).one()
    return int(count), int(cents)
