"""`metrics`' counts kept at write time (migration 0022, store/tally.py) always equal a fresh count
of every set, on SQLite and PostgreSQL: after patient and charge imports, every bulk action,
payments, outreach runs, and plain SQL inserts, updates (status, amount, creation time, other
columns) and deletes, through the store or around it. And `metrics --all` equals the figures
counted in Python from every set, at aging boundaries to the microsecond."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update

from outreach_cli.domain.statuses import OPEN, Status
from outreach_cli.store.database import Store
from outreach_cli.store.models import invoice_set_t
from tests.conftest import Cli
from tests.helpers import patient, seed_patients, tally_kept_and_fresh, write_csv

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
BUCKETS = (("0-30", 0, 30), ("31-60", 31, 60), ("61-90", 61, 90), ("91-120", 91, 120), ("120+", 121, None))


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _check(store: Store) -> dict[Any, Any]:
    """Kept equals fresh, and a write through the store left no delta (PostgreSQL folds it in)."""
    kept, fresh, delta = tally_kept_and_fresh(store)
    assert (kept, delta) == (fresh, 0)
    return kept


def _reference(store: Store, now: datetime) -> dict[str, Any]:
    """`metrics --all`'s counts from every set, in Python."""
    with store.read() as conn:
        rows = conn.execute(
            select(invoice_set_t.c.status, invoice_set_t.c.created_at, invoice_set_t.c.amount_outstanding_cents)
        ).all()
    per = {s.value: [0, 0] for s in Status}
    aging = {name: [0, 0] for name, _, _ in BUCKETS}
    for status, created, cents in rows:
        per[status][0] += 1
        per[status][1] += cents
        if status in {s.value for s in OPEN} and created <= now:
            days = (now - created) // timedelta(days=1)
            name = next(n for n, _, hi in BUCKETS if hi is None or days <= hi)
            aging[name][0] += 1
            aging[name][1] += cents
    return {"status": per, "aging": aging}


def _metrics(cli: Cli, now: datetime) -> dict[str, Any]:
    doc = json.loads(cli.ok("metrics", "--all", "--format", "json", now=z(now)).stdout)
    plain = json.loads(cli.ok("metrics", "--format", "json", now=z(now)).stdout)
    assert plain == {k: doc[k] for k in ("failed", "expired", "paused", "will-fail")}
    return {
        "status": {s.value: [doc[s.value]["count"], doc[s.value]["amount_outstanding_cents"]] for s in Status},
        "aging": {b["bucket"]: [b["count"], b["amount_outstanding_cents"]] for b in doc["aging"]},
    }


def _same_metrics(cli: Cli, store: Store, *nows: datetime) -> None:
    for now in nows:
        assert _metrics(cli, now) == _reference(store, now), now


def test_the_tally_equals_a_fresh_count_through_every_write(cli: Cli, tmp_path: Path) -> None:
    store = Store(cli.db)
    people = [patient(p, phone=f"(617) 555-01{i:02d}") for i, p in enumerate("ABCDEFGH")]
    seed_patients(cli, tmp_path, people, rule_set="standard", amount="250.00", now=z(T0))
    sets = {r["patient_id"]: r["id"] for r in json.loads(cli.ok("list", "--format", "json", now=z(T0)).stdout)}
    day = T0.replace(hour=0, minute=0).date()
    assert _check(store) == {("active", day): (8, 200000)}
    # Actions, each of its kind; a second charge for A (its amount); B pays in full; a run.
    at = T0 + timedelta(days=3)
    for action, who in (("pause", "CD"), ("cancel", "E"), ("write-off", "F"), ("collections", "G")):
        cli.ok("act", action, *(str(sets[p]) for p in who), "--yes", now=z(at))
    cli.ok("act", "resume", str(sets["D"]), now=z(at))
    cli.ok("act", "change-ruleset", str(sets["H"]), "--rule-set", "gentle", "--yes", now=z(at))
    write_csv(tmp_path / "c2.csv", [{"charge_id": "C2-A", "patient_id": "A", "amount": "40.00"}])
    cli.ok("import", "charges", str(tmp_path / "c2.csv"), now=z(at))
    pay = [{"payment_id": "PB", "patient_id": "B", "amount": "250.00", "paid_at": z(at)}]
    cli.ok("import", "payments", str(write_csv(tmp_path / "pay.csv", pay)), now=z(at))
    cli.ok("run-outreach", "--format", "json", now=z(at + timedelta(minutes=5)))
    kept = _check(store)
    assert kept == {
        ("active", day): (3, 2 * 25000 + 29000),  # D (resumed), H (new rule set), A (a second charge)
        ("cancelled", day): (1, 25000),
        ("collections", day): (1, 25000),
        ("paid", day): (1, 0),
        ("paused", day): (1, 25000),
        ("written-off", day): (1, 0),
    }
    _same_metrics(cli, store, at, T0, T0 - timedelta(microseconds=1))
    # Plain SQL through the store: a set moved 40 days back (another day's row), one made failed
    # with a new amount, two inserted by hand and one of them deleted, a change to columns the
    # tally ignores.
    with store.write() as conn:
        back = T0 - timedelta(days=40, microseconds=-1)
        conn.execute(update(invoice_set_t).where(invoice_set_t.c.id == sets["A"]).values(created_at=back))
        conn.execute(
            update(invoice_set_t)
            .where(invoice_set_t.c.id == sets["D"])
            .values(status="failed", amount_outstanding_cents=12345)
        )
        row = conn.execute(select(invoice_set_t).where(invoice_set_t.c.id == sets["E"])).mappings().one()
        old = T0 - timedelta(days=200)
        conn.execute(
            insert(invoice_set_t),
            [{**row, "id": 9001, "status": "expired", "created_at": old}, {**row, "id": 9002, "created_at": old}],
        )
        conn.execute(delete(invoice_set_t).where(invoice_set_t.c.id == 9002))
        conn.execute(update(invoice_set_t).values(updated_at=at))  # every set; no count changes
    kept = _check(store)
    assert kept[("active", back.date())] == (1, 29000)
    assert kept[("failed", day)] == (1, 12345)
    assert kept[("expired", (T0 - timedelta(days=200)).date())] == (1, 25000)
    assert kept[("cancelled", day)] == (1, 25000)  # E; its copy came and went
    assert ("cancelled", old.date()) not in kept
    # The aging at each boundary of A's bucket, to the microsecond (it is 40 days less 1 µs old).
    _same_metrics(cli, store, back + timedelta(days=31), back + timedelta(days=31, microseconds=-1), at)
    # A write around the store: PostgreSQL leaves its delta until the next store write folds it;
    # the figures are right either way.
    with store.engine.begin() as conn:
        conn.execute(update(invoice_set_t).where(invoice_set_t.c.id == sets["C"]).values(status="active"))
    kept, fresh, delta = tally_kept_and_fresh(store)
    assert kept == fresh
    assert delta == (2 if store.dialect == "postgresql" else 0)  # paused -1, active +1
    _same_metrics(cli, store, at)
    with store.write():
        pass
    assert _check(store) == fresh
