"""The ledger: how a payment is applied to a patient's charges (SPEC section 1, "Payment").

One code path for every payment, whether imported (`import payments`) or collected by a card
charge during a run (the engine), so both follow the same rules:

1. The named charge first (when the payment names one), then the patient's other charges that
   are still owed, oldest first. "Owed" means outstanding (open or cancelled sets) *or* escalated
   to collections: a patient who pays the practice after escalation has still paid, so the
   collections balance goes down, the set's timeline says so, and the set is offered to the
   agency again in the next `collections export` with the `payment_after_escalation` flag.
2. What is left goes to charges that were written off, oldest first, as a recovery: the balance
   stays zero, the set stays written off, and the timeline records the recovered amount.
3. Anything still left is credit on the payment (``unapplied_cents``). It is never silent: the
   caller gets it back (``import payments`` reports it on stderr), an event records it, and
   `show` and `metrics --all` show the patient's credit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, String, func, insert, literal_column, select, update

from outreach_cli.domain.context import Context
from outreach_cli.domain.payment_rows import NewPayment
from outreach_cli.domain.statuses import ChargeStatus, Status
from outreach_cli.store.bulk import bulk_update, chunks
from outreach_cli.store.events import add_events, event_row
from outreach_cli.store.loaded_rulesets import RuleSets
from outreach_cli.store.models import allocation_t, charge_t, invoice_set_t, payment_t
from outreach_cli.store.reevaluate import recompute_amounts, refresh_sets

OWED_STATUSES = (ChargeStatus.OUTSTANDING, ChargeStatus.COLLECTIONS)


@dataclass
class Unapplied:
    """A payment (or the part of one) that found nothing to pay: kept as credit."""

    payment_id: str
    amount_cents: int
    unapplied_cents: int


@dataclass
class LedgerResult:
    changed: dict[int, tuple[str, str]] = field(default_factory=dict)  # set id -> (from, to)
    unapplied: list[Unapplied] = field(default_factory=list)
    after_escalation: set[int] = field(default_factory=set)  # collections sets that received money
    recovered: set[int] = field(default_factory=set)  # written-off sets that received money


def _owed_charges(conn: Connection, pks: list[int]) -> dict[int, list[dict[str, Any]]]:
    owed: dict[int, list[dict[str, Any]]] = defaultdict(list)
    # A payment's charges are found by its patient, whatever the statistics say of the status
    # index: on SQLite a unary + keeps the status out of index choice (store/maintenance.py,
    # ANALYSIS_LIMIT, tells how a sampled ANALYZE once sent this through the status index).
    status = literal_column("+charge.status", String) if conn.dialect.name == "sqlite" else charge_t.c.status
    for chunk in chunks(pks):
        for row in conn.execute(
            select(
                charge_t.c.id,
                charge_t.c.charge_id,
                charge_t.c.patient_pk,
                charge_t.c.invoice_set_id,
                charge_t.c.outstanding_cents,
                charge_t.c.status,
            )
            .where(
                charge_t.c.patient_pk.in_(chunk),
                status.in_(OWED_STATUSES),
                charge_t.c.outstanding_cents > 0,
            )
            .order_by(charge_t.c.created_at, charge_t.c.id)
        ):
            owed[row.patient_pk].append(dict(row._mapping))
    return owed


def _written_off_charges(conn: Connection, pks: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Written-off charges with what can still be recovered (amount less what was ever paid)."""
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    paid = (
        select(func.coalesce(func.sum(allocation_t.c.amount_cents), 0))
        .where(allocation_t.c.charge_pk == charge_t.c.id)
        .scalar_subquery()
    )
    for chunk in chunks(pks):
        for row in conn.execute(
            select(
                charge_t.c.id,
                charge_t.c.charge_id,
                charge_t.c.patient_pk,
                charge_t.c.invoice_set_id,
                (charge_t.c.amount_cents - paid).label("recoverable_cents"),
            )
            .where(charge_t.c.patient_pk.in_(chunk), charge_t.c.status == ChargeStatus.WRITTEN_OFF)
            .order_by(charge_t.c.created_at, charge_t.c.id)
        ):
            if row.recoverable_cents > 0:  # an int on SQLite, a Decimal (SUM of bigint) on PostgreSQL
                out[row.patient_pk].append({**row._mapping, "recoverable_cents": int(row.recoverable_cents)})
    return out


def _named_first(queue: list[dict[str, Any]], charge_ref: str | None) -> list[dict[str, Any]]:
    if not charge_ref:
        return queue
    return sorted(queue, key=lambda c: 0 if c["charge_id"] == charge_ref else 1)


@dataclass
class _Allocation:
    """Where a batch of payments goes, worked out in memory before anything is written."""

    changed_charges: dict[int, dict[str, Any]] = field(default_factory=dict)
    allocations: list[tuple[int, int, int]] = field(default_factory=list)  # (payment index, charge pk, cents)
    # (payment index, set id) -> applied cents / recovered cents
    per_set: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    recovered: dict[tuple[int, int], int] = field(default_factory=lambda: defaultdict(int))
    unapplied: list[int] = field(default_factory=list)


def apply_payments_detailed(
    conn: Connection, payments: list[NewPayment], ctx: Context, rule_sets: RuleSets
) -> LedgerResult:
    """Record new payments and apply them; events, set balances and statuses in the caller's transaction."""
    result = LedgerResult()
    pks = sorted({p["patient_pk"] for p in payments})
    plan = _allocate(payments, _owed_charges(conn, pks), _written_off_charges(conn, pks), result)
    pay_ids = _insert_payments(conn, payments, plan.unapplied, ctx)
    _write_allocations(conn, plan, pay_ids)

    touched = {set_id for (_, set_id) in plan.per_set} | {set_id for (_, set_id) in plan.recovered}
    set_status = _set_statuses(conn, touched)
    events = _payment_events(payments, plan.per_set, set_status, result, ctx)
    events += _recovery_events(payments, plan.recovered, result, ctx)
    credit_events = _credit_events(conn, payments, plan.unapplied, ctx)
    add_events(conn, events + credit_events)
    recompute_amounts(conn, touched)
    # The agency learns of the payment: the set is offered again by the next plain export.
    for chunk in chunks(sorted(result.after_escalation)):
        conn.execute(update(invoice_set_t).where(invoice_set_t.c.id.in_(chunk)).values(exported_at=None))
    result.changed = refresh_sets(conn, touched, ctx, rule_sets)
    return result


def _allocate(
    payments: list[NewPayment],
    owed: dict[int, list[dict[str, Any]]],
    written_off: dict[int, list[dict[str, Any]]],
    result: LedgerResult,
) -> _Allocation:
    """Each payment pays owed charges (the named one first), then recovers written-off ones;
    what is left is the patient's credit (noted in ``result.unapplied``)."""
    plan = _Allocation()
    for i, p in enumerate(payments):
        left = p["amount_cents"]
        for ch in _named_first(owed[p["patient_pk"]], p.get("charge_ref")):
            if left <= 0:
                break
            if ch["outstanding_cents"] <= 0:
                continue
            take = min(left, ch["outstanding_cents"])
            ch["outstanding_cents"] -= take
            left -= take
            plan.changed_charges[ch["id"]] = ch
            plan.allocations.append((i, ch["id"], take))
            if ch["invoice_set_id"] is not None:
                plan.per_set[(i, ch["invoice_set_id"])] += take
        for ch in _named_first(written_off[p["patient_pk"]], p.get("charge_ref")):
            if left <= 0:
                break
            if ch["recoverable_cents"] <= 0:
                continue
            take = min(left, ch["recoverable_cents"])
            ch["recoverable_cents"] -= take
            left -= take
            plan.allocations.append((i, ch["id"], take))
            if ch["invoice_set_id"] is not None:
                plan.recovered[(i, ch["invoice_set_id"])] += take
        plan.unapplied.append(left)
        if left > 0:
            result.unapplied.append(Unapplied(p["payment_id"], p["amount_cents"], left))
    return plan


def _insert_payments(conn: Connection, payments: list[NewPayment], unapplied: list[int], ctx: Context) -> list[int]:
    """Insert the payment rows; returns their primary keys in order."""
    rows = [
        {
            "payment_id": p["payment_id"],
            "patient_pk": p["patient_pk"],
            "amount_cents": p["amount_cents"],
            "unapplied_cents": unapplied[i],
            "paid_at": p["paid_at"],
            "charge_ref": p.get("charge_ref"),
            "source": p.get("source", "import"),
            "created_at": ctx.now,
        }
        for i, p in enumerate(payments)
    ]
    # A plain multi-row insert, then the keys by payment_id (unique): an ordered RETURNING would
    # make SQLAlchemy insert one row per statement on SQLite.
    by_payment_id: dict[str, int] = {}
    for chunk in chunks(rows, 1000):
        conn.execute(insert(payment_t), list(chunk))
        refs = [r["payment_id"] for r in chunk]
        found = conn.execute(select(payment_t.c.payment_id, payment_t.c.id).where(payment_t.c.payment_id.in_(refs)))
        by_payment_id.update((ref, pk) for ref, pk in found)
    return [by_payment_id[p["payment_id"]] for p in payments]


def _write_allocations(conn: Connection, plan: _Allocation, pay_ids: list[int]) -> None:
    """Insert the allocations and update the charges they paid."""
    alloc_rows = [{"payment_pk": pay_ids[i], "charge_pk": c, "amount_cents": cents} for i, c, cents in plan.allocations]
    for chunk in chunks(alloc_rows, 2000):
        conn.execute(insert(allocation_t), list(chunk))
    bulk_update(
        conn,
        charge_t,
        [
            {
                "b_id": cid,
                "outstanding_cents": ch["outstanding_cents"],
                "status": ChargeStatus.PAID if ch["outstanding_cents"] == 0 else ch["status"],
            }
            for cid, ch in plan.changed_charges.items()
        ],
    )


def _set_statuses(conn: Connection, set_ids: set[int]) -> dict[int, str]:
    set_status: dict[int, str] = {}
    for chunk in chunks(sorted(set_ids)):
        for set_id, status in conn.execute(
            select(invoice_set_t.c.id, invoice_set_t.c.status).where(invoice_set_t.c.id.in_(chunk))
        ):
            set_status[set_id] = status
    return set_status


def _payment_events(
    payments: list[NewPayment],
    per_set: dict[tuple[int, int], int],
    set_status: dict[int, str],
    result: LedgerResult,
    ctx: Context,
) -> list[dict[str, Any]]:
    """A payment event per (payment, set) paid; a set in collections is noted in ``result``."""
    events = []
    for (i, set_id), cents in sorted(per_set.items()):
        p = payments[i]
        detail: dict[str, Any] = {
            "payment_id": p["payment_id"],
            "applied_cents": cents,
            "amount_cents": p["amount_cents"],
            "source": p.get("source", "import"),
        }
        reason = None
        if set_status.get(set_id) == Status.COLLECTIONS.value:
            detail["after_escalation"] = True
            reason = "payment received after escalation to collections"
            result.after_escalation.add(set_id)
        events.append(
            event_row(ctx, "payment", set_id=set_id, patient_pk=p["patient_pk"], reason=reason, detail=detail)
        )
    return events


def _recovery_events(
    payments: list[NewPayment], recovered: dict[tuple[int, int], int], result: LedgerResult, ctx: Context
) -> list[dict[str, Any]]:
    """A recovery event per (payment, written-off set) that received money."""
    events = []
    for (i, set_id), cents in sorted(recovered.items()):
        p = payments[i]
        result.recovered.add(set_id)
        events.append(
            event_row(
                ctx,
                "payment",
                set_id=set_id,
                patient_pk=p["patient_pk"],
                reason="payment received after write-off (recovery)",
                detail={
                    "payment_id": p["payment_id"],
                    "recovered_cents": cents,
                    "amount_cents": p["amount_cents"],
                    "source": p.get("source", "import"),
                },
            )
        )
    return events


def _credit_events(
    conn: Connection, payments: list[NewPayment], unapplied: list[int], ctx: Context
) -> list[dict[str, Any]]:
    """A `credit` event for every payment with money left over, on the patient's latest set (so
    `show` and `audit --id` have it), or on no set when the patient has none."""
    pks = sorted({p["patient_pk"] for i, p in enumerate(payments) if unapplied[i] > 0})
    latest: dict[int, int] = {}
    for chunk in chunks(pks):
        for ppk, set_id in conn.execute(
            select(invoice_set_t.c.patient_pk, func.max(invoice_set_t.c.id))
            .where(invoice_set_t.c.patient_pk.in_(chunk))
            .group_by(invoice_set_t.c.patient_pk)
        ):
            latest[ppk] = set_id
    out = []
    for i, p in enumerate(payments):
        if unapplied[i] <= 0:
            continue
        out.append(
            event_row(
                ctx,
                "credit",
                set_id=latest.get(p["patient_pk"]),
                patient_pk=p["patient_pk"],
                reason="payment not applied: nothing owed; kept as credit",
                detail={
                    "payment_id": p["payment_id"],
                    "unapplied_cents": unapplied[i],
                    "amount_cents": p["amount_cents"],
                    "source": p.get("source", "import"),
                },
            )
        )
    return out


def apply_payments(
    conn: Connection, payments: list[NewPayment], ctx: Context, rule_sets: RuleSets
) -> dict[int, tuple[str, str]]:
    """Apply new payments; returns {set_id: (from, to)} for the sets whose status changed."""
    return apply_payments_detailed(conn, payments, ctx, rule_sets).changed


def credit_totals(conn: Connection) -> tuple[int, int]:
    """(patients with credit, total credit cents)."""
    count, cents = conn.execute(
        select(
            func.count(func.distinct(payment_t.c.patient_pk)), func.coalesce(func.sum(payment_t.c.unapplied_cents), 0)
        ).where(payment_t.c.unapplied_cents > 0)
    ).one()
    return int(count), int(cents)


def written_off_net(conn: Connection) -> int:
    """Cents written off and not recovered since: written-off charges less what was paid on them."""
    amount = conn.execute(
        select(func.coalesce(func.sum(charge_t.c.amount_cents), 0)).where(charge_t.c.status == ChargeStatus.WRITTEN_OFF)
    ).scalar_one()
    paid = conn.execute(
        select(func.coalesce(func.sum(allocation_t.c.amount_cents), 0))
        .select_from(allocation_t.join(charge_t, charge_t.c.id == allocation_t.c.charge_pk))
        .where(charge_t.c.status == ChargeStatus.WRITTEN_OFF)
    ).scalar_one()
    return int(amount) - int(paid)
