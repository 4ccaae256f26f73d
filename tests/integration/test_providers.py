"""Real providers (SPEC section 5) against loopback servers: the real twilio SDK talking to a fake
Twilio API, smtplib talking to aiosmtpd, and PDF letters read back. Nothing reaches the internet."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.fakes.twilio_server import ACCOUNT, TOKEN, FakeTwilio
from tests.helpers import doctor_database, hide_secret, patient, seed_patients, sync_rule_set
from tests.reliability.harness import PRACTICE, T0, z  # T0: a fixed weekday, 15:00 UTC

UTC = UTC


@pytest.fixture(autouse=True)
def _practice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real providers refuse to send without the practice's own name and phone (D7)."""
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Riverside Family Medicine")
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "+16175550100")


@pytest.fixture
def twilio(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    monkeypatch.setenv("OUTREACH_CHANNELS_SMS", "twilio")
    monkeypatch.setenv("OUTREACH_CHANNELS_CALL", "twilio")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", ACCOUNT)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("TWILIO_FROM_NUMBER", PRACTICE)
    monkeypatch.setenv("OUTREACH_TWILIO_BASE_URL", fake.base_url)
    monkeypatch.setenv("OUTREACH_TWILIO_TIMEOUT", "1")
    yield fake
    fake.stop()


SMSONLY = """title = "SMS only"
expiry_day = 30
[[step]]
day = 0
methods = ["sms"]
title = "Statement"
message = "Hi {first_name}, you owe {balance}. Pay: {url} Reply STOP to opt out."
[[step]]
day = 3
methods = ["sms"]
title = "Reminder"
message = "Hi {first_name}, still {balance}. Pay: {url} Reply STOP to opt out."
"""


def setup(
    cli: Cli, tmp_path: Path, pts: list[dict[str, Any]], rule_set: str = "standard", amount: str = "$1,234.56"
) -> None:
    if rule_set == "smsonly":
        sync_rule_set(cli, tmp_path, "smsonly", SMSONLY)
    seed_patients(cli, tmp_path, pts, rule_set=rule_set, amount=amount, now=z(T0))


def tick(cli: Cli, at: datetime) -> dict[str, Any]:
    return json.loads(cli.ok("run-outreach", "--format", "json", now=z(at)).stdout)  # type: ignore[no-any-return]


def show(cli: Cli, i: int) -> dict[str, Any]:
    return json.loads(cli.ok("show", str(i), "--format", "json").stdout)  # type: ignore[no-any-return]


def sends(cli: Cli, i: int) -> list[dict[str, Any]]:
    return [s for s in show(cli, i)["schedule"] if s["attempts"] > 0 or s["status"] != "pending"]


def test_sms_to_from_body_and_delivery_reconciled(cli: Cli, tmp_path: Path, twilio: FakeTwilio) -> None:
    setup(cli, tmp_path, [patient("P1", first_name="Rosa")])
    s = tick(cli, T0)
    assert s["sent"] == 2  # sms (accepted by Twilio) + email (sandbox)
    [req] = [r for r in twilio.create_requests if r["_kind"] == "message"]
    assert req["To"] == "+16175550100" and req["From"] == PRACTICE
    url = show(cli, 1)["payment_url"]
    assert req["Body"] == (
        f"Hi Rosa, Riverside Family Medicine shows a balance of $1,234.56. Pay securely: {url} Reply STOP to opt out."
    )
    sms = [x for x in sends(cli, 1) if x["method"] == "sms"][0]
    assert sms["status"] == "sent" and re.fullmatch(r"SM[0-9a-f]{32}", sms["provider_ref"])
    twilio.set_status(sms["provider_ref"], "delivered")
    s = tick(cli, T0 + timedelta(minutes=5))
    assert s["reconciled"] == 1
    assert [x for x in sends(cli, 1) if x["method"] == "sms"][0]["status"] == "delivered"


def test_bad_recipients(cli: Cli, tmp_path: Path, twilio: FakeTwilio) -> None:
    setup(
        cli,
        tmp_path,
        [
            patient("INV", phone="+15005550001"),
            patient("LAND", phone="+15005550009"),
            patient("OPT", phone="+15005550004"),
        ],
    )
    tick(cli, T0)
    inv, land, opt = ([x for x in sends(cli, i) if x["method"] == "sms"][0] for i in (1, 2, 3))
    assert (inv["status"], inv["reason"]) == ("failed", "invalid phone number")
    assert land["status"] == "failed" and show(cli, 2)["patient"]["phone_type"] == "landline"
    assert opt["status"] == "failed" and show(cli, 3)["patient"]["sms_opt_out"] is True
    assert show(cli, 2)["patient"]["usable_methods"]["sms"]["reason"] == "phone is a landline"


@pytest.mark.parametrize("fault", ["429", "500"])
def test_transient_errors_retried_later_without_duplicate(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, fault: str
) -> None:
    setup(cli, tmp_path, [patient("P1")], rule_set="smsonly")
    twilio.faults.append(fault)
    r = cli("run-outreach", "--format", "json", now=z(T0))
    s = json.loads(r.stdout)
    assert r.code == 75 and s["transient"] == 1  # the only send failed temporarily: an outage
    assert s["sent"] == 0 and [x for x in sends(cli, 1)][0]["status"] == "pending"
    assert tick(cli, T0 + timedelta(minutes=1))["sent"] == 0  # back-off: not yet
    s = tick(cli, T0 + timedelta(minutes=6))
    assert s["sent"] == 1
    assert len(twilio.sent_to("+16175550100")) == 1
    assert len([r for r in twilio.create_requests if r["To"] == "+16175550100"]) == 2


def test_accepted_then_timed_out_is_resolved_by_lookup(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(cli, tmp_path, [patient("P1")], rule_set="smsonly")
    twilio.faults.append("hang")
    twilio.hang_seconds = 2.5
    with monkeypatch.context() as m:  # the client gives up sooner on this tick only (the next keeps 1 s)
        m.setenv("OUTREACH_TWILIO_TIMEOUT", "0.3")
        s = tick(cli, T0)
    assert s["unknown"] == 1
    [snd] = sends(cli, 1)
    assert snd["status"] == "unknown"
    s = tick(cli, T0 + timedelta(minutes=2))
    assert s["reconciled"] == 1
    [snd] = sends(cli, 1)
    # Found at Twilio: sent (the fake sends no delivery receipt), with the SID the lookup found.
    assert snd["status"] == "sent" and re.fullmatch(r"SM[0-9a-f]{32}", snd["provider_ref"])
    assert len([r for r in twilio.create_requests if r["To"] == "+16175550100"]) == 1  # never re-sent


def test_connection_reset_before_answer_is_unknown_not_resent(cli: Cli, tmp_path: Path, twilio: FakeTwilio) -> None:
    setup(cli, tmp_path, [patient("P1")], rule_set="smsonly")
    twilio.faults.append("reset")
    tick(cli, T0)
    [snd] = sends(cli, 1)
    # The request went out and the answer never came: it may have been accepted, so it is looked up.
    assert (snd["status"], snd["reason"], snd["provider_ref"]) == (
        "unknown",
        "no answer from Twilio (ConnectionError); resolving by lookup",
        None,
    )
    tick(cli, T0 + timedelta(minutes=10))
    # The reset request created nothing at Twilio, so the lookup finds nothing and it is sent once.
    tick(cli, T0 + timedelta(minutes=11))
    assert len(twilio.sent_to("+16175550100")) == 1


def test_undelivered_callback_fails_step_and_marks_landline(cli: Cli, tmp_path: Path, twilio: FakeTwilio) -> None:
    setup(cli, tmp_path, [patient("P1"), patient("P2", phone="(617) 555-0133")], rule_set="smsonly")
    tick(cli, T0)
    sid1 = sends(cli, 1)[0]["provider_ref"]
    sid2 = sends(cli, 2)[0]["provider_ref"]
    # P1 through `events ingest` (a status callback), P2 through reconciliation.
    r = cli(
        "events",
        "ingest",
        "-",
        input=json.dumps({"type": "sms_status", "sid": sid1, "status": "undelivered", "error_code": 30006}) + "\n",
    )
    assert r.code == 0, r
    twilio.set_status(sid2, "undelivered", 30006)
    tick(cli, T0 + timedelta(minutes=5))
    for i in (1, 2):
        d = show(cli, i)
        assert d["patient"]["phone_type"] == "landline"
        assert (d["status"], d["status_reason"]) == (
            "failed",
            'step "Statement" (day 0) could not be delivered: sms: landline or unreachable carrier; '
            'will-fail: step "Reminder" (day 3): phone is a landline for sms',
        )
        assert [x for x in d["schedule"] if x["day"] == 0][0]["status"] == "failed"


def test_inbound_stop_opts_out_and_next_sms_skipped(cli: Cli, tmp_path: Path, twilio: FakeTwilio) -> None:
    setup(cli, tmp_path, [patient("P1")], rule_set="smsonly")
    tick(cli, T0)
    twilio.add_inbound("+16175550100", PRACTICE, "  Stop ", T0 + timedelta(hours=1))
    twilio.add_inbound("+16175550100", PRACTICE, "who is this?", T0 + timedelta(hours=1, minutes=1))
    tick(cli, T0 + timedelta(hours=2))
    d = show(cli, 1)
    assert d["patient"]["sms_opt_out"] is True
    replies = [e for e in d["timeline"] if e["kind"] == "reply"]
    assert [r["detail"]["keyword"] for r in replies] == ["stop", None]
    assert d["status"] == "will-fail"  # the remaining step is sms only
    tick(cli, T0 + timedelta(hours=3))  # reading the same replies again changes nothing
    assert len([e for e in show(cli, 1)["timeline"] if e["kind"] == "reply"]) == 2
    tick(cli, T0 + timedelta(days=3, hours=1))
    tick(cli, T0 + timedelta(days=5, hours=1))
    day3 = [x for x in show(cli, 1)["schedule"] if x["day"] == 3]
    assert [(x["status"], x["reason"]) for x in day3] == [("skipped", "patient opted out of SMS")]
    # the first step's text and the one opt-out confirmation the FCC order allows; nothing after
    url = show(cli, 1)["payment_url"]
    assert [x["body"] for x in twilio.sent_to("+16175550100")] == [
        f"Hi Jane, you owe $1,234.56. Pay: {url} Reply STOP to opt out.",
        "Riverside Family Medicine: you are unsubscribed and will receive no more text messages from us."
        " Reply START to resubscribe.",
    ]


def test_calls_speak_the_message(cli: Cli, tmp_path: Path, twilio: FakeTwilio) -> None:
    sync_rule_set(
        cli,
        tmp_path,
        "callonly",
        'expiry_day = 5\n[[step]]\nday = 0\nmethods = ["call"]\ntitle = "Call"\nmessage = "Hello {first_name}, you owe {balance} & more."\n',
    )
    setup(cli, tmp_path, [patient("P1")], rule_set="callonly")
    tick(cli, T0)
    [req] = [r for r in twilio.create_requests if r["_kind"] == "call"]
    assert req["To"] == "+16175550100" and req["From"] == PRACTICE
    assert req["Twiml"] == "<Response><Say>Hello Jane, you owe $1,234.56 &amp; more.</Say></Response>"


def test_bad_credentials_stop_the_run_with_exit_4(
    cli: Cli, tmp_path: Path, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup(cli, tmp_path, [patient(f"P{i}", phone=f"(617) 555-011{i}") for i in range(3)], rule_set="smsonly")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "wrong")
    r = cli("run-outreach", now=z(T0))
    assert (r.code, r.stdout, r.stderr) == (
        4,
        "",
        "error: provider configuration error: Twilio rejected the account or credentials (HTTP 401, error 20003);"
        " the run stopped and sent nothing more\n",
    )
    assert twilio.messages == {}
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", TOKEN)
    tick(cli, T0 + timedelta(minutes=1))
    assert len(twilio.messages) == 3  # nothing was lost: the next good run sends each once


def twilio_ok(twilio: FakeTwilio, channel: str) -> str:
    """doctor's line for a Twilio channel with every setting given: the token masked."""
    return f"ok   {channel} provider: twilio at {twilio.base_url}, account AC{'*' * 30}00, token te{'*' * 19}et"


def twilio_doctor(cli: Cli, sms: str, call: str) -> str:
    """doctor's whole output in these tests: the ``sms`` and ``call`` lines, the rest as set here."""
    lines = [
        "ok   config: no config file; timezone UTC, window 09:00-17:00",
        *doctor_database(cli.db),
        sms,
        call,
        "ok   email provider: sandbox (no network)",
        f"ok   mail provider: outbox {Path.cwd() / 'mail-outbox'}",
        "ok   charge_card provider: sandbox",
        "ok   practice: Riverside Family Medicine, +16175550100",
    ]
    return "".join(f"{x}\n" for x in lines)


def test_doctor_reports_missing_twilio_settings_masked(
    cli: Cli, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli("doctor")
    assert r.code == 0, r
    assert TOKEN not in r.stdout
    assert hide_secret(r.stdout) == twilio_doctor(cli, twilio_ok(twilio, "sms"), twilio_ok(twilio, "call"))
    monkeypatch.delenv("TWILIO_FROM_NUMBER")
    r = cli("doctor")
    assert r.code == 4, r
    assert hide_secret(r.stdout) == twilio_doctor(
        cli,
        "FAIL sms provider: twilio: needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID",
        "FAIL call provider: twilio: needs TWILIO_FROM_NUMBER",
    )


def test_doctor_refuses_what_run_outreach_refuses_call_with_only_a_messaging_service(
    cli: Cli, twilio: FakeTwilio, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A messaging-service SID sends SMS only: doctor and run-outreach agree that a Twilio call
    channel without TWILIO_FROM_NUMBER cannot run (doctor used to say ok)."""
    monkeypatch.delenv("TWILIO_FROM_NUMBER")
    monkeypatch.setenv("TWILIO_MESSAGING_SERVICE_SID", "MG" + "0" * 32)
    r = cli("doctor")
    assert r.code == 4, r
    sms = twilio_ok(twilio, "sms")
    assert hide_secret(r.stdout) == twilio_doctor(cli, sms, "FAIL call provider: twilio: needs TWILIO_FROM_NUMBER")
    r = cli("run-outreach", now=z(T0))
    assert (r.code, r.stdout, r.stderr) == (4, "", "error: channels.call = twilio: needs TWILIO_FROM_NUMBER\n")
    monkeypatch.setenv("OUTREACH_CHANNELS_CALL", "sandbox")
    assert hide_secret(cli.ok("doctor").stdout) == twilio_doctor(cli, sms, "ok   call provider: sandbox (no network)")
    cli.ok("run-outreach", now=z(T0))


def test_outbox_manifest_and_letter_date_use_the_provider_clock_without_a_message_clock(tmp_path: Path) -> None:
    import csv

    from outreach_cli.channels.base import Message
    from outreach_cli.channels.outbox import OutboxProvider, letter_date

    fixed = datetime(2026, 3, 3, 23, 30, tzinfo=UTC)
    msg = Message(7, 3, "mail", "Statement", "", "https://pay.example.com/p/x", first_name="Rosa")
    msg.address = {"address_line1": "1 Main St", "city": "Boston", "state": "MA", "postal_code": "02110"}
    msg.practice_tz = "America/New_York"
    out = OutboxProvider(str(tmp_path / "out"), clock=lambda: fixed).send(msg)
    assert out.status == "delivered" and out.provider_ref == "letter-3-7.pdf"
    with (tmp_path / "out" / "manifest.csv").open(encoding="utf-8") as fh:
        assert [r["created_at"] for r in csv.DictReader(fh)] == ["2026-03-03T23:30:00Z"]
    assert letter_date(msg, lambda: fixed) == "March 3, 2026"  # 18:30 in Boston
    msg.now = fixed + timedelta(days=1)  # the tool's clock, when the message carries it, wins
    assert letter_date(msg, lambda: fixed) == "March 4, 2026"


# --- SMTP ----------------------------------------------------------------------------------------


class _Handler:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if "bounce" in address:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Handler]:
    import socket

    from aiosmtpd.controller import Controller

    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    handler = _Handler()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    monkeypatch.setenv("OUTREACH_CHANNELS_EMAIL", "smtp")
    monkeypatch.setenv("OUTREACH_SMTP_URL", f"smtp://127.0.0.1:{port}")
    monkeypatch.setenv("OUTREACH_EMAIL_FROM", "billing@riverside.example")
    yield handler
    ctl.stop()


def test_email_over_smtp(cli: Cli, tmp_path: Path, smtp: _Handler) -> None:
    import email
    from email import policy

    setup(
        cli,
        tmp_path,
        [patient("P1", first_name="Rosa"), patient("P2", phone="(617) 555-0122", email="someone.bounce@example.com")],
    )
    s = tick(cli, T0)
    assert (s["sent"], s["failed"]) == (3, 1)  # both texts and Rosa's email; P2's email bounced
    [env] = smtp.messages
    msg = email.message_from_bytes(env.content, policy=policy.default)
    assert (
        msg["Subject"] == "Statement" and msg["From"] == "billing@riverside.example" and msg["To"] == "p1@example.com"
    )
    assert msg["List-Unsubscribe"] == "<mailto:billing@riverside.example?subject=unsubscribe>"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    url = show(cli, 1)["payment_url"]
    body = (
        "Hi Rosa, Riverside Family Medicine shows a balance of $1,234.56 on your account. You can pay securely"
        f" online: {url} Questions? Call (617) 555-0100."
    )
    assert text == f"{body}\r\n\r\nPay securely online: {url}\r\n\r\nRiverside Family Medicine\r\n(617) 555-0100\r\n"
    assert html == (
        f'<html><body><p>{body}</p><p><a href="{url}">Pay securely online</a></p>'
        "<p>Riverside Family Medicine</p></body></html>\r\n"
    )
    d = show(cli, 2)
    assert d["patient"]["email_suppressed"] is True
    emails = [(x["status"], x["reason"]) for x in d["schedule"] if x["method"] == "email"]
    assert emails == [
        ("failed", "recipient refused (bounce)"),
        ("pending", "email address suppressed (bounced)"),  # days 14 and 45, with why they cannot go
        ("pending", "email address suppressed (bounced)"),
    ]


def test_pdf_letter(cli: Cli, tmp_path: Path) -> None:
    from pypdf import PdfReader

    sync_rule_set(
        cli,
        tmp_path,
        "letter",
        'expiry_day = 5\n[[step]]\nday = 0\nmethods = ["mail"]\ntitle = "Statement letter"\nmessage = "Dear {full_name}, please pay {balance}."\n',
    )
    setup(
        cli,
        tmp_path,
        [patient("P1", address_line1="77 Harbor Rd", city="Salem", state="MA", postal_code="01970")],
        rule_set="letter",
    )
    tick(cli, T0)
    [pdf] = list(Path("mail-outbox").glob("*.pdf"))
    text = PdfReader(str(pdf)).pages[0].extract_text()
    assert pdf.name == "letter-1-1.pdf"
    assert text == (
        "Riverside Family Medicine\n(617) 555-0100\nMarch 3, 2026\nJane Doe\n77 Harbor Rd\nSalem, MA 01970\n"
        "Statement letter: balance due $1,234.56\nDear Jane Doe, please pay $1,234.56.\nPay securely online:\n"
        + show(cli, 1)["payment_url"]
    )
    assert (Path("mail-outbox") / "manifest.csv").read_text().splitlines() == [
        "file,send_id,invoice_set_id,name,address_line1,address_line2,city,state,postal_code,country,balance,created_at",
        'letter-1-1.pdf,1,1,Jane Doe,77 Harbor Rd,,Salem,MA,01970,US,"$1,234.56",2026-03-03T15:00:00Z',
    ]


# --- events ingest --------------------------------------------------------------------------------


def test_events_ingest_all_or_nothing(cli: Cli, tmp_path: Path) -> None:
    setup(cli, tmp_path, [patient("P1"), patient("P2", phone="(617) 555-0144", email="two@example.com")])
    lines = [
        {"type": "email_bounce", "email": "p1@example.com", "reason": "mailbox full"},
        {"type": "inbound_sms", "from": "(617) 555-0144", "body": "STOP", "received_at": z(T0)},
        {"type": "carrier_pigeon"},
        "not json",
        {"type": "sms_status", "sid": "SMnope", "status": "delivered"},
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n"
    r = cli("events", "ingest", "-", input=text)
    assert (r.code, r.stdout, r.stderr) == (
        2,
        "",
        "error: <stdin>: 3 problem(s); nothing was applied\n"
        "  line 3: type: unknown event type 'carrier_pigeon' (known: sms_status, inbound_sms, email_bounce,"
        " email_complaint, email_unsubscribe, email_reply)\n"
        "  line 4: not valid JSON: Expecting value at column 1\n"
        "  line 5: sid: no send with this message SID\n",
    )
    assert show(cli, 1)["patient"]["email_suppressed"] is False
    good = (
        "\n".join(json.dumps(x) for x in lines[:2])
        + "\n"
        + json.dumps({"type": "email_complaint", "email": "two@example.com"})
        + "\n"
    )
    cli.ok("events", "ingest", "-", input=good)
    assert show(cli, 1)["patient"]["email_suppressed"] is True
    p2 = show(cli, 2)["patient"]
    assert p2["sms_opt_out"] is True and p2["email_suppressed"] is True
    assert p2["usable_methods"]["email"]["usable"] is False
