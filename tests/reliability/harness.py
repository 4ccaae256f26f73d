"""Shared set-up for the reliability tests: many due sends, real `outreach` processes, and the
fake Twilio API as the place where duplicates would show."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import holidays
import pytest

from tests.conftest import Cli, initialized
from tests.fakes.twilio_server import ACCOUNT, TOKEN, FakeTwilio
from tests.helpers import PATIENT_HEADER, patient, sync_rule_set, write_csv

UTC = UTC
PRACTICE = "+16175550999"
# A fixed instant, so every run tests the same day: a Tuesday that is no US holiday (the default
# `sending.holidays = ["US"]` sends nothing then), 10:00 in New York. In the past, so the fake
# Twilio's messages (dated by the real clock) are never older than a lookup's starting point.
T0 = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
assert T0.weekday() < 5 and T0.date() not in holidays.country_holidays("US", years=T0.year)

ONESTEP = """title = "One SMS"
expiry_day = 30
[[step]]
day = 0
methods = ["sms"]
title = "Statement"
message = "Hi {first_name}, you owe {balance}. Pay: {url} Reply STOP to opt out."
"""


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def phone(i: int) -> str:
    return f"+1617200{i:04d}"


def env_for(db: str, fake: FakeTwilio, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OUTREACH_", "TWILIO_"))}
    env.update(
        OUTREACH_DATABASE=db,
        OUTREACH_CHANNELS_SMS="twilio",
        OUTREACH_CHANNELS_CALL="twilio",
        TWILIO_ACCOUNT_SID=ACCOUNT,
        TWILIO_AUTH_TOKEN=TOKEN,
        TWILIO_FROM_NUMBER=PRACTICE,
        OUTREACH_TWILIO_BASE_URL=fake.base_url,
        OUTREACH_TWILIO_TIMEOUT="2",
        OUTREACH_SENDING_CONCURRENCY="8",
        OUTREACH_PRACTICE_NAME="Test Practice",
        OUTREACH_PRACTICE_PHONE=PRACTICE,
    )
    env.update(extra)
    return env


def seed_sets(cli: Cli, tmp: Path, n: int) -> None:
    sync_rule_set(cli, tmp, "onestep", ONESTEP)
    write_csv(tmp / "p.csv", [patient(f"P{i:05d}", phone=phone(i)) for i in range(n)], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp / "p.csv"), now=z(T0))
    write_csv(
        tmp / "c.csv", [{"charge_id": f"C{i:05d}", "patient_id": f"P{i:05d}", "amount": "50.00"} for i in range(n)]
    )
    cli.ok("import", "charges", str(tmp / "c.csv"), "--rule-set", "onestep", now=z(T0))


def fresh_sqlite(tmp: Path, n: int) -> tuple[str, Cli]:
    """A new SQLite database with ``n`` sets whose one SMS step is due at T0."""
    db = f"sqlite:///{tmp / 'o.db'}"
    cli = initialized(db)
    seed_sets(cli, tmp, n)
    return db, cli


def start_run(env: dict[str, str], now: datetime, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "outreach_cli", "--now", z(now), "run-outreach", "--format", "json", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def per_number(fake: FakeTwilio) -> Counter[str]:
    return Counter(m["to"] for m in fake.messages.values() if m["direction"] != "inbound")


def send_statuses(db: str) -> Counter[str]:
    from sqlalchemy import func, select

    from outreach_cli.store.database import Store
    from outreach_cli.store.models import send_t

    store = Store(db)
    with store.read() as conn:
        out = Counter({s: n for s, n in conn.execute(select(send_t.c.status, func.count()).group_by(send_t.c.status))})
    store.engine.dispose()
    return out


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def run_here(env: dict[str, str], now: datetime) -> tuple[int, str, str]:
    """`run-outreach --format json` at ``now`` with the settings of ``env``, in this process: a
    later run that finishes what killed or racing processes left (those stay real processes;
    a later one started as a process only adds an interpreter start-up)."""
    with pytest.MonkeyPatch.context() as m:
        for k in os.environ:
            if k.startswith(("OUTREACH_", "TWILIO_")) and k not in ("OUTREACH_TEST_PG_URL", "OUTREACH_REQUIRE_PG"):
                m.delenv(k)
        for k, v in env.items():
            if k.startswith(("OUTREACH_", "TWILIO_")) and k != "OUTREACH_DATABASE":
                m.setenv(k, v)
        r = Cli(env["OUTREACH_DATABASE"])("run-outreach", "--format", "json", now=z(now))
    return r.code, r.stdout, r.stderr
