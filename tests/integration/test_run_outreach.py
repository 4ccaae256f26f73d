"""`run-outreach` as cron and operators see it (issue 10): outages are visible (D3), the dry run
tells the truth (D12, audit D8), Ctrl-C/SIGTERM leave nothing behind (D22), and no message goes
out in the name of a practice nobody configured (D7). Real twilio SDK against the fake Twilio
API, smtplib against a closed port, real `outreach` processes for the signals."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, Result
from tests.fakes.twilio_server import ACCOUNT, TOKEN, FakeTwilio
from tests.helpers import PATIENT_HEADER, patient, seed_patients, sync_rule_set, write_csv
from tests.reliability.harness import PRACTICE, T0, env_for, fresh_sqlite, per_number, send_statuses, z
from tests.sending import Recorder

SMS_EMAIL = """title = "SMS and email"
expiry_day = 30
[[step]]
day = 0
methods = ["sms", "email"]
title = "Statement"
message = "Hi {first_name}, {practice_name} ({practice_phone}) shows {balance}. Pay: {url} Reply STOP to opt out."
"""


def closed_port() -> int:
    """A loopback port nobody listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def practice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Harbor Clinic")
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "+16175550123")


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    monkeypatch.setenv("OUTREACH_CHANNELS_SMS", "twilio")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("TWILIO_FROM_NUMBER", PRACTICE)
    monkeypatch.setenv("OUTREACH_TWILIO_BASE_URL", fake.base_url)
    monkeypatch.setenv("OUTREACH_TWILIO_TIMEOUT", "2")
    yield fake
    fake.stop()


def smtp_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_CHANNELS_EMAIL", "smtp")
    monkeypatch.setenv("OUTREACH_SMTP_URL", f"smtp://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("OUTREACH_EMAIL_FROM", "billing@example.com")


def seed(cli: Cli, tmp_path: Path, n: int = 3, rule_set: str = "smsemail", body: str = SMS_EMAIL) -> None:
    sync_rule_set(cli, tmp_path, rule_set, body)
    pts = [patient(f"P{i}", phone=f"+1617555{i:04d}", email=f"p{i}@example.com") for i in range(1, n + 1)]
    seed_patients(cli, tmp_path, pts, rule_set=rule_set, amount="120.00", now=z(T0))


def run(cli: Cli, *global_opts: str, at: datetime = T0) -> tuple[Result, dict[str, Any]]:
    r = cli(*global_opts, "run-outreach", "--format", "json", now=z(at))
    return r, json.loads(r.stdout) if r.stdout.strip() else {}


def send_rows(cli: Cli, set_id: int) -> list[dict[str, Any]]:
    return json.loads(cli.ok("show", str(set_id), "--format", "json").stdout)["schedule"]  # type: ignore[no-any-return]


# --- D3: a provider outage is visible to cron --------------------------------------------------


def test_D3_full_outage_exits_75(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch, practice: None
) -> None:
    seed(cli, tmp_path)
    twilio.fault_rates = {"500": 1.0}  # Twilio answers every create with HTTP 500
    smtp_down(monkeypatch)  # and nobody listens on the SMTP port
    r, s = run(cli)
    assert r.code == 75, r
    assert s["transient"] == 6 and s["sent"] == 0 and s["failed"] == 0
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r
    assert lines[0].startswith("error: provider outage: all 6 attempted send(s) failed temporarily (")
    assert "email 3: could not reach the SMTP server" in lines[0] and "sms 3: Twilio HTTP 500" in lines[0]
    for i in (1, 2, 3):  # nothing lost: every send waits for a retry
        assert {x["status"] for x in send_rows(cli, i) if x["attempts"] > 0} == {"pending"}
    # -q silences summaries, not an outage: cron still gets the line (and the exit code).
    r, _ = run(cli, "-q", at=T0 + timedelta(minutes=6))
    assert r.code == 75 and r.stderr.startswith("error: provider outage: all 6 attempted send(s)"), r


def test_D3_rate_limit_and_closed_port_are_outages(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch, practice: None
) -> None:
    seed(cli, tmp_path, n=2)
    twilio.fault_rates = {"429": 1.0}
    r, s = run(cli)
    assert r.code == 0 and s["sent"] == 2 and s["transient"] == 2  # the emails went out: not a full outage
    assert r.stderr == "run-outreach: 2 of 4 attempted send(s) failed temporarily (sms 2: Twilio HTTP 429)\n"
    # Twilio unreachable altogether: the retries fail, and reading replies fails too; one line says both.
    monkeypatch.setenv("OUTREACH_TWILIO_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    r, s = run(cli, at=T0 + timedelta(minutes=6))
    assert r.code == 75 and s["transient"] == 2, r
    [line] = r.stderr.splitlines()
    assert "all 2 attempted send(s) failed temporarily (sms 2: could not reach Twilio" in line
    assert "reading SMS replies failed (ConnectionError)" in line


def test_D3_partial_outage_exits_0_and_q_silences_its_line(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch, practice: None
) -> None:
    seed(cli, tmp_path)
    smtp_down(monkeypatch)
    r, s = run(cli, "-q")
    assert (r.code, r.stderr, s["sent"], s["transient"]) == (0, "", 3, 3), r
    r, s = run(cli, "-v", at=T0 + timedelta(minutes=6))  # the emails again: now every attempted send
    assert r.code == 75 and s["transient"] == 3
    assert "run-outreach: sent 0, failed 0, skipped 0, deferred 0, unknown 0, transient 3," in r.stderr


def test_D3_unreadable_replies_are_said_even_when_nothing_is_due(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, practice: None
) -> None:
    seed(cli, tmp_path, n=1)
    cli.ok("run-outreach", now=z(T0))
    twilio.stop()
    r, s = run(cli, at=T0 + timedelta(hours=1))
    assert r.code == 0 and s["transient"] == 0
    assert r.stderr.startswith("run-outreach: ") and "reading SMS replies failed (ConnectionError)" in r.stderr
    assert len(r.stderr.splitlines()) == 1


def test_D3_success_is_silent(cli: Cli, tmp_path: Path, twilio: FakeTwilio, practice: None) -> None:
    seed(cli, tmp_path, n=2)
    r = cli("run-outreach", now=z(T0))
    assert (r.code, r.stdout, r.stderr) == (0, "", "")


# --- D12 and audit D8: the dry run is what the real run then does ----------------------------


def attempted(cli: Cli, ids: list[int]) -> list[tuple[int, str, int, str, bool]]:
    out = []
    for i in ids:
        for x in send_rows(cli, i):
            if x["attempts"] > 0:
                out.append((i, x["step"], x["day"], x["method"], x["fallback"]))
    return sorted(out)


def test_D12_dry_run_lists_what_the_real_run_attempts(cli: Cli, tmp_path: Path, practice: None) -> None:
    # Three sets start 61 days ago (the standard rule set expires at day 60), the rest now.
    old = [patient("OLD", phone="(617) 555-0190", email="old@example.com")]
    seed_patients(cli, tmp_path, old, rule_set="standard", amount="80.00", now=z(T0 - timedelta(days=61)))
    now_pts = [
        patient("OK", phone="(617) 555-0191", email="ok@example.com"),
        # sms and email unusable with this data: the fallback (mail) goes out instead.
        patient("NOCONTACT", phone="", email=""),
        # sms fails (sandbox: invalid number), the email bounces: the fallback chain ends in mail.
        patient("BOUNCE", phone="+15005550001", email="x@mailhost.invalid"),
        patient("UNAV", phone="+15005550008", email="u@example.com"),  # sms fails transiently
    ]
    write_csv(tmp_path / "p2.csv", now_pts, PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p2.csv"), now=z(T0))
    write_csv(
        tmp_path / "c2.csv",
        [{"charge_id": f"C-{p['patient_id']}", "patient_id": p["patient_id"], "amount": "90.00"} for p in now_pts],
    )
    cli.ok("import", "charges", str(tmp_path / "c2.csv"), "--rule-set", "standard", now=z(T0))

    r = cli.ok("run-outreach", "--dry-run", "--format", "json", now=z(T0))
    rows = json.loads(r.stdout)  # one JSON document
    assert [x for x in rows if x["action"] != "send"] == [
        {"id": 1, "action": "expire", "step": None, "day": None, "method": None, "fallback": None}
    ]
    dry = sorted((x["id"], x["step"], x["day"], x["method"], x["fallback"]) for x in rows if x["action"] == "send")
    assert (3, "Statement", 0, "mail", True) in dry  # predicted from the patient's data
    assert any(d[0] == 4 and d[4] for d in dry)  # predicted from what the sandbox answers
    assert not [d for d in dry if d[0] == 1]  # the expiring set sends nothing
    assert "run-outreach (dry run): " in r.stderr and "1 set(s) would expire" in r.stderr

    s = json.loads(cli.ok("run-outreach", "--format", "json", now=z(T0)).stdout)
    assert attempted(cli, [1, 2, 3, 4, 5]) == dry
    assert s["expired"] == 1 and json.loads(cli.ok("show", "1", "--format", "json").stdout)["status"] == "expired"
    # Nothing due any more: still one JSON document.
    assert json.loads(cli.ok("run-outreach", "--dry-run", "--format", "json", now=z(T0)).stdout) == []


CHARGE = """title = "Charge"
expiry_day = 5
[[step]]
day = 0
methods = ["charge_card"]
title = "Card on file"
"""


def test_D12_dry_run_shows_a_card_charge_paying_the_set(cli: Cli, tmp_path: Path) -> None:
    sync_rule_set(cli, tmp_path, "charge", CHARGE)
    seed_patients(cli, tmp_path, [patient("P1", card_token="tok_visa")], rule_set="charge", amount="70", now=z(T0))
    rows = json.loads(cli.ok("run-outreach", "--dry-run", "--format", "json", now=z(T0)).stdout)
    assert [(x["id"], x["action"], x["method"]) for x in rows] == [(1, "send", "charge_card"), (1, "mark-paid", None)]
    s = json.loads(cli.ok("run-outreach", "--format", "json", now=z(T0)).stdout)
    assert s["paid"] == 1 and json.loads(cli.ok("show", "1", "--format", "json").stdout)["status"] == "paid"


def test_D12_dry_run_changes_nothing_and_sends_nothing(cli: Cli, tmp_path: Path, practice: None) -> None:
    seed(cli, tmp_path, n=2)
    before = cli.ok("show", "1", "--format", "json").stdout
    r = cli.ok("run-outreach", "--dry-run", "--format", "tsv", now=z(T0))
    assert r.stdout.splitlines()[0] == "id\taction\tstep\tday\tmethod\tfallback"
    assert len(r.stdout.splitlines()) == 5
    assert cli.ok("show", "1", "--format", "json").stdout == before
    assert not Path("mail-outbox").exists()


# --- D7: no fictional practice ------------------------------------------------------------------

LETTER = """title = "Letter"
expiry_day = 5
[[step]]
day = 0
methods = ["mail"]
title = "Statement letter"
message = "Dear {full_name}, please pay {balance}."
"""


def test_D7_real_providers_refuse_without_practice_identity(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(cli, tmp_path, n=2)
    r = cli("run-outreach", now=z(T0))
    assert r.code == 4 and "practice_name is not set" in r.stderr and "sms (twilio)" in r.stderr, r
    assert twilio.create_requests == []
    assert {(x["method"], x["status"], x["attempts"]) for x in send_rows(cli, 1)} >= {("sms", "pending", 0)}
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Harbor Clinic")
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "call us")
    r = cli("run-outreach", now=z(T0))
    assert r.code == 4 and "practice_phone 'call us' is not a valid phone number" in r.stderr, r
    assert twilio.create_requests == []
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "(617) 555-0123")
    cli.ok("run-outreach", now=z(T0))
    bodies = [x["Body"] for x in twilio.create_requests]
    assert len(bodies) == 2 and all("Harbor Clinic ((617) 555-0123)" in b for b in bodies)


def test_D7_outbox_letters_refuse_without_practice_identity(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(cli, tmp_path, n=1, rule_set="letter", body=LETTER)
    r = cli("run-outreach", now=z(T0))
    assert r.code == 4 and "mail (outbox)" in r.stderr and "practice_name" in r.stderr, r
    assert not list(Path(".").glob("mail-outbox/*.pdf"))
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Harbor Clinic")
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "+16175550123")
    cli.ok("run-outreach", now=z(T0))
    assert len(list(Path(".").glob("mail-outbox/*.pdf"))) == 1


def test_D7_sandbox_uses_a_clearly_fictional_practice(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recorder(monkeypatch)
    seed(cli, tmp_path, n=1)
    cli.ok("run-outreach", now=z(T0))
    [sms] = [m for m in rec.messages if m.method == "sms"]
    assert "Example Practice ((555) 555-0100)" in sms.body and "Riverside" not in sms.body


def test_D7_doctor_checks_practice_identity(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    r = cli("doctor")
    assert r.code == 4
    assert (
        "FAIL practice: practice_name is not set; practice_phone is not set: set practice_name and "
        "practice_phone; until then mail (outbox) will not send"
    ) in r.stdout
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Harbor Clinic")
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "call us")
    r = cli("doctor")
    assert r.code == 4 and "FAIL practice: practice_phone 'call us' is not a valid phone number" in r.stdout
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "(617) 555-0123")
    r = cli.ok("doctor")
    assert "ok   practice: Harbor Clinic, (617) 555-0123" in r.stdout
    # Only the sandbox: nothing real would go out, so the made-up practice is fine (and said).
    monkeypatch.delenv("OUTREACH_PRACTICE_NAME")
    monkeypatch.setenv("OUTREACH_CHANNELS_MAIL", "sandbox")
    r = cli.ok("doctor")
    assert "ok   practice: practice_name is not set; the sandbox shows a made-up practice" in r.stdout


# --- D22: Ctrl-C and SIGTERM ----------------------------------------------------------------------


def start(env: dict[str, str], now: datetime, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "outreach_cli", "--now", z(now), "run-outreach", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_requests(fake: FakeTwilio, n: int, proc: subprocess.Popen[str]) -> None:
    while len(fake.create_requests) < n:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def claimed_numbers(db: str) -> set[str]:
    from sqlalchemy import select

    from outreach_cli.store.database import Store
    from outreach_cli.store.models import patient_t, send_t

    store = Store(db)
    with store.read() as conn:
        rows = conn.execute(
            select(patient_t.c.phone)
            .join(send_t, send_t.c.patient_pk == patient_t.c.id)
            .where(send_t.c.status == "claimed")
        ).scalars()
        out = set(rows)
    store.engine.dispose()
    return out


@pytest.mark.slow  # a run-outreach process signalled while a fake provider holds each call 1 s
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_D22_interrupt_finishes_in_flight_and_releases_the_rest(tmp_path: Path, sig: int) -> None:
    db, _ = fresh_sqlite(tmp_path, 12)
    fake = FakeTwilio(delay=1.0).start()
    try:
        proc = start(env_for(db, fake, OUTREACH_TWILIO_TIMEOUT="30"), T0, "--concurrency", "2")
        wait_for_requests(fake, 1, proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted: finishing the sends in flight" in err
        assert "interrupted; 0 sends in flight will be resolved after the lease" in err
        statuses = send_statuses(db)
        reached = len(fake.create_requests)
        assert "claimed" not in statuses  # every call that started was waited for and recorded
        assert statuses["sent"] == reached and statuses["pending"] == 12 - reached, (statuses, reached)
        fake.delay = 0
        proc = start(env_for(db, fake, OUTREACH_TWILIO_TIMEOUT="30"), T0 + timedelta(minutes=1), "--format", "json")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out)["sent"] == 12 - reached
        assert sorted(per_number(fake).values()) == [1] * 12  # each patient texted exactly once
    finally:
        fake.stop()


@pytest.mark.slow  # the same, calls held 3 s, then a second run after the lease
def test_D22_second_interrupt_leaves_only_the_calls_in_flight_to_the_lease(tmp_path: Path) -> None:
    db, _ = fresh_sqlite(tmp_path, 12)
    fake = FakeTwilio(delay=3.0).start()  # answers within the client timeout
    try:
        proc = start(env_for(db, fake, OUTREACH_TWILIO_TIMEOUT="30"), T0, "--concurrency", "2")
        wait_for_requests(fake, 2, proc)
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("interrupted: finishing the sends in flight")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted; 2 sends in flight will be resolved after the lease" in err
        in_flight = {r["To"] for r in fake.create_requests}
        assert len(in_flight) == 2 and claimed_numbers(db) == in_flight  # only those, still claimed
        statuses = send_statuses(db)
        assert statuses == {"claimed": 2, "pending": 10}, statuses
        # After the lease (Twilio has long finished those two): looked up, found, not re-sent; the
        # others sent once each.
        while len(fake.messages) < 2:
            time.sleep(0.02)
        fake.delay = 0
        proc = start(env_for(db, fake, OUTREACH_TWILIO_TIMEOUT="30"), T0 + timedelta(minutes=6), "--format", "json")
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        s = json.loads(out)
        assert s["unknown"] == 2 and s["reconciled"] == 2 and s["sent"] == 10, s
        assert sorted(per_number(fake).values()) == [1] * 12
        assert "claimed" not in send_statuses(db)
    finally:
        fake.stop()


def test_D22_signals_restore_default_handlers(tmp_path: Path) -> None:
    """After a run, Ctrl-C behaves as before (the run's handlers are removed)."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    _, cli = fresh_sqlite(tmp_path, 1)
    cli.ok("run-outreach", now=z(T0))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
