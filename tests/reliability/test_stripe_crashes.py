"""Stripe charges under crashes and overlapping runs: real `outreach` processes, the real stripe
SDK, and the fake Stripe API as the place where a second charge would show."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.fakes.stripe_server import API_KEY, FakeStripe
from tests.helpers import PATIENT_HEADER, patient, sync_rule_set, write_csv
from tests.reliability.harness import T0, finish, send_statuses, z


@pytest.fixture(autouse=True)
def _practice_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real providers (Stripe, the letter outbox) refuse to send without the practice's identity."""
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Riverside Family Medicine")
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "+16175550100")


CARD = """title = "Card"
expiry_day = 30
[[step]]
day = 0
methods = ["charge_card"]
title = "Charge the card on file"
"""


def _seed(db: str, tmp: Path, n: int) -> tuple[str, Cli]:
    cli = Cli(db)
    cli.ok("init")
    sync_rule_set(cli, tmp, "card", CARD)
    rows = [
        patient(
            f"P{i:04d}",
            phone=f"+1617200{i:04d}",
            stripe_customer_id=f"cus_CRASH{i:04d}",
            stripe_payment_method_id="pm_card_visa",
        )
        for i in range(n)
    ]
    write_csv(tmp / "p.csv", rows, [*PATIENT_HEADER, "stripe_customer_id", "stripe_payment_method_id"])
    cli.ok("import", "patients", str(tmp / "p.csv"), now=z(T0))
    write_csv(tmp / "c.csv", [{"charge_id": f"C{i}", "patient_id": f"P{i:04d}", "amount": "75.00"} for i in range(n)])
    cli.ok("import", "charges", str(tmp / "c.csv"), "--rule-set", "card", now=z(T0))
    return db, cli


def _env(db: str, fake: FakeStripe, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTREACH_", "TWILIO_", "STRIPE_"))}
    env.update(
        OUTREACH_DATABASE=db,
        OUTREACH_CHANNELS_CHARGE_CARD="stripe",
        STRIPE_API_KEY=API_KEY,
        OUTREACH_STRIPE_BASE_URL=fake.base_url,
        OUTREACH_STRIPE_TIMEOUT="60",
        OUTREACH_SENDING_CONCURRENCY="4",
        OUTREACH_PRACTICE_NAME="Riverside Family Medicine",
        OUTREACH_PRACTICE_PHONE="+16175550100",
    )
    env.update(extra)
    return env


def _run(env: dict[str, str], minutes: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "outreach_cli",
            "--now",
            z(T0 + timedelta(minutes=minutes)),
            "run-outreach",
            "--format",
            "json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _per_set(fake: FakeStripe) -> Counter[str]:
    return Counter(pi["metadata"]["outreach_set_id"] for pi in fake.payment_intents.values())


@pytest.mark.slow  # run-outreach processes killed with SIGKILL mid-charge
def test_killed_after_stripe_charged_records_the_payment_without_charging_again(db_url: str, tmp_path: Path) -> None:
    fake = FakeStripe().start()
    try:
        db, cli = _seed(db_url, tmp_path, 1)
        fake.faults.append("hang")  # Stripe charges at once; the answer never reaches the run
        fake.hang_seconds = 30
        env = _env(db, fake)
        proc = _run(env, 0)
        end = time.monotonic() + 60
        while not fake.payment_intents:
            assert time.monotonic() < end, "the run never reached Stripe"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert send_statuses(db)["claimed"] == 1
        code, out, err = finish(_run(env, 10))  # past the lease: unknown -> looked up
        assert code == 0, err
        summary = json.loads(out)
        assert (summary["reconciled"], summary["paid"]) == (2, 1)  # the charge looked up, its payment applied
        [pi] = fake.payment_intents.values()
        assert len(fake.creates()) == 1 and pi["status"] == "succeeded"
        d = json.loads(cli.ok("show", "1", "--format", "json").stdout)
        assert d["status"] == "paid" and d["amount_outstanding_cents"] == 0
        pays = [e["detail"]["payment_id"] for e in d["timeline"] if e["kind"] == "payment"]
        assert pays == [pi["id"]]
        code, _, err = finish(_run(env, 20))  # its event arrives later: still one payment
        assert code == 0, err
        d = json.loads(cli.ok("show", "1", "--format", "json").stdout)
        assert [e["detail"]["payment_id"] for e in d["timeline"] if e["kind"] == "payment"] == [pi["id"]]
        assert len(fake.creates()) == 1
    finally:
        fake.stop()


@pytest.mark.slow  # overlapping run-outreach processes
def test_overlapping_runs_never_create_two_payment_intents_for_one_step(db_url: str, tmp_path: Path) -> None:
    n = 40
    fake = FakeStripe(delay=0.02).start()
    try:
        db, _ = _seed(db_url, tmp_path, n)
        env = _env(db, fake, OUTREACH_SENDING_CONCURRENCY="2")
        runs = [_run(env, 0), _run(env, 0), _run(env, 1)]
        for p in runs:
            code, _, err = finish(p)
            assert code == 0, err
        code, _, err = finish(_run(env, 15))
        assert code == 0, err
        per_set = _per_set(fake)
        assert set(per_set.values()) == {1} and len(per_set) == n
        creates = fake.creates()
        assert all(c["idempotency_key"] and c["idempotency_key"].startswith("outreach-send-") for c in creates)
        st = send_statuses(db)
        assert st["delivered"] == n and st["claimed"] == 0 and st["unknown"] == 0, st
    finally:
        fake.stop()
