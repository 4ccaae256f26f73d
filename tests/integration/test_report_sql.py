"""The report's fast path (counts and sums in the database, rows only for the sets with payments or
opt-outs: `read_report`) gives exactly the figures of the reference path (every row of every set
read and counted in Python: `read_report_input`), on SQLite and PostgreSQL.

The data is random but seeded, and made to hit the edges: sends of every status (pending,
cancelled and claimed ones are not counted; skipped ones reach a step without an attempt), times
after --until and missing ones, two sends delivered at the same instant, void charges, refunds,
payments after --until, STOP and other replies, email complaints and unsubscribes, A/B arms,
sets created around week starts in time zones with whole-hour, half-hour and DST offsets."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import permutations
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select

from outreach_cli.domain.report import BY_CHOICES, Costs, Options, Report
from outreach_cli.store.database import Store
from outreach_cli.store.models import (
    allocation_t,
    charge_t,
    event_t,
    invoice_set_t,
    patient_t,
    payment_t,
    rule_set_t,
    send_t,
)
from outreach_cli.store.report_queries import read_report, read_report_input
from tests.conftest import Cli

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
STATUSES = ["delivered"] * 5 + ["failed", "sent", "unknown", "skipped", "pending", "cancelled", "claimed"]
STEPS = [(0, "Text"), (3, "Email"), (7, "Call"), (14, "Letter")]
METHODS = ["sms", "email", "call", "mail", "charge_card"]


def _populate(store: Store, n: int = 240, seed: int = 7) -> None:
    """The rows whose IDs nothing refers to (sends, allocations, events) are inserted together at
    the end, in the order they were drawn, so they get the same IDs (one statement each instead
    of one per row)."""
    rnd = random.Random(seed)
    sends_rows: list[dict[str, Any]] = []
    allocation_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    with store.write() as conn:
        rs_ids = [r[0] for r in conn.execute(select(rule_set_t.c.id).order_by(rule_set_t.c.name))][:3]
        charge_n = payment_n = 0
        for i in range(n):
            pk = conn.execute(
                insert(patient_t).returning(patient_t.c.id),
                {"patient_id": f"P{i}", "first_name": "Ann", "search_text": "ann", "created_at": T0, "updated_at": T0},
            ).scalar_one()
            # Many sets close to a Monday midnight (UTC, New York, Kolkata) to test the week buckets.
            base = T0 + timedelta(days=7 * rnd.randrange(0, 10))
            created = base + timedelta(minutes=rnd.choice([-331, -330, -329, -301, -300, -299, -1, 0, 1, 59, 61]))
            if rnd.random() < 0.4:
                created = T0 + timedelta(seconds=rnd.randrange(0, 70 * 86400))
            spec = "gentle:1,standard:1" if i % 3 else None
            sid = conn.execute(
                insert(invoice_set_t).returning(invoice_set_t.c.id),
                {
                    "patient_pk": pk,
                    "rule_set_id": rnd.choice(rs_ids),
                    "status": rnd.choice(["active", "paid", "written-off", "collections", "cancelled"]),
                    "created_at": created,
                    "anchor_at": created,
                    "updated_at": created,
                    "experiment": spec,
                    "arm": rnd.choice(["standard", "gentle"]) if spec else None,
                },
            ).scalar_one()
            charges = []
            for _ in range(rnd.choice([0, 1, 1, 2, 3])):
                charge_n += 1
                charges.append(
                    conn.execute(
                        insert(charge_t).returning(charge_t.c.id),
                        {
                            "charge_id": f"C{charge_n}",
                            "patient_pk": pk,
                            "invoice_set_id": sid,
                            "amount_cents": rnd.choice([1000, 2550, 9999, 40000]),
                            "outstanding_cents": 0,
                            "created_at": created,
                            "status": rnd.choice(["outstanding", "paid", "void", "written-off"]),
                        },
                    ).scalar_one()
                )
            sends = []
            for k, (day, title) in enumerate(STEPS[: rnd.randrange(0, 5)]):
                for m in rnd.sample(METHODS, rnd.choice([1, 1, 2])):
                    at = created + timedelta(days=day, hours=rnd.choice([0, 0, 1]))
                    status = rnd.choice(STATUSES)
                    row = {
                        "invoice_set_id": sid,
                        "patient_pk": pk,
                        "step_index": k,
                        "step_day": day,
                        "step_title": title,
                        "method": m,
                        "status": status,
                        "due_at": at if rnd.random() < 0.95 else None,
                        "sent_at": at if status in ("delivered", "sent", "failed") and rnd.random() < 0.8 else None,
                        "finished_at": at + timedelta(minutes=1) if rnd.random() < 0.5 else None,
                        "attempts": 1,
                    }
                    sends_rows.append(row)
                    sends.append(at)
            facts = sends or [created]
            for _ in range(rnd.choice([0, 0, 1, 2, 3])):
                payment_n += 1
                at = rnd.choice(facts) + timedelta(days=rnd.choice([0, 0, 1, 6, 7, 8, 30]), seconds=rnd.choice([0, 1]))
                if rnd.random() < 0.1:
                    at = created - timedelta(hours=1)  # before the set and any send
                cents = rnd.choice([500, 2550, 9999, 40000, -1000])
                pay = conn.execute(
                    insert(payment_t).returning(payment_t.c.id),
                    {
                        "payment_id": f"P{payment_n}",
                        "patient_pk": pk,
                        "amount_cents": cents,
                        "paid_at": at,
                        "created_at": at,
                    },
                ).scalar_one()
                for c in charges[: rnd.choice([1, 2])]:
                    allocation_rows.append({"payment_pk": pay, "charge_pk": c, "amount_cents": cents})
            for _ in range(rnd.choice([0, 0, 0, 1, 2])):
                kind = rnd.choice(["reply", "reply", "email_complaint", "email_unsubscribe", "created"])
                keyword = rnd.choice(["stop", "start", None])
                event_rows.append(
                    {
                        "invoice_set_id": sid,
                        "patient_pk": pk,
                        "at": rnd.choice(facts) + timedelta(days=rnd.choice([0, 2, 8])),
                        "kind": kind,
                        "detail": json.dumps({"keyword": keyword}) if keyword else None,
                    }
                )
        for table, rows in ((send_t, sends_rows), (allocation_t, allocation_rows), (event_t, event_rows)):
            if rows:
                conn.execute(insert(table), rows)


def _doc(store: Store, fast: bool, opts: Options, **filters: Any) -> dict[str, Any]:
    with store.read() as conn:
        if fast:
            data = read_report(
                conn, since=opts.since, until=opts.until, tz=opts.tz, by=opts.by, experiment=opts.experiment, **filters
            )
        else:
            data = read_report_input(conn, since=opts.since, until=opts.until, **filters)
    return Report(data, opts).as_dict()


@pytest.mark.parametrize(
    "every_zone", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["zones-in-turn", "every-zone"]
)
def test_fast_path_equals_the_reference_on_every_grouping(cli: Cli, every_zone: bool) -> None:
    """Every grouping in each of three zones (slow), or each grouping once with the zones taking
    turns (fast)."""
    store = Store(cli.db)
    _populate(store)
    costs = Costs(sms=Decimal("0.0079"), email=Decimal("0.001"), call_minute=Decimal("0.02"), letter=Decimal("0.85"))
    groupings = [(d,) for d in BY_CHOICES] + list(permutations(BY_CHOICES, 2)) + [tuple(BY_CHOICES)]
    zones = ("UTC", "America/New_York", "Asia/Kolkata")
    compared = 0
    for z, tz in enumerate(zones):
        for i, by in enumerate(groupings):
            if not every_zone and (i // 3) % len(zones) != z:  # each zone meets every window
                continue
            opts = Options(
                since=T0 - timedelta(days=3),
                until=T0 + timedelta(days=[80, 40, 25][i % 3]),  # later payments and sends fall outside
                tz=ZoneInfo(tz),
                by=by,
                attribution="last" if i % 2 else "first",
                attribution_days=[7, 0, 3][i % 3],
                costs=costs,
                experiment=True,
            )
            fast, ref = _doc(store, True, opts), _doc(store, False, opts)
            assert fast == ref, (tz, by)
            if compared == 0:
                first = ref["total"]  # UTC, by the first grouping, days -3 to 80, first touch, 7 days
            compared += 1
    assert compared == (3 if every_zone else 1) * len(groupings)
    # The reference is not trivial: money, opt-outs, unprompted payments and A/B arms all appear.
    keys = ("sets_entered", "collected_cents", "opt_outs", "unprompted_cents", "sets_paid_full", "sets_paid_partly")
    assert {k: first[k] for k in keys} == {
        "sets_entered": 240,  # every set of _populate(n=240, seed=7)
        "collected_cents": 2765844,
        "opt_outs": 60,
        "unprompted_cents": 1613013,
        "sets_paid_full": 56,
        "sets_paid_partly": 49,
    }
    assert {a["arm"] for a in ref["experiment"][0]["arms"]} == {"gentle", "standard"}


def test_fast_path_equals_the_reference_with_filters(cli: Cli) -> None:
    store = Store(cli.db)
    _populate(store, n=120, seed=11)
    opts = Options(since=T0 + timedelta(days=10), until=T0 + timedelta(days=50), tz=ZoneInfo("America/New_York"))
    for filters, entered in (
        ({"statuses": ["paid", "written-off"]}, 30),
        ({"rule_sets": ["gentle"]}, 26),
        ({"statuses": ["active"], "rule_sets": ["standard", "gentle"]}, 9),
    ):
        fast, ref = _doc(store, True, opts, **filters), _doc(store, False, opts, **filters)
        assert fast == ref, filters
        assert fast["total"]["sets_entered"] == entered, filters
