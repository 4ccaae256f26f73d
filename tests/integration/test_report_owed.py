"""`invoice_set.owed_cents` (what the report calls owed on entry: the set's charges, void ones
excluded) is kept by triggers on charge (migration 0011): right after every kind of write, through
the CLI and by plain SQL, on SQLite and PostgreSQL; and the report reads it."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import delete, func, insert, select, update

from outreach_cli.core.models import allocation_t, charge_t, invoice_set_t, payment_t
from outreach_cli.core.store import Store
from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, patient, write_csv


def _owed(store: Store) -> dict[int, tuple[int, int]]:
    """Each set: (the kept owed, the sum of its non-void charges)."""
    with store.read() as conn:
        kept = dict(conn.execute(select(invoice_set_t.c.id, invoice_set_t.c.owed_cents)).all())
        summed = dict(
            conn.execute(
                select(charge_t.c.invoice_set_id, func.sum(charge_t.c.amount_cents))
                .where(charge_t.c.status != "void", charge_t.c.invoice_set_id.is_not(None))
                .group_by(charge_t.c.invoice_set_id)
            ).all()
        )
    return {sid: (int(k), int(summed.get(sid, 0))) for sid, k in kept.items()}


def _check(store: Store, expected: dict[int, int]) -> None:
    owed = _owed(store)
    assert all(k == s for k, s in owed.values()), owed
    assert {sid: k for sid, (k, _) in owed.items()} == expected


def _charges(cli: Cli, tmp: Path, name: str, rows: list[tuple[str, str, str]], *args: str) -> None:
    p = write_csv(tmp / name, [{"charge_id": c, "patient_id": p, "amount": a} for c, p, a in rows])
    cli.ok("import", "charges", str(p), *args)


def test_owed_kept_through_imports_payments_refunds_and_rule_set_changes(cli: Cli, tmp_path: Path) -> None:
    store = Store(cli.db)
    write_csv(tmp_path / "p.csv", [patient("A"), patient("B", phone="(617) 555-0102")], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"))
    _charges(cli, tmp_path, "c1.csv", [("CA1", "A", "100.00"), ("CB1", "B", "20.00")])
    sets = {r["patient_id"]: r["id"] for r in json.loads(cli.ok("list", "--format", "json").stdout)}
    a, b = sets["A"], sets["B"]
    _check(store, {a: 10000, b: 2000})
    # A second charge joins A's open set; a re-import with a new amount adjusts it; re-importing
    # the same file changes nothing.
    _charges(cli, tmp_path, "c2.csv", [("CA2", "A", "5.50"), ("CB1", "B", "25.00")])
    _charges(cli, tmp_path, "c2.csv", [("CA2", "A", "5.50"), ("CB1", "B", "25.00")])
    _check(store, {a: 10550, b: 2500})
    # Payments change what is outstanding, never what was owed; nor do a write-off or a new rule set.
    pay = write_csv(
        tmp_path / "pay.csv",
        [
            {"payment_id": "P1", "patient_id": "A", "amount": "40.00", "paid_at": "2026-03-02T15:00:00Z"},
            {"payment_id": "P2", "patient_id": "B", "amount": "25.00", "paid_at": "2026-03-02T15:00:00Z"},
        ],
    )
    cli.ok("import", "payments", str(pay))
    cli.ok("act", "change-ruleset", str(a), "--rule-set", "gentle", "--yes")
    cli.ok("act", "write-off", str(a), "--yes")
    _check(store, {a: 10550, b: 2500})
    with store.write() as conn:
        # A refund (a negative allocation), a voided charge, a charge moved to another set, an
        # amount corrected and a charge deleted: every path the triggers cover.
        ca1, ca2 = (
            conn.execute(select(charge_t.c.id).where(charge_t.c.charge_id == c)).scalar_one() for c in ("CA1", "CA2")
        )
        p1 = conn.execute(select(payment_t.c.id).where(payment_t.c.payment_id == "P1")).scalar_one()
        conn.execute(insert(allocation_t), {"payment_pk": p1, "charge_pk": ca1, "amount_cents": -1000})
    _check(store, {a: 10550, b: 2500})
    with store.write() as conn:
        conn.execute(update(charge_t).where(charge_t.c.id == ca2).values(status="void"))
    _check(store, {a: 10000, b: 2500})
    with store.write() as conn:
        conn.execute(update(charge_t).where(charge_t.c.id == ca2).values(status="outstanding", invoice_set_id=b))
    _check(store, {a: 10000, b: 3050})
    with store.write() as conn:
        conn.execute(update(charge_t).where(charge_t.c.id == ca2).values(amount_cents=700))
        conn.execute(update(charge_t).where(charge_t.c.id == ca1).values(invoice_set_id=None))
    _check(store, {a: 0, b: 3200})
    with store.write() as conn:
        conn.execute(delete(charge_t).where(charge_t.c.id == ca2))
    _check(store, {a: 0, b: 2500})
    # The report's owed is that column.
    doc = json.loads(cli.ok("report", "--since", "2000-01-01", "--format", "json").stdout)
    assert doc["total"]["owed_cents"] == 2500 and doc["total"]["sets_entered"] == 2
