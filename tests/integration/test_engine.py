"""The outreach engine (SPEC sections 4-6) driven through the real CLI with --now."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import Cli
from tests.helpers import PATIENT_HEADER, patient, seed_patients, sync_rule_set, write_csv
from tests.sending import Recorder

UTC = UTC
T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Monday 09:00 in New York


def z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def setup(
    cli: Cli,
    tmp_path: Path,
    patients: list[dict[str, Any]],
    *,
    rule_set: str = "standard",
    amount: str = "250.00",
    now: datetime = T0,
) -> None:
    seed_patients(cli, tmp_path, patients, rule_set=rule_set, amount=amount, now=z(now))


def tick(cli: Cli, at: datetime) -> dict[str, Any]:
    return json.loads(cli.ok("run-outreach", "--format", "json", now=z(at)).stdout)  # type: ignore[no-any-return]


def show(cli: Cli, set_id: int, at: datetime | None = None) -> dict[str, Any]:
    return json.loads(cli.ok("show", str(set_id), "--format", "json", now=z(at) if at else None).stdout)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_standard_life_cycle(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Harbor Clinic")  # the day-30 letter goes to the outbox
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "+16175550123")
    setup(cli, tmp_path, [patient("P1", call_opt_out="yes")])
    t = T0
    end = T0 + timedelta(days=61)
    while t <= end:
        tick(cli, t)
        t += timedelta(hours=3)
    d = show(cli, 1, end)
    assert d["status"] == "expired"
    sched = [s for s in d["schedule"] if s["status"] != "pending"]
    by = {(s["day"], s["method"], s["fallback"]): s for s in sched}
    ny = ZoneInfo("America/New_York")
    for day, method in ((0, "sms"), (0, "email"), (7, "sms"), (14, "email"), (30, "mail"), (45, "sms"), (45, "email")):
        s = by[(day, method, False)]
        assert s["status"] == "delivered", s
        sent = parse(s["sent_at"]).astimezone(ny)
        due = (T0 + timedelta(days=day)).astimezone(ny)
        assert sent.date() == due.date() and 9 <= sent.hour < 17, (day, method, sent)
    # Each method of each step went out exactly once.
    delivered = [(s["day"], s["method"]) for s in sched if s["status"] == "delivered"]
    assert len(delivered) == len(set(delivered))
    # The call step: skipped (opted out), then the first fallback (email) delivered.
    assert by[(21, "call", False)]["status"] == "skipped" and "opted out of calls" in by[(21, "call", False)]["reason"]
    assert by[(21, "email", True)]["status"] == "delivered"
    # The card step: no card on file -> fallback email.
    assert by[(52, "charge_card", False)]["status"] == "skipped" and by[(52, "email", True)]["status"] == "delivered"
    # Expired on its expiry day (day 60), whatever the send window.
    tl = d["timeline"]
    exp = [e for e in tl if e["to_status"] == "expired"]
    assert len(exp) == 1 and parse(exp[0]["at"]) - T0 < timedelta(days=60, hours=3)
    assert parse(exp[0]["at"]) >= T0 + timedelta(days=60)
    kinds = [e["kind"] for e in tl]
    # 9 delivered sends plus the two skipped ones (the opted-out call, the card with no card on file)
    assert kinds == ["created", "charge_added", *["send"] * 11, "status"]
    # The mail step wrote a real PDF letter to the outbox.
    assert len(list(Path("mail-outbox").glob("letter-1-*.pdf"))) == 1
    assert (Path("mail-outbox") / "manifest.csv").exists()


PROBE = """title = "Probe"
expiry_day = 10
[[step]]
day = 0
methods = ["sms", "call", "email", "charge_card"]
title = "Probe"
message = "Hi {first_name}, balance {balance}, pay {url}"
[step.messages]
sms = "Hi {first_name}, balance {balance}, pay {url} Reply STOP to opt out."
"""


def test_sandbox_magic_values(cli: Cli, tmp_path: Path) -> None:
    sync_rule_set(cli, tmp_path, "probe", PROBE)
    pts = [
        patient("INV", phone="+15005550001", email="a@example.com", card_token="tok_visa"),
        patient("LAND", phone="+15005550009", email="b@mailhost.invalid", card_token="tok_chargeDeclined"),
        patient("OPT", phone="+15005550004", phone_type="unknown"),
        patient("UNAV", phone="+15005550008"),
    ]
    setup(cli, tmp_path, pts, rule_set="probe")
    s1 = tick(cli, T0)
    assert s1["paid"] == 1  # INV: tok_visa charged the full balance

    def sends(i: int) -> dict[str, Any]:
        return {s["method"]: s for s in show(cli, i)["schedule"] if s["generation"] == 1 and not s["fallback"]}

    inv, land, opt, unav = (sends(i) for i in (1, 2, 3, 4))

    def outcome(send: dict[str, Any]) -> tuple[str, str | None]:
        return send["status"], send["reason"]

    assert outcome(inv["sms"]) == outcome(inv["call"]) == ("failed", "invalid phone number")
    assert outcome(inv["charge_card"]) == ("delivered", None)
    assert show(cli, 1)["status"] == "paid" and show(cli, 1)["amount_outstanding_cents"] == 0
    assert {m: outcome(s) for m, s in land.items()} == {
        "sms": ("failed", "not a mobile number (landline)"),
        "call": ("delivered", None),
        "email": ("failed", "email bounced"),
        "charge_card": ("failed", "card declined"),
    }
    p = show(cli, 2)["patient"]
    assert p["phone_type"] == "landline" and p["email_suppressed"] is True
    assert p["usable_methods"]["sms"]["usable"] is False and p["usable_methods"]["email"]["usable"] is False
    assert show(cli, 3)["patient"]["sms_opt_out"] is True
    assert outcome(opt["sms"]) == ("failed", "recipient opted out of SMS")
    assert unav["sms"]["status"] == "pending" and unav["call"]["status"] == "pending"  # transient: retried later
    assert s1["transient"] == 2  # UNAV's sms and call; the other sends went through, so exit 0
    for minutes, retried in ((6, 2), (30, 0)):  # the retries are the only sends, all transient: exit 75
        r = cli("run-outreach", "--format", "json", now=z(T0 + timedelta(minutes=minutes)))
        assert r.code == 75 and json.loads(r.stdout)["transient"] == retried, r
        limit = "; 2 of them reached sending.max_attempts and now count as failed" if retried == 0 else ""
        trouble = f"(call 1: provider unavailable; sms 1: provider unavailable{limit})"
        head = f"error: provider outage: all 2 attempted send(s) failed temporarily {trouble}; "
        tail = "they stay pending and are retried by later runs" if retried else "none is retried"
        assert r.stderr == head + tail + "\n"
    unav = sends(4)
    gave_up = ("failed", "provider unavailable (gave up after 3 attempts)")
    assert outcome(unav["sms"]) == outcome(unav["call"]) == gave_up
    assert unav["sms"]["attempts"] == unav["call"]["attempts"] == 3


def test_payment_between_steps(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = Recorder(monkeypatch)
    setup(cli, tmp_path, [patient("P1"), patient("P2", first_name="Ann")], amount="$1,200.00")
    tick(cli, T0)
    first = [m for m in rec.messages if m.set_id == 1 and m.method == "sms"][0]
    assert first.payment_url.startswith("https://pay.example.com/p/")
    assert first.body == (
        f"Hi Jane, Example Practice shows a balance of $1,200.00. Pay securely: {first.payment_url} "
        "Reply STOP to opt out."
    )
    write_csv(
        tmp_path / "y.csv",
        [
            {"payment_id": "Y1", "patient_id": "P1", "amount": "200.00"},
            {"payment_id": "Y2", "patient_id": "P2", "amount": "1200.00"},
        ],
    )
    cli.ok("import", "payments", str(tmp_path / "y.csv"), now=z(T0 + timedelta(days=3)))
    assert show(cli, 2)["status"] == "paid"
    rec.messages.clear()
    t = T0 + timedelta(days=3)
    while t < T0 + timedelta(days=16):
        tick(cli, t)
        t += timedelta(hours=6)
    assert not [m for m in rec.messages if m.set_id == 2]  # paid: nothing more
    second = [m for m in rec.messages if m.set_id == 1 and m.method == "sms"][0]
    assert second.step_title == "Friendly reminder" and second.payment_url == first.payment_url
    assert second.body == (
        f"Hi Jane, a reminder from Example Practice: your balance of $1,000.00 is due. Pay: {first.payment_url} "
        "Questions? (555) 555-0100. Reply STOP to opt out."
    )


def test_twice_at_same_now_sends_nothing(cli: Cli, tmp_path: Path) -> None:
    setup(cli, tmp_path, [patient(f"P{i}", phone=f"(617) 555-012{i}") for i in range(5)])
    a = tick(cli, T0)
    assert a["sent"] == 10
    b = tick(cli, T0)
    assert b["sent"] == 0 and b["failed"] == 0


TEXTONLY = """title = "Text only"
expiry_day = 20
[[step]]
day = 0
methods = ["email"]
title = "Hello"
message = "Hi {first_name}, pay {url}"
[[step]]
day = 5
methods = ["sms"]
title = "Text nudge"
message = "Hi {first_name}, pay {url} Reply STOP to opt out."
"""


def test_will_fail_then_fixed_by_new_number(cli: Cli, tmp_path: Path) -> None:
    sync_rule_set(cli, tmp_path, "textonly", TEXTONLY)
    setup(cli, tmp_path, [patient("P1", phone="(617) 555-0100", phone_type="landline")], rule_set="textonly")
    s = show(cli, 1)
    assert s["status"] == "will-fail"
    assert s["status_reason"] == 'step "Text nudge" (day 5): phone is a landline for sms'
    write_csv(tmp_path / "p2.csv", [patient("P1", phone="(617) 555-0177", phone_type="mobile")], PATIENT_HEADER)
    cli.ok("import", "patients", str(tmp_path / "p2.csv"))
    s = show(cli, 1)
    assert s["status"] == "active" and s["status_reason"] is None
    moves = [(e["kind"], e["from_status"], e["to_status"]) for e in s["timeline"] if e["to_status"]]
    assert moves == [("created", None, "will-fail"), ("status", "will-fail", "active")]


def test_will_fail_becomes_failed_when_due(cli: Cli, tmp_path: Path) -> None:
    sync_rule_set(cli, tmp_path, "textonly", TEXTONLY)
    setup(cli, tmp_path, [patient("P1", phone_type="landline")], rule_set="textonly")
    tick(cli, T0)
    assert show(cli, 1)["status"] == "will-fail"
    tick(cli, T0 + timedelta(days=5, hours=1))  # a Saturday: deferred to Monday
    assert show(cli, 1)["status"] == "will-fail"
    tick(cli, T0 + timedelta(days=7, hours=1))
    s = show(cli, 1)
    assert s["status"] == "failed"
    assert s["status_reason"] == 'step "Text nudge" (day 5) could not be delivered: sms: phone is a landline'


def test_paused_and_cancelled_sets_send_nothing(cli: Cli, tmp_path: Path) -> None:
    setup(cli, tmp_path, [patient(f"P{i}") for i in range(3)])
    cli.ok("act", "pause", "1", now=z(T0))
    cli.ok("act", "cancel", "2", "--yes", now=z(T0))
    s = tick(cli, T0)
    assert s["sent"] == 2  # only set 3: sms + email
    assert [x for x in show(cli, 1)["schedule"] if x["status"] not in ("pending",)] == []


def test_catch_up_after_downtime_sends_each_step_once_in_order(cli: Cli, tmp_path: Path) -> None:
    setup(cli, tmp_path, [patient("P1")])
    # Down for 16 days: days 0, 7 and 14 are all overdue.
    t = T0 + timedelta(days=16, hours=1)  # Wednesday 11:00 EDT
    for i in range(6):
        tick(cli, t + timedelta(hours=24 * i))
    sched = [s for s in show(cli, 1)["schedule"] if s["status"] == "delivered"]
    steps = [(s["day"], s["method"]) for s in sched]
    assert len(steps) == len(set(steps))
    sent_order = sorted(sched, key=lambda s: (s["sent_at"], s["day"]))
    days = [s["day"] for s in sent_order]
    assert days == sorted(days)  # never a later step before an earlier one
    # at most one message per channel per local day
    per_day = [(s["method"], s["sent_at"][:10]) for s in sched]
    assert len(per_day) == len(set(per_day))


def test_run_outreach_dry_run(cli: Cli, tmp_path: Path) -> None:
    setup(cli, tmp_path, [patient("P1")])
    r = cli.ok("run-outreach", "--dry-run", "--format", "jsonl", now=z(T0))
    got = [json.loads(x) for x in r.stdout.splitlines()]
    assert got == [
        {"id": 1, "action": "send", "step": "Statement", "day": 0, "method": m, "fallback": False}
        for m in ("sms", "email")
    ]
    assert tick(cli, T0)["sent"] == 2  # the dry run claimed nothing


def test_forecast(cli: Cli, tmp_path: Path) -> None:
    setup(cli, tmp_path, [patient("P1"), patient("P2", phone="", email="", address_line1="")])
    rows = [
        json.loads(x) for x in cli.ok("forecast", "--days", "10", "--format", "jsonl", now=z(T0)).stdout.splitlines()
    ]
    assert [(r["id"], r["day"], r["usable_methods"], r["prediction"], r["reason"]) for r in rows] == [
        (1, 0, ["sms", "email"], "ok", None),
        (2, 0, [], "will-fail", "sms: no phone number; email: no email address"),
        (1, 7, ["sms"], "ok", None),
        (2, 7, [], "will-fail", "sms: no phone number"),
    ]
