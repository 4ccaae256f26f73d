"""Killed runs lose nothing and duplicate nothing; stale workers are fenced; admins and payments
win races; provider faults end every send delivered or failed (SPEC section 6)."""

from __future__ import annotations

import json
import random
import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from outreach_cli.store.database import Store
from outreach_cli.store.models import invoice_set_t, send_t
from tests.fakes.twilio_server import FakeTwilio
from tests.helpers import write_csv
from tests.reliability.harness import (
    T0,
    env_for,
    finish,
    fresh_sqlite,
    per_number,
    phone,
    run_here,
    send_statuses,
    start_run,
    z,
)


def _wait_for_requests(fake: FakeTwilio, n: int, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while len(fake.create_requests) < n:
        assert time.monotonic() < end, "the run never reached the provider"
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(6))
def test_kill_9_at_random_moments(tmp_path: Path, trial: int) -> None:
    rnd = random.Random(trial)
    n = 150
    fake = FakeTwilio(delay=0.01).start()
    try:
        db, _ = fresh_sqlite(tmp_path, n)
        env = env_for(db, fake, OUTREACH_SENDING_CONCURRENCY="4")
        proc = start_run(env, T0)
        # Kill at a random point: before, during or after provider calls (some accepted, unrecorded).
        _wait_for_requests(fake, rnd.randrange(0, 60))
        time.sleep(rnd.random() * 0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # Later runs (past the lease) finish the work: unknown sends are looked up, not re-sent.
        for minutes in (10, 20, 60, 180):
            code, _, err = run_here(env, T0 + timedelta(minutes=minutes))
            assert code == 0, err
        counts = per_number(fake)
        assert not {k: v for k, v in counts.items() if v > 1}, "a send went out twice"
        assert set(counts) == {phone(i) for i in range(n)}, "a send was lost"
        st = send_statuses(db)
        assert st["claimed"] == 0 and st["unknown"] == 0 and st["pending"] == 0, st
    finally:
        fake.stop()


@pytest.mark.slow  # two processes, one frozen past its lease by a fake that answers 4 s late
def test_stale_worker_cannot_overwrite_the_reclaimed_result(tmp_path: Path) -> None:
    fake = FakeTwilio(delay=0.0).start()
    try:
        db, cli = fresh_sqlite(tmp_path, 1)
        fake.faults.append("hang")  # accepted at once, answered late
        fake.hang_seconds = 4
        env = env_for(db, fake, OUTREACH_TWILIO_TIMEOUT="20")
        a = start_run(env, T0)
        _wait_for_requests(fake, 1)
        # The call is out (the fake holds it for 4 s); let A's main thread finish claiming the
        # next batch (a short write transaction) so it is frozen waiting on the call, not holding
        # the database's write lock, which would make B wait for the lock instead of the lease.
        time.sleep(1.0)
        a.send_signal(signal.SIGSTOP)  # A is frozen past its lease, mid-call
        try:
            code, out, err = finish(start_run(env, T0 + timedelta(minutes=10)))  # B: lease expired -> lookup
            assert code == 0, err
            assert json.loads(out)["reconciled"] == 1
        finally:
            a.send_signal(signal.SIGCONT)
        finish(a)
        store = Store(db)
        with store.read() as conn:
            [row] = conn.execute(select(send_t)).all()
        store.engine.dispose()
        # B's lookup found the message and recorded it; A (frozen mid-call) never recorded an outcome.
        assert (row.status, row.reason, row.claim_token) == ("sent", None, None)
        assert re.fullmatch(r"SM[0-9a-f]{32}", row.provider_ref)
        assert len(fake.messages) == 1
        events = [
            e for e in json.loads(cli.ok("show", "1", "--format", "json").stdout)["timeline"] if e["kind"] == "send"
        ]
        # A's late answer was discarded: no second "sent" record after B's reconciliation.
        assert sum(1 for e in events if e["detail"].get("status") == "sent") == 1
    finally:
        fake.stop()


@pytest.mark.slow  # a run-outreach process over 400 sets racing the action, three times
@pytest.mark.parametrize("what", ["cancel", "pause", "payment"])
def test_admin_actions_and_payments_win_races(tmp_path: Path, what: str) -> None:
    n = 400
    fake = FakeTwilio(delay=0.01).start()
    try:
        db, cli = fresh_sqlite(tmp_path, n)
        env = env_for(db, fake, OUTREACH_SENDING_CONCURRENCY="2")
        proc = start_run(env, T0)
        _wait_for_requests(fake, 20)
        target = list(range(n // 2, n + 1))  # the later half, most not yet claimed
        if what == "payment":
            write_csv(
                tmp_path / "y.csv",
                [{"payment_id": f"Y{i}", "patient_id": f"P{i - 1:05d}", "amount": "50.00"} for i in target],
            )
            cli.ok("import", "payments", str(tmp_path / "y.csv"), now=z(T0))
        else:
            cli.ok(
                "act", what, *map(str, target), "--skip-ineligible", "--yes", now=z(T0)
            ) if what == "cancel" else cli("act", what, *map(str, target), "--skip-ineligible", now=z(T0))
        store = Store(db)
        with store.read() as conn:
            high_water = conn.execute(select(func.max(send_t.c.id))).scalar() or 0
        code, _, err = finish(proc)
        assert code == 0, err
        with store.read() as conn:
            late = conn.execute(
                select(func.count())
                .select_from(send_t)
                .where(
                    send_t.c.invoice_set_id.in_(target),
                    send_t.c.id > high_water,
                    send_t.c.status.in_(("sent", "delivered", "claimed", "unknown")),
                )
            ).scalar()
            stopped = conn.execute(
                select(func.count())
                .select_from(invoice_set_t)
                .where(invoice_set_t.c.id.in_(target), invoice_set_t.c.status.in_(("cancelled", "paused", "paid")))
            ).scalar()
        store.engine.dispose()
        assert late == 0, f"{late} sends claimed after the {what} committed"
        assert stopped == len(target)  # every set of the later half, claimed mid-run or not
    finally:
        fake.stop()


@pytest.mark.slow
def test_random_provider_faults(tmp_path: Path) -> None:
    n = 200
    fake = FakeTwilio(fault_rates={"500": 0.1, "429": 0.1, "reset": 0.05, "hang": 0.05, "slow": 0.05}, seed=7).start()
    fake.hang_seconds = 1.5
    try:
        db, _ = fresh_sqlite(tmp_path, n)
        env = env_for(db, fake, OUTREACH_TWILIO_TIMEOUT="1", OUTREACH_SENDING_CONCURRENCY="8")
        for minutes in (0, 10, 40, 130, 400, 1400):
            code, _, err = finish(start_run(env, T0 + timedelta(minutes=minutes)))
            assert code == 0 or (code == 75 and "provider outage" in err), err  # 75: every retry hit 5xx/429
            assert "Traceback" not in err
        counts = per_number(fake)
        assert not {k: v for k, v in counts.items() if v > 1}, "duplicate send"
        st = send_statuses(db)
        assert st["claimed"] == 0 and st["pending"] == 0 and st["unknown"] == 0, st
        assert st["sent"] + st["failed"] == n
        assert st["sent"] == len(counts)
    finally:
        fake.stop()
