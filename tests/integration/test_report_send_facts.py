"""Each send carries its set's rule set, creation time and owed (`send.set_rule_set_id`,
`set_created_at`, `set_owed_cents`), kept by triggers (migration 0018) so the report counts from
send alone: they stay equal to a fresh read of the sets after imports, outreach runs, payments, a
rule-set change and plain SQL writes, on SQLite and PostgreSQL; and the report's figures follow."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update

from outreach_cli.store.database import Store
from outreach_cli.store.models import charge_t, invoice_set_t, rule_set_t, send_t
from tests.conftest import Cli
from tests.helpers import delivered_sms, patient, seed_patients, write_csv

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _facts(store: Store) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(what the sends carry, what their sets have now), row by row in send order."""
    s, d = invoice_set_t, send_t
    with store.read() as conn:
        kept = conn.execute(
            select(d.c.id, d.c.set_rule_set_id, d.c.set_created_at, d.c.set_owed_cents).order_by(d.c.id)
        ).all()
        fresh = conn.execute(
            select(d.c.id, s.c.rule_set_id, s.c.created_at, s.c.owed_cents)
            .select_from(d.join(s, s.c.id == d.c.invoice_set_id))
            .order_by(d.c.id)
        ).all()
    return [tuple(r) for r in kept], [tuple(r) for r in fresh]


def _check(store: Store) -> int:
    kept, fresh = _facts(store)
    assert kept == fresh
    return len(kept)


def _report(cli: Cli, at: datetime, since: str, *args: str) -> dict[str, Any]:
    out = cli.ok("report", "--since", since, "--format", "json", *args, now=z(at)).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def test_send_facts_kept_through_every_write(cli: Cli, tmp_path: Path) -> None:
    store = Store(cli.db)
    people = [patient("A"), patient("B", phone="(617) 555-0102"), patient("C", phone="(617) 555-0103")]
    seed_patients(cli, tmp_path, people, rule_set="standard", amount="250.00", now=z(T0))
    sets = {r["patient_id"]: r["id"] for r in json.loads(cli.ok("list", "--format", "json", now=z(T0)).stdout)}
    for day in (0, 4, 8):  # outreach writes the sends (and their outcomes)
        cli.ok("run-outreach", "--format", "json", now=z(T0 + timedelta(days=day, minutes=5)))
    assert _check(store) == 9  # day 0: sms and email to each of the 3; day 7: an sms to each
    # A second charge on A's set changes its owed: A's sends follow (0011's trigger, then 0018's).
    write_csv(tmp_path / "c2.csv", [{"charge_id": "C2-A", "patient_id": "A", "amount": "40.00"}])
    cli.ok("import", "charges", str(tmp_path / "c2.csv"), now=z(T0 + timedelta(days=9)))
    pay = [{"payment_id": "P1", "patient_id": "B", "amount": "100.00", "paid_at": z(T0 + timedelta(days=9))}]
    cli.ok("import", "payments", str(write_csv(tmp_path / "pay.csv", pay)), now=z(T0 + timedelta(days=9)))
    cli.ok("act", "change-ruleset", str(sets["C"]), "--rule-set", "gentle", "--yes", now=z(T0 + timedelta(days=9)))
    cli.ok("run-outreach", "--format", "json", now=z(T0 + timedelta(days=15)))
    n = _check(store)
    assert n == 12  # day 14's email to A and B; C's first gentle statement
    with store.read() as conn:
        gentle = conn.execute(select(rule_set_t.c.id).where(rule_set_t.c.name == "gentle")).scalar_one()
        kept_c = {
            r[0] for r in conn.execute(select(send_t.c.set_rule_set_id).where(send_t.c.invoice_set_id == sets["C"]))
        }
        owed_a = {
            r[0] for r in conn.execute(select(send_t.c.set_owed_cents).where(send_t.c.invoice_set_id == sets["A"]))
        }
    assert kept_c == {gentle} and owed_a == {29000}
    with store.write() as conn:
        # Plain SQL: a set's creation time moved, a charge voided, a send moved to another set, a
        # send written by hand.
        conn.execute(
            update(invoice_set_t).where(invoice_set_t.c.id == sets["B"]).values(created_at=T0 - timedelta(days=40))
        )
        conn.execute(update(charge_t).where(charge_t.c.charge_id == "C2-A").values(status="void"))
        first_a = conn.execute(select(send_t.c.id).where(send_t.c.invoice_set_id == sets["A"]).limit(1)).scalar_one()
        conn.execute(update(send_t).where(send_t.c.id == first_a).values(invoice_set_id=sets["C"], schedule_gen=99))
        b = conn.execute(select(invoice_set_t.c.patient_pk).where(invoice_set_t.c.id == sets["B"])).scalar_one()
        conn.execute(insert(send_t), delivered_sms(sets["B"], b, T0 + timedelta(days=1)))
    assert _check(store) == n + 1
    with store.write() as conn:
        conn.execute(delete(send_t).where(send_t.c.id == first_a))
    assert _check(store) == n
    # The report reads them: B now entered before March, with its sends.
    doc = _report(cli, T0 + timedelta(days=16), "2000-01-01", "--by", "step")
    assert doc["total"]["sets_entered"] == 3
    march = _report(cli, T0 + timedelta(days=16), "2026-03-01")
    assert march["total"]["sets_entered"] == 2
