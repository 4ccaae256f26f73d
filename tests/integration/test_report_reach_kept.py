"""The report's reach kept at write time (`step_reach`; migration 0021, store/reach.py) always
equals a fresh computation of it, after outreach runs, charge imports (the owed), a rule-set
change, and plain SQL writes to sends (status, time, step, set, deleted, written, with no time
at all, an opt-out confirmation) and sets, on SQLite and PostgreSQL; a write that bypasses the
store leaves its sets marked, and the report counts them from their sends: its figures equal the
reference (every row, counted in Python) throughout, for an --until between the sends."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, insert, select, update

from outreach_cli.domain.report import Options, Report
from outreach_cli.store import reach
from outreach_cli.store.database import Store
from outreach_cli.store.models import invoice_set_t, reach_stale_t, send_t, step_reach_t
from outreach_cli.store.report_queries import read_report, read_report_input
from tests.conftest import Cli
from tests.helpers import delivered_sms, patient, seed_patients, write_csv

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York
BYS = [("rule-set", "step"), ("rule-set", "step", "week"), ("method",)]


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rows(conn: Any) -> list[tuple[Any, ...]]:
    r = step_reach_t
    return [tuple(x) for x in conn.execute(select(r).order_by(r.c.set_id, r.c.step_day, r.c.step_title))]


def _stale(store: Store) -> int:
    with store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(reach_stale_t)).scalar_one())


def _kept_and_fresh(store: Store) -> tuple[list[Any], list[Any], int]:
    """(what is kept, the same computed afresh for every set, how many sets are marked); the fresh
    computation is rolled back."""
    with store.engine.connect() as conn:
        tx = conn.begin()
        stale = int(conn.execute(select(func.count()).select_from(reach_stale_t)).scalar_one())
        kept = _rows(conn)
        reach.rebuild(conn)
        fresh = _rows(conn)
        tx.rollback()
    return kept, fresh, stale


def _check(store: Store) -> list[tuple[Any, ...]]:
    kept, fresh, stale = _kept_and_fresh(store)
    assert (stale, kept) == (0, fresh)
    return kept


def _same_report(store: Store, *untils: datetime) -> dict[str, Any]:
    """The report read with what is kept equals the reference, grouped three ways, for each --until."""
    first: dict[str, Any] = {}
    for by in BYS:
        for until in untils:
            opts = Options(since=T0 - timedelta(days=30), until=until, tz=ZoneInfo("America/New_York"), by=by)
            with store.read() as conn:
                fast = Report(read_report(conn, since=opts.since, until=until, tz=opts.tz, by=by), opts).as_dict()
                ref = Report(read_report_input(conn, since=opts.since, until=until), opts).as_dict()
            assert fast == ref, (by, until)
            first = first or fast
    return first


def _reached(doc: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(step, sets that reached it, sets that paid after it) of the report's funnel."""
    return [(s["step"], s["reached"], s["paid_after"]) for steps in doc["funnel"].values() for s in steps]


def test_kept_reach_equals_a_fresh_one_through_every_write(cli: Cli, tmp_path: Path) -> None:
    store = Store(cli.db)
    people = [patient(p, phone=f"(617) 555-01{i:02d}") for i, p in enumerate("ABCD")]
    seed_patients(cli, tmp_path, people, rule_set="standard", amount="250.00", now=z(T0))
    sets = {r["patient_id"]: r["id"] for r in json.loads(cli.ok("list", "--format", "json", now=z(T0)).stdout)}
    assert _check(store) == []  # no send yet: nothing reached
    for day in (0, 8):  # a text and an email to each set on day 0, a text on day 8
        cli.ok("run-outreach", "--format", "json", now=z(T0 + timedelta(days=day, minutes=5)))
    kept = _check(store)
    # Each set reached two steps, the earlier one its first.
    assert [(r[0], r[1], r[4]) for r in kept] == [(sets[p], d, f) for p in "ABCD" for d, f in ((0, 1), (7, 0))]
    doc = _same_report(store, T0 + timedelta(days=9), T0 + timedelta(days=2), T0)
    later = ["Second statement", "Reminder call", "Statement letter", "Final notice", "Card on file"]
    assert _reached(doc) == [("(entered)", 4, 0), ("Statement", 4, 0), ("Friendly reminder", 4, 0)] + [
        (step, 0, 0) for step in later
    ]
    with store.read() as conn:
        sends = conn.execute(select(send_t).order_by(send_t.c.id)).all()
        a_pk = conn.execute(select(invoice_set_t.c.patient_pk).where(invoice_set_t.c.id == sets["A"])).scalar_one()
    by_set = {p: [s for s in sends if s.invoice_set_id == sets[p]] for p in "ABCD"}
    # Plain SQL through the store: A's first send has no time at all (always counts), B's first
    # is skipped (still reached), C's day-0 sends cancelled (that step no longer reached), D's
    # email moved to another step; an opt-out confirmation (not outreach) and a text written by
    # hand for A.
    with store.write() as conn:
        untimed = {"sent_at": None, "finished_at": None, "due_at": None}
        conn.execute(update(send_t).where(send_t.c.id == by_set["A"][0].id).values(**untimed))
        conn.execute(update(send_t).where(send_t.c.id == by_set["B"][0].id).values(status="skipped"))
        c_day0 = [by_set["C"][0].id, by_set["C"][1].id]
        conn.execute(update(send_t).where(send_t.c.id.in_(c_day0)).values(status="cancelled"))
        conn.execute(update(send_t).where(send_t.c.id == by_set["D"][1].id).values(step_day=0, step_title="Text"))
        confirmation = delivered_sms(sets["A"], a_pk, T0 - timedelta(days=1)) | {
            "step_index": -1,
            "step_title": "Opt-out confirmation",
            "schedule_gen": 97,
        }
        conn.execute(insert(send_t), [confirmation, delivered_sms(sets["A"], a_pk, T0 + timedelta(days=5))])
    kept = _check(store)
    assert [(r[0], r[1], r[2], r[3] is None, r[4]) for r in kept if r[0] == sets["A"]] == [
        (sets["A"], 0, "Statement", True, 1),
        (sets["A"], 0, "Text", False, 0),
        (sets["A"], 7, "Friendly reminder", False, 0),
    ]
    assert [(r[1], r[4]) for r in kept if r[0] == sets["C"]] == [(7, 1)]  # day 7 is now its first
    with store.write() as conn:  # a time alone changed (to none at all)
        conn.execute(update(send_t).where(send_t.c.id == by_set["C"][2].id).values(**untimed))
    assert [(r[1], r[3]) for r in _check(store) if r[0] == sets["C"]] == [(7, None)]
    _same_report(store, T0 + timedelta(days=6), T0 + timedelta(days=2), T0 - timedelta(days=2))
    # A pending send rescheduled, a reached one's delivery receipt (its time unchanged): no mark.
    with store.engine.begin() as conn:
        conn.execute(update(send_t).where(send_t.c.id == by_set["B"][1].id).values(status="delivered"))
        conn.execute(insert(send_t), delivered_sms(sets["B"], a_pk, None) | {"status": "pending", "schedule_gen": 96})
    assert _stale(store) == 0
    # The set's facts the rows carry: its owed (a charge import), rule set (the CLI), creation time.
    write_csv(tmp_path / "c2.csv", [{"charge_id": "C2-A", "patient_id": "A", "amount": "40.00"}])
    cli.ok("import", "charges", str(tmp_path / "c2.csv"), now=z(T0 + timedelta(days=7)))
    cli.ok("act", "change-ruleset", str(sets["C"]), "--rule-set", "gentle", "--yes", now=z(T0 + timedelta(days=7)))
    with store.write() as conn:
        conn.execute(update(invoice_set_t).where(invoice_set_t.c.id == sets["D"]).values(created_at=T0 - timedelta(1)))
    kept = _check(store)
    assert {r[0]: (r[5], r[7]) for r in kept if r[4]}[sets["A"]] == (kept[0][5], 29000)
    _same_report(store, T0 + timedelta(days=8), T0 + timedelta(days=2))
    # Writes that bypass the store's refresh leave their sets marked: the report counts them from
    # their sends (the same figures); the next write through the store brings them up to date.
    with store.engine.begin() as conn:
        conn.execute(update(send_t).where(send_t.c.id == by_set["C"][0].id).values(status="failed"))
        conn.execute(delete(send_t).where(send_t.c.id == by_set["D"][0].id))
    kept, fresh, stale = _kept_and_fresh(store)
    assert stale == 2 and kept != fresh
    _same_report(store, T0 + timedelta(days=8), T0 + timedelta(days=2))
    with store.write():
        pass
    assert _check(store) == fresh
