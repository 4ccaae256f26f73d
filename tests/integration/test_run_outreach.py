"""`run-outreach` as cron and operators see it (issue 10): outages are visible (D3), the dry run
tells the truth (D12, audit D8), Ctrl-C/SIGTERM leave nothing behind (D22), and no message goes
out in the name of a practice nobody configured (D7). Real twilio SDK against the fake Twilio
API, smtplib against a closed port, real `outreach` processes for the signals."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli, Result
from tests.fakes.twilio_server import ACCOUNT, TOKEN, FakeTwilio
from tests.helpers import (
    PATIENT_HEADER,
    doctor_database,
    doctor_output,
    hide_secret,
    patient,
    seed_patients,
    sync_rule_set,
    write_csv,
)
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


def counts(summary: dict[str, Any], **nonzero: int) -> bool:
    """``summary`` (run-outreach's JSON) is exactly these counts (the others 0) and a duration (the
    real clock's, so only its form)."""
    keys = ("sent", "failed", "skipped", "deferred", "unknown", "transient", "expired", "paid", "reconciled")
    rest = {k: v for k, v in summary.items() if k != "duration_s"}
    duration = summary.get("duration_s")
    ok = isinstance(duration, (int, float)) and duration >= 0
    return ok and rest == {k: nonzero.get(k, 0) for k in keys}


# A payment link as a message carries it: a random 32-character token.
URL = r"https://pay\.example\.com/p/[A-Za-z0-9_-]{32}"


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
    assert counts(s, transient=6), s
    outage = (
        "error: provider outage: all 6 attempted send(s) failed temporarily (email 3: could not reach the SMTP "
        "server (ConnectionRefusedError); sms 3: Twilio HTTP 500); they stay pending and are retried by later runs\n"
    )
    assert r.stderr == outage
    retry = z(T0 + timedelta(minutes=5))
    for i in (1, 2, 3):  # nothing lost: every send waits for a retry
        rows = [(x["method"], x["status"], x["attempts"], x["reason"], x["next_attempt_at"]) for x in send_rows(cli, i)]
        assert rows == [
            ("sms", "pending", 1, "Twilio HTTP 500 (will retry)", retry),
            ("email", "pending", 1, "could not reach the SMTP server (ConnectionRefusedError)", retry),
        ]
    # -q silences summaries, not an outage: cron still gets the line (and the exit code).
    r, _ = run(cli, "-q", at=T0 + timedelta(minutes=6))
    assert (r.code, r.stderr) == (75, outage), r


def test_D3_rate_limit_and_closed_port_are_outages(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch, practice: None
) -> None:
    seed(cli, tmp_path, n=2)
    twilio.fault_rates = {"429": 1.0}
    r, s = run(cli)
    assert r.code == 0 and counts(s, sent=2, transient=2), s  # the emails went out: not a full outage
    assert r.stderr == "run-outreach: 2 of 4 attempted send(s) failed temporarily (sms 2: Twilio HTTP 429)\n"
    # Twilio unreachable altogether: the retries fail, and reading replies fails too; one line says both.
    monkeypatch.setenv("OUTREACH_TWILIO_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    r, s = run(cli, at=T0 + timedelta(minutes=6))
    assert r.code == 75 and counts(s, transient=2), r
    assert r.stderr == (
        "error: provider outage: all 2 attempted send(s) failed temporarily (sms 2: could not reach Twilio; "
        "reading SMS replies failed (ConnectionError)); they stay pending and are retried by later runs\n"
    )


def test_D3_partial_outage_exits_0_and_q_silences_its_line(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch, practice: None
) -> None:
    seed(cli, tmp_path)
    smtp_down(monkeypatch)
    r, s = run(cli, "-q")
    assert (r.code, r.stderr) == (0, "") and counts(s, sent=3, transient=3), r
    r, s = run(cli, "-v", at=T0 + timedelta(minutes=6))  # the emails again: now every attempted send
    assert r.code == 75 and counts(s, transient=3), r
    *info, summary, outage = r.stderr.splitlines()
    # -v: a line per send (in the order the concurrent sends end), the summary, the outage.
    assert sorted(info) == [f"INFO outreach.engine: send {n} email to patient: transient" for n in (2, 4, 6)]
    assert summary == (
        "run-outreach: sent 0, failed 0, skipped 0, deferred 0, unknown 0, transient 3, expired 0, paid 0, "
        f"reconciled 0, duration_s {s['duration_s']}"
    )
    assert outage == (
        "error: provider outage: all 3 attempted send(s) failed temporarily (email 3: could not reach the SMTP "
        "server (ConnectionRefusedError)); they stay pending and are retried by later runs"
    )


def test_D3_unreadable_replies_are_said_even_when_nothing_is_due(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, practice: None
) -> None:
    seed(cli, tmp_path, n=1)
    cli.ok("run-outreach", now=z(T0))
    twilio.stop()
    r, s = run(cli, at=T0 + timedelta(hours=1))
    assert r.code == 0 and counts(s), s
    assert r.stderr == (
        "run-outreach: sms delivery status lookups failed (ConnectionError); "
        "reading SMS replies failed (ConnectionError)\n"
    )


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
    assert dry == [  # the expiring set 1 sends nothing
        (2, "Statement", 0, "email", False),
        (2, "Statement", 0, "sms", False),
        (3, "Statement", 0, "mail", True),  # predicted from the patient's data
        (4, "Statement", 0, "email", False),
        (4, "Statement", 0, "mail", True),  # predicted from what the sandbox answers
        (4, "Statement", 0, "sms", False),
        (5, "Statement", 0, "email", False),
        (5, "Statement", 0, "sms", False),
    ]
    assert (
        r.stderr
        == "run-outreach (dry run): 8 send(s) would be attempted, 1 set(s) would expire, 0 would be marked paid\n"
    )

    s = json.loads(cli.ok("run-outreach", "--format", "json", now=z(T0)).stdout)
    assert attempted(cli, [1, 2, 3, 4, 5]) == dry
    assert counts(s, sent=5, failed=2, skipped=2, transient=1, expired=1), s
    assert json.loads(cli.ok("show", "1", "--format", "json").stdout)["status"] == "expired"
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
    assert counts(s, sent=1, paid=1), s
    assert json.loads(cli.ok("show", "1", "--format", "json").stdout)["status"] == "paid"


def test_D12_dry_run_changes_nothing_and_sends_nothing(cli: Cli, tmp_path: Path, practice: None) -> None:
    seed(cli, tmp_path, n=2)
    before = cli.ok("show", "1", "--format", "json").stdout
    r = cli.ok("run-outreach", "--dry-run", "--format", "tsv", now=z(T0))
    assert r.stdout == (
        "id\taction\tstep\tday\tmethod\tfallback\n"
        "1\tsend\tStatement\t0\tsms\tfalse\n"
        "1\tsend\tStatement\t0\temail\tfalse\n"
        "2\tsend\tStatement\t0\tsms\tfalse\n"
        "2\tsend\tStatement\t0\temail\tfalse\n"
    )
    assert (
        r.stderr
        == "run-outreach (dry run): 4 send(s) would be attempted, 0 set(s) would expire, 0 would be marked paid\n"
    )
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
    assert (r.code, r.stderr) == (
        4,
        "error: provider configuration error: practice_name is not set; practice_phone is not set; sms (twilio) "
        "will not send without the practice's name and a valid phone number: set practice_name and practice_phone"
        " in the config file "
        "(or OUTREACH_PRACTICE_NAME / OUTREACH_PRACTICE_PHONE); the run stopped and sent nothing more\n",
    ), r
    assert twilio.create_requests == []
    assert [(x["method"], x["status"], x["attempts"]) for x in send_rows(cli, 1)] == [
        ("sms", "pending", 0),
        ("email", "pending", 0),
    ]
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Harbor Clinic")
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "call us")
    r = cli("run-outreach", now=z(T0))
    assert (r.code, r.stderr) == (
        4,
        "error: provider configuration error: practice_phone 'call us' is not a valid phone number; sms (twilio)"
        " will not send without the practice's name and a valid phone number: set practice_phone to a number"
        " patients can call (e.g. +16175550123) in the config file (or OUTREACH_PRACTICE_PHONE); the run stopped"
        " and sent nothing more\n",
    ), r
    assert twilio.create_requests == []
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "(617) 555-0123")
    cli.ok("run-outreach", now=z(T0))
    bodies = [x["Body"] for x in twilio.create_requests]
    assert len(bodies) == 2
    for body in bodies:
        assert re.fullmatch(
            rf"Hi Jane, Harbor Clinic \(\(617\) 555-0123\) shows \$120\.00\. Pay: {URL} Reply STOP to opt out\.", body
        ), body


def test_D7_outbox_letters_refuse_without_practice_identity(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(cli, tmp_path, n=1, rule_set="letter", body=LETTER)
    r = cli("run-outreach", now=z(T0))
    assert (r.code, r.stderr) == (
        4,
        "error: provider configuration error: practice_name is not set; practice_phone is not set; mail (outbox) "
        "will not send without the practice's name and a valid phone number: set practice_name and practice_phone"
        " in the config file "
        "(or OUTREACH_PRACTICE_NAME / OUTREACH_PRACTICE_PHONE); the run stopped and sent nothing more\n",
    ), r
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
    assert re.fullmatch(
        rf"Hi Jane, Example Practice \(\(555\) 555-0100\) shows \$120\.00\. Pay: {URL} Reply STOP to opt out\.",
        sms.body,
    ), sms.body


def test_D7_doctor_checks_practice_identity(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = tmp_path / "mail-outbox"
    r = cli("doctor")
    assert r.code == 4
    assert hide_secret(r.stdout) == doctor_output(outbox, *doctor_database(cli.db))  # practice: PRACTICE_UNSET
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Harbor Clinic")
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "call us")
    r = cli("doctor")
    assert r.code == 4
    assert hide_secret(r.stdout) == doctor_output(
        outbox,
        *doctor_database(cli.db),
        practice="FAIL practice: practice_phone 'call us' is not a valid phone number: set practice_phone to a number"
        " patients can call (e.g. +16175550123); until then mail (outbox) will not send",
    )
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "(617) 555-0123")
    r = cli.ok("doctor")
    assert hide_secret(r.stdout) == doctor_output(
        outbox, *doctor_database(cli.db), practice="ok   practice: Harbor Clinic, (617) 555-0123"
    )
    # Only the sandbox: nothing real would go out, so the made-up practice is fine (and said).
    monkeypatch.delenv("OUTREACH_PRACTICE_NAME")
    monkeypatch.setenv("OUTREACH_CHANNELS_MAIL", "sandbox")
    r = cli.ok("doctor")
    assert hide_secret(r.stdout) == doctor_output(
        outbox,
        *doctor_database(cli.db),
        practice="ok   practice: practice_name is not set; the sandbox shows a made-up practice (real providers would refuse)",
    ).replace(f"ok   mail provider: outbox {outbox}\n", "ok   mail provider: sandbox\n")


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
        assert (proc.returncode, out) == (130, ""), err
        said = {
            signal.SIGINT: "interrupted: finishing the sends in flight (press Ctrl-C again to stop waiting)\n",
            signal.SIGTERM: "terminated: finishing the sends in flight (signal again to stop waiting)\n",
        }[sig]
        assert err == (
            said + "stopped early: every send in flight finished; what was not claimed stays pending for the next run\n"
        )
        statuses = send_statuses(db)
        reached = len(fake.create_requests)
        # Every call that started was waited for and recorded (none left claimed).
        assert statuses == Counter(sent=reached, pending=12 - reached), (statuses, reached)
        fake.delay = 0
        proc = start(env_for(db, fake, OUTREACH_TWILIO_TIMEOUT="30"), T0 + timedelta(minutes=1), "--format", "json")
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, err) == (0, ""), err
        assert counts(json.loads(out), sent=12 - reached), out
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
        first = proc.stderr.readline()
        assert first == "interrupted: finishing the sends in flight (press Ctrl-C again to stop waiting)\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, out) == (130, ""), err
        assert err == (
            "interrupted again: no longer waiting for the sends in flight\n"
            "stopped early: 2 sends still in flight will be resolved after their lease (a later run looks them"
            " up; none is sent twice); what was not claimed stays pending for the next run\n"
        )
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
        assert (proc.returncode, err) == (0, ""), err
        s = json.loads(out)
        assert counts(s, unknown=2, reconciled=2, sent=10), s
        assert sorted(per_number(fake).values()) == [1] * 12
        assert send_statuses(db) == Counter(sent=12)  # none left claimed
    finally:
        fake.stop()


def test_D22_signals_restore_default_handlers(tmp_path: Path) -> None:
    """After a run, Ctrl-C behaves as before (the run's handlers are removed)."""
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    _, cli = fresh_sqlite(tmp_path, 1)
    cli.ok("run-outreach", now=z(T0))
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
