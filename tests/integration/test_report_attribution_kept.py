"""The report's last-touch attribution kept at write time (`payment_touch`, `set_paid`; migration
0020, store/attribution.py) always equals a fresh computation of it, after imports of payments and
charges, outreach runs, a late delivery receipt for a send attempted before a payment, refunds
(a refund payment and a negative allocation), and plain SQL writes to payments, charges and sends,
on SQLite and PostgreSQL; a set whose stored rows a write left stale is read afresh by the report,
whose figures equal the reference (every row, counted in Python) throughout."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, insert, select, update

from outreach_cli.domain.report import Options, Report
from outreach_cli.store import attribution
from outreach_cli.store.database import Store
from outreach_cli.store.models import (
    allocation_t,
    charge_t,
    invoice_set_t,
    payment_t,
    payment_touch_t,
    report_stale_t,
    send_t,
    set_paid_t,
)
from outreach_cli.store.report_queries import read_report, read_report_input
from tests.conftest import Cli
from tests.helpers import delivered_sms, patient, seed_patients, write_csv

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rows(conn: Any) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    pt, sp = payment_touch_t, set_paid_t
    touches = conn.execute(select(pt).order_by(pt.c.set_id, pt.c.pay_id)).all()
    sets = conn.execute(select(sp).order_by(sp.c.set_id)).all()
    return [tuple(r) for r in touches], [tuple(r) for r in sets]


def _kept_and_fresh(store: Store) -> tuple[Any, Any, int]:
    """(what is kept, the same computed afresh for every set, how many sets are marked stale); the
    fresh computation is rolled back."""
    with store.engine.connect() as conn:
        tx = conn.begin()
        stale = len(conn.execute(select(report_stale_t)).all())
        kept = _rows(conn)
        conn.execute(delete(payment_touch_t))
        conn.execute(delete(set_paid_t))
        attribution.mark_all(conn)
        attribution.refresh(conn)
        fresh = _rows(conn)
        tx.rollback()
    return kept, fresh, stale


def _check(store: Store) -> int:
    kept, fresh, stale = _kept_and_fresh(store)
    assert stale == 0
    assert kept == fresh
    return len(kept[1])


def _same_report(store: Store, until: datetime) -> dict[str, Any]:
    """The report read from what is kept equals the reference, for a few windows and --until."""
    doc: dict[str, Any] = {}
    for days in (7, 0, 3):
        for end in (until, T0 + timedelta(days=5)):
            opts = Options(
                since=T0 - timedelta(days=60),
                until=end,
                tz=ZoneInfo("America/New_York"),
                by=("rule-set", "step", "method", "week"),
                attribution_days=days,
                experiment=True,
            )
            with store.read() as conn:
                fast = Report(
                    read_report(conn, since=opts.since, until=end, tz=opts.tz, by=opts.by, experiment=True), opts
                ).as_dict()
                ref = Report(read_report_input(conn, since=opts.since, until=end), opts).as_dict()
            assert fast == ref, (days, end)
            if end == until and days == 7:
                doc = fast
    return doc


def _pay(cli: Cli, tmp: Path, name: str, rows: list[tuple[str, str, str, datetime]], now: datetime) -> None:
    recs = [{"payment_id": i, "patient_id": p, "amount": a, "paid_at": z(at)} for i, p, a, at in rows]
    cli.ok("import", "payments", str(write_csv(tmp / name, recs)), now=z(now))


def test_kept_attribution_equals_a_fresh_one_through_every_write(cli: Cli, tmp_path: Path) -> None:
    store = Store(cli.db)
    people = [patient(p, phone=f"(617) 555-01{i:02d}") for i, p in enumerate("ABCDE")]
    seed_patients(cli, tmp_path, people, rule_set="standard", amount="250.00", now=z(T0))
    sets = {r["patient_id"]: r["id"] for r in json.loads(cli.ok("list", "--format", "json", now=z(T0)).stdout)}
    for day in (0, 4):  # outreach writes the sends and their outcomes
        cli.ok("run-outreach", "--format", "json", now=z(T0 + timedelta(days=day, minutes=5)))
    # Payments after sends, one before any, one in the same second as another.
    _pay(
        cli,
        tmp_path,
        "p1.csv",
        [
            ("P1", "A", "100.00", T0 + timedelta(days=1)),
            ("P2", "B", "250.00", T0 + timedelta(days=5)),
            ("P3", "C", "20.00", T0 - timedelta(hours=2)),
            ("P4", "D", "50.00", T0 + timedelta(days=4, minutes=5)),
            ("P5", "D", "50.00", T0 + timedelta(days=4, minutes=5)),
        ],
        T0 + timedelta(days=5),
    )
    assert _check(store) == 4
    _same_report(store, T0 + timedelta(days=6))
    # A later run adds sends to the paying sets; a charge import changes A's owed.
    cli.ok("run-outreach", "--format", "json", now=z(T0 + timedelta(days=8, minutes=5)))
    write_csv(tmp_path / "c2.csv", [{"charge_id": "C2-A", "patient_id": "A", "amount": "40.00"}])
    cli.ok("import", "charges", str(tmp_path / "c2.csv"), now=z(T0 + timedelta(days=9)))
    _pay(cli, tmp_path, "p2.csv", [("P6", "A", "190.00", T0 + timedelta(days=9))], T0 + timedelta(days=9))
    assert _check(store) == 4
    with store.read() as conn:
        sends = conn.execute(
            select(send_t.c.id, send_t.c.invoice_set_id, send_t.c.status, send_t.c.sent_at).order_by(send_t.c.id)
        ).all()
    assert len(sends) == 14  # sms and email to each of the 5 sets on day 0, then 4 texts on day 8
    # A delivery receipt that arrives after the payment for a send attempted before it: the
    # payment is credited to it from then on (written through the store: refreshed at commit).
    e_send = next(r for r in sends if r.invoice_set_id == sets["E"])
    with store.write() as conn:
        conn.execute(update(send_t).where(send_t.c.invoice_set_id == sets["E"]).values(status="sent"))
    _pay(cli, tmp_path, "p3.csv", [("P7", "E", "30.00", T0 + timedelta(days=2))], T0 + timedelta(days=10))
    before = _same_report(store, T0 + timedelta(days=11))
    with store.write() as conn:
        conn.execute(update(send_t).where(send_t.c.id == e_send.id).values(status="delivered"))
    assert _check(store) == 5
    after = _same_report(store, T0 + timedelta(days=11))
    # E's $30.00 (P7) leaves the unprompted money: it is credited to the send delivered now.
    assert (before["total"]["unprompted_cents"], after["total"]["unprompted_cents"]) == (5000, 2000)
    # Refunds: a refund payment of B's (a negative group), a negative allocation on A's P6.
    with store.write() as conn:
        b_pk, a_pk = (
            conn.execute(select(invoice_set_t.c.patient_pk).where(invoice_set_t.c.id == sets[k])).scalar_one()
            for k in "BA"
        )
        b_charge = conn.execute(select(charge_t.c.id).where(charge_t.c.invoice_set_id == sets["B"])).scalars().first()
        refund = conn.execute(
            insert(payment_t).returning(payment_t.c.id),
            {
                "payment_id": "R1",
                "patient_pk": b_pk,
                "amount_cents": -5000,
                "paid_at": T0 + timedelta(days=10),
                "created_at": T0 + timedelta(days=10),
                "source": "card",
            },
        ).scalar_one()
        conn.execute(insert(allocation_t), {"payment_pk": refund, "charge_pk": b_charge, "amount_cents": -5000})
        p6 = conn.execute(select(payment_t.c.id).where(payment_t.c.payment_id == "P6")).scalar_one()
        a_charge = conn.execute(
            select(allocation_t.c.charge_pk).where(allocation_t.c.payment_pk == p6).limit(1)
        ).scalar_one()
        conn.execute(insert(allocation_t), {"payment_pk": p6, "charge_pk": a_charge, "amount_cents": -1000})
        assert a_pk
    assert _check(store) == 5
    _same_report(store, T0 + timedelta(days=11))
    # The set's facts the kept rows carry: its rule set (the CLI), its status, creation and arm.
    cli.ok("act", "change-ruleset", str(sets["C"]), "--rule-set", "gentle", "--yes", now=z(T0 + timedelta(days=10)))
    with store.write() as conn:
        conn.execute(
            update(invoice_set_t)
            .where(invoice_set_t.c.id == sets["E"])
            .values(status="written-off", created_at=T0 - timedelta(days=1), experiment="x", arm="b")
        )
    assert _check(store) == 5
    _same_report(store, T0 + timedelta(days=11))
    # Plain SQL through the store: a payment's time moved, a charge moved to another set, a send
    # moved, one deleted, one written by hand.
    with store.write() as conn:
        conn.execute(update(payment_t).where(payment_t.c.payment_id == "P1").values(paid_at=T0 + timedelta(days=4)))
        d_charge = conn.execute(select(charge_t.c.id).where(charge_t.c.invoice_set_id == sets["D"])).scalars().first()
        conn.execute(update(charge_t).where(charge_t.c.id == d_charge).values(invoice_set_id=sets["C"]))
        c_send = next(r for r in sends if r.invoice_set_id == sets["C"])
        conn.execute(update(send_t).where(send_t.c.id == c_send.id).values(invoice_set_id=sets["A"], schedule_gen=99))
        conn.execute(delete(send_t).where(send_t.c.id == next(r.id for r in sends if r.invoice_set_id == sets["B"])))
        conn.execute(insert(send_t), delivered_sms(sets["D"], b_pk, T0 + timedelta(days=3)))
    assert _check(store) == 4  # D's paid charge went to C: D has no payments left
    _same_report(store, T0 + timedelta(days=11))
    # A write that bypasses the store's refresh leaves its sets marked stale: the report reads
    # them afresh (the same figures), and the next write through the store brings them up to date.
    with store.engine.begin() as conn:
        conn.execute(update(send_t).where(send_t.c.invoice_set_id == sets["A"]).values(status="delivered"))
        conn.execute(update(payment_t).where(payment_t.c.payment_id == "P2").values(paid_at=T0 + timedelta(days=7)))
    kept, fresh, stale = _kept_and_fresh(store)
    assert stale == 2 and kept != fresh
    _same_report(store, T0 + timedelta(days=11))
    with store.write():
        pass
    assert _check(store) == 4
