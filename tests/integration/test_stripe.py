"""Stripe (issue 14): the real stripe SDK against a fake Stripe API on loopback. Card-on-file
charges exactly once, Checkout Session links, and payments, refunds and disputes closing the loop
through the event feed and `events ingest`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.fakes.stripe_server import API_KEY, WEBHOOK_SECRET, FakeStripe
from tests.helpers import PATIENT_HEADER, doctor_database, hide_secret, patient, refused, sync_rule_set, write_csv
from tests.reliability.harness import T0, z


@pytest.fixture(autouse=True)
def _practice_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real providers (Stripe, the letter outbox) refuse to send without the practice's identity."""
    monkeypatch.setenv("OUTREACH_PRACTICE_NAME", "Riverside Family Medicine")
    monkeypatch.setenv("OUTREACH_PRACTICE_PHONE", "+16175550100")


HEADER = [*PATIENT_HEADER, "stripe_customer_id", "stripe_payment_method_id"]

CARD = """title = "Card then text"
expiry_day = 30
fallback = ["sms"]
[fallback_messages]
sms = "Hi {first_name}, we could not charge your card for {balance}. Pay: {url} Reply STOP to opt out."
[[step]]
day = 0
methods = ["charge_card"]
title = "Charge the card on file"
max_balance = "500.00"
[[step]]
day = 5
methods = ["sms"]
title = "Reminder"
message = "Hi {first_name}, you owe {balance}. Pay: {url} Reply STOP to opt out."
"""

LINKS = """title = "Texts with a link"
expiry_day = 30
[[step]]
day = 0
methods = ["sms", "email"]
title = "Statement"
message = "Hi {first_name}, you owe {balance}. Pay: {url} Reply STOP to opt out."
[[step]]
day = 3
methods = ["sms"]
title = "Reminder"
message = "Hi {first_name}, still {balance}. Pay: {url} Reply STOP to opt out."
"""


@pytest.fixture
def stripe_fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    fake = FakeStripe().start()
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET", raising=False)
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("OUTREACH_STRIPE_BASE_URL", fake.base_url)
    monkeypatch.setenv("OUTREACH_STRIPE_TIMEOUT", "10")  # only the hanging ticks shorten it
    monkeypatch.setenv("OUTREACH_SENDING_WEEKENDS", "true")  # T0 + N days may fall on a weekend
    yield fake
    fake.stop()


@pytest.fixture
def card(stripe_fake: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> FakeStripe:
    monkeypatch.setenv("OUTREACH_CHANNELS_CHARGE_CARD", "stripe")
    return stripe_fake


def seed(cli: Cli, tmp: Path, rule_set: str, toml: str, pms: list[str | None], amount: str = "120.00") -> None:
    sync_rule_set(cli, tmp, rule_set, toml)
    rows = []
    for i, pm in enumerate(pms):
        rows.append(
            patient(
                f"P{i}",
                phone=f"+1617555{i:04d}",
                stripe_customer_id=f"cus_TEST{i:04d}" if pm else "",
                stripe_payment_method_id=pm or "",
            )
        )
    write_csv(tmp / "p.csv", rows, HEADER)
    cli.ok("import", "patients", str(tmp / "p.csv"), now=z(T0))
    write_csv(tmp / "c.csv", [{"charge_id": f"C{i}", "patient_id": f"P{i}", "amount": amount} for i in range(len(pms))])
    cli.ok("import", "charges", str(tmp / "c.csv"), "--rule-set", rule_set, now=z(T0))


def tick(cli: Cli, minutes: int = 0) -> dict[str, Any]:
    return json.loads(cli.ok("run-outreach", "--format", "json", now=z(T0 + timedelta(minutes=minutes))).stdout)  # type: ignore[no-any-return]


def show(cli: Cli, i: int) -> dict[str, Any]:
    return json.loads(cli.ok("show", str(i), "--format", "json").stdout)  # type: ignore[no-any-return]


def card_send(cli: Cli, i: int) -> dict[str, Any]:
    [s] = [s for s in show(cli, i)["schedule"] if s["method"] == "charge_card"]
    return s


def tick_giving_up(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A tick whose charge hangs: the client gives up after 0.3 s (the later ticks keep the 10 s
    timeout, so their requests are not cut short on a busy machine)."""
    with monkeypatch.context() as m:
        m.setenv("OUTREACH_STRIPE_TIMEOUT", "0.3")
        return tick(cli)


def ingest(cli: Cli, lines: list[dict[str, Any]]) -> Any:
    return cli("events", "ingest", "-", input="".join(json.dumps(x) + "\n" for x in lines))


# --- card on file --------------------------------------------------------------------------


def test_charge_succeeds_once_with_key_and_metadata(cli: Cli, tmp_path: Path, card: FakeStripe) -> None:
    seed(cli, tmp_path, "card", CARD, ["pm_card_visa"], amount="120.00")
    summary = tick(cli)
    assert summary["sent"] == 1 and summary["paid"] == 1
    [create] = card.creates()
    p = create["params"]
    assert (p["amount"], p["currency"], p["off_session"], p["confirm"]) == ("12000", "usd", "true", "true")
    assert (p["customer"], p["payment_method"]) == ("cus_TEST0000", "pm_card_visa")
    send = card_send(cli, 1)
    assert p["metadata"] == {
        "outreach_set_id": "1",
        "outreach_send_id": str(_send_id(cli, 1)),
        "outreach_step": "Charge the card on file",
        "outreach_schedule_gen": "1",
    }
    assert create["idempotency_key"] == f"outreach-send-{_send_id(cli, 1)}-1"
    d = show(cli, 1)
    assert d["status"] == "paid" and d["amount_outstanding_cents"] == 0
    assert send["status"] == "delivered" and re.fullmatch(r"pi_[0-9a-f]{24}", send["provider_ref"])
    payments = [e for e in d["timeline"] if e["kind"] == "payment"]
    assert [(e["detail"]["payment_id"], e["detail"]["applied_cents"]) for e in payments] == [
        (send["provider_ref"], 12000)
    ]
    # The event of that same charge arrives with the next tick: nothing is applied twice.
    tick(cli, 10)
    assert len([e for e in show(cli, 1)["timeline"] if e["kind"] == "payment"]) == 1
    assert len(card.creates()) == 1


def _send_id(cli: Cli, set_id: int) -> int:
    from sqlalchemy import select

    from outreach_cli.store.database import Store
    from outreach_cli.store.models import send_t

    store = Store(cli.db)
    with store.read() as conn:
        sid = conn.execute(
            select(send_t.c.id).where(send_t.c.invoice_set_id == set_id, send_t.c.method == "charge_card")
        ).scalar_one()
    store.engine.dispose()
    return int(sid)


@pytest.mark.parametrize(
    ("pm", "code", "reason"),
    [
        ("pm_card_chargeDeclined", "generic_decline", "card declined"),
        ("pm_card_chargeDeclinedInsufficientFunds", "insufficient_funds", "card declined: insufficient funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "card declined: the card has expired"),
        (
            "pm_card_authenticationRequired",
            "authentication_required",
            "card declined: the bank requires authentication",
        ),
    ],
)
def test_declines_fail_the_method_and_the_fallback_runs(
    cli: Cli, tmp_path: Path, card: FakeStripe, pm: str, code: str, reason: str
) -> None:
    seed(cli, tmp_path, "card", CARD, [pm])
    summary = tick(cli)
    assert summary["failed"] == 1 and summary["paid"] == 0
    d = show(cli, 1)
    rows = {s["method"]: s for s in d["schedule"] if s["step"] == "Charge the card on file"}
    assert rows["charge_card"]["status"] == "failed" and rows["charge_card"]["reason"] == reason
    assert rows["sms"]["status"] == "delivered"  # the rule set's fallback
    failed = [e for e in d["timeline"] if e["kind"] == "send" and e["detail"].get("method") == "charge_card"]
    assert failed[-1]["detail"]["error_code"] == code and failed[-1]["detail"]["reason"] == reason
    assert d["status"] == "active" and d["amount_outstanding_cents"] == 12000


def test_no_card_on_file_is_unusable_and_predicted(cli: Cli, tmp_path: Path, card: FakeStripe) -> None:
    sync_rule_set(cli, tmp_path, "card", CARD.replace('fallback = ["sms"]\n', ""))
    write_csv(tmp_path / "p.csv", [patient("P0", phone="+16175550000")], HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"), now=z(T0))
    write_csv(tmp_path / "c.csv", [{"charge_id": "C0", "patient_id": "P0", "amount": "80.00"}])
    cli.ok("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "card", now=z(T0 - timedelta(days=2)))
    d = show(cli, 1)
    assert d["patient"]["usable_methods"]["charge_card"] == {"usable": False, "reason": "no card on file"}
    assert (d["status"], d["status_reason"]) == (
        "will-fail",
        'step "Charge the card on file" (day 0): no card on file for charge_card',
    )
    tick(cli)
    assert card.creates() == []
    assert show(cli, 1)["status"] == "failed"


def test_transient_errors_retry_with_the_same_key(cli: Cli, tmp_path: Path, card: FakeStripe) -> None:
    seed(cli, tmp_path, "card", CARD, ["pm_card_visa"])
    card.faults += ["429"]
    r = cli("run-outreach", "--format", "json", now=z(T0))
    first = json.loads(r.stdout)  # every attempted send failed temporarily: an outage, exit 75
    assert r.code == 75 and first["transient"] == 1 and first["sent"] == 0
    assert card_send(cli, 1)["status"] == "pending"
    card.faults += ["500"]
    assert cli("run-outreach", now=z(T0 + timedelta(minutes=6))).code == 75
    assert card_send(cli, 1)["status"] == "pending"
    done = tick(cli, 30)
    assert done["paid"] == 1 and show(cli, 1)["status"] == "paid"
    creates = card.creates()
    assert len(creates) == 3 and len({c["idempotency_key"] for c in creates}) == 1
    assert len(card.payment_intents) == 1


def test_timeout_after_stripe_charged_is_looked_up_not_recharged(
    cli: Cli, tmp_path: Path, card: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(cli, tmp_path, "card", CARD, ["pm_card_visa"])
    card.faults.append("hang")  # executed at once, answered after our timeout
    card.hang_seconds = 4
    summary = tick_giving_up(cli, monkeypatch)
    assert summary["unknown"] == 1 and card_send(cli, 1)["status"] == "unknown"
    assert show(cli, 1)["amount_outstanding_cents"] == 12000
    later = tick(cli, 10)
    assert (later["reconciled"], later["paid"]) == (2, 1)  # the card send looked up, its payment applied
    d = show(cli, 1)
    assert d["status"] == "paid" and card_send(cli, 1)["status"] == "delivered"
    assert len(card.creates()) == 1 and len(card.payment_intents) == 1
    lookups = [r for r in card.log if r["method"] == "GET" and r["path"] == "/v1/payment_intents"]
    assert [x["params"] for x in lookups] == [{"limit": "100", "customer": "cus_TEST0000"}]
    assert len([e for e in d["timeline"] if e["kind"] == "payment"]) == 1


def test_unknown_that_stripe_never_saw_is_retried_with_the_same_key(cli: Cli, tmp_path: Path, card: FakeStripe) -> None:
    seed(cli, tmp_path, "card", CARD, ["pm_card_visa"])
    card.faults.append("drop")
    assert tick(cli)["unknown"] == 1
    assert card.payment_intents == {}
    tick(cli, 10)  # looked up: no such charge, so it goes out again, under the same key
    assert show(cli, 1)["status"] == "paid"
    creates = card.creates()
    assert len(creates) == 2 and creates[0]["idempotency_key"] == creates[1]["idempotency_key"]
    assert len(card.payment_intents) == 1


def test_payment_while_a_charge_is_unknown_keeps_all_the_money(
    cli: Cli, tmp_path: Path, card: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A payment imported while the charge's outcome is unknown: the charge is found, not repeated,
    and recorded in full; what exceeds the balance stays as the patient's credit."""
    seed(cli, tmp_path, "card", CARD, ["pm_card_visa"])
    card.faults.append("hang")
    card.hang_seconds = 4
    assert tick_giving_up(cli, monkeypatch)["unknown"] == 1
    write_csv(tmp_path / "y.csv", [{"payment_id": "Y1", "patient_id": "P0", "amount": "20.00"}])
    cli.ok("import", "payments", str(tmp_path / "y.csv"), now=z(T0))
    tick(cli, 10)
    assert len(card.payment_intents) == 1 and len(card.creates()) == 1
    d = show(cli, 1)
    assert d["status"] == "paid" and d["amount_outstanding_cents"] == 0
    pays = {e["detail"]["payment_id"]: e["detail"] for e in d["timeline"] if e["kind"] == "payment"}
    [pi] = card.payment_intents
    assert (pays[pi]["amount_cents"], pays[pi]["applied_cents"]) == (12000, 10000)


# --- events: payments, refunds, disputes ---------------------------------------------------


def test_same_event_ingested_three_times_applies_once(cli: Cli, tmp_path: Path, stripe_fake: FakeStripe) -> None:
    seed(cli, tmp_path, "links", LINKS, ["pm_card_visa"])
    ev = stripe_fake.succeed_outside(5000, "cus_TEST0000")
    for _ in range(3):
        r = ingest(cli, [ev])
        assert r.code == 0, r
    d = show(cli, 1)
    assert d["amount_outstanding_cents"] == 12000 - 5000
    pays = [e for e in d["timeline"] if e["kind"] == "payment"]
    assert [(p["detail"]["payment_id"], p["detail"]["applied_cents"]) for p in pays] == [
        (ev["data"]["object"]["id"], 5000)
    ]
    assert (r.stdout, r.stderr) == ("", "events ingest: 1 line(s), 0 applied, 1 unchanged\n")


def test_signed_deliveries_are_verified(
    cli: Cli, tmp_path: Path, stripe_fake: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stripe

    seed(cli, tmp_path, "links", LINKS, ["pm_card_visa"])
    ev = stripe_fake.succeed_outside(12000, "cus_TEST0000")
    payload = json.dumps(ev)
    ts = int(time.time())
    sig = stripe.WebhookSignature._compute_signature(f"{ts}.{payload}", WEBHOOK_SECRET)
    header = f"t={ts},v1={sig}"
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    bad = ingest(cli, [{"stripe_signature": header, "payload": payload.replace("12000", "99999")}])
    assert (bad.code, bad.stdout, bad.stderr) == (
        2,
        "",
        "error: <stdin>: 1 problem(s); nothing was applied\n"
        "  line 1: stripe_signature: does not match the payload under STRIPE_WEBHOOK_SECRET"
        " (was the body changed, or is this another endpoint's secret?)\n",
    )
    bare = ingest(cli, [ev])
    assert (bare.code, bare.stdout, bare.stderr) == (
        2,
        "",
        "error: <stdin>: 1 problem(s); nothing was applied\n"
        "  line 1: stripe_signature: STRIPE_WEBHOOK_SECRET is set, so Stripe events must come as"
        ' {"stripe_signature": ..., "payload": "<raw body>"} to be verified\n',
    )
    assert show(cli, 1)["amount_outstanding_cents"] == 12000
    good = ingest(cli, [{"stripe_signature": header, "payload": payload}])
    assert good.code == 0, good
    assert show(cli, 1)["status"] == "paid"
    assert WEBHOOK_SECRET not in good.stderr + bad.stderr + bare.stderr


def test_malformed_stripe_lines_apply_nothing(cli: Cli, tmp_path: Path, stripe_fake: FakeStripe) -> None:
    seed(cli, tmp_path, "links", LINKS, ["pm_card_visa"])
    ok = stripe_fake.succeed_outside(12000, "cus_TEST0000")
    r = ingest(cli, [ok, {"object": "event", "id": "nope", "type": "x", "data": {"object": {}}}])
    assert (r.code, r.stderr) == (
        2,
        "error: <stdin>: 1 problem(s); nothing was applied\n  line 2: id: a Stripe event ID (evt_...) is required\n",
    )
    assert show(cli, 1)["amount_outstanding_cents"] == 12000


def test_refund_reopens_a_paid_set_and_the_schedule_continues(cli: Cli, tmp_path: Path, card: FakeStripe) -> None:
    seed(cli, tmp_path, "card", CARD, ["pm_card_visa"])
    tick(cli)
    d = show(cli, 1)
    assert d["status"] == "paid"
    pi = card_send(cli, 1)["provider_ref"]
    card.refund(pi, 4000)
    summary = tick(cli, 10)
    assert (summary["reconciled"], summary["paid"]) == (2, 0)
    d = show(cli, 1)
    assert d["status"] == "active" and d["amount_outstanding_cents"] == 4000
    refunds = [e for e in d["timeline"] if e["kind"] == "refund"]
    assert [(e["detail"]["payment_id"], e["detail"]["restored_cents"]) for e in refunds] == [(pi, 4000)]
    reopen = [e for e in d["timeline"] if e["kind"] == "status" and e["from_status"] == "paid"]
    assert reopen[-1]["to_status"] == "active" and reopen[-1]["actor"] == "stripe"
    # The schedule continues at the next step (day 5), not from the start.
    future = [s for s in d["schedule"] if s["status"] == "pending"]
    assert [(s["step"], s["method"]) for s in future] == [("Reminder", "sms")]
    # The rest refunded later: the cumulative amount_refunded restores only the difference.
    card.refund(pi, 8000)
    tick(cli, 20)
    tick(cli, 30)  # the same events again: nothing changes
    assert show(cli, 1)["amount_outstanding_cents"] == 12000
    audit = json.loads(cli.ok("audit", "--id", "1", "--format", "json").stdout)
    assert [(x["at"], x["actor"], x["reason"], x["detail"]) for x in audit if x["kind"] == "refund"] == [
        (
            at,
            "stripe",
            f"refund of {dollars} at Stripe ({pi})",
            {"payment_id": pi, "restored_cents": cents, "source": "stripe"},
        )
        for at, dollars, cents in (("2026-03-03T15:10:00Z", "$40.00", 4000), ("2026-03-03T15:20:00Z", "$80.00", 8000))
    ]


def test_dispute_pauses_the_set_with_the_reason(cli: Cli, tmp_path: Path, card: FakeStripe) -> None:
    seed(cli, tmp_path, "card", CARD, ["pm_card_visa"])
    tick(cli)
    pi = card_send(cli, 1)["provider_ref"]
    ev = card.dispute(pi, "fraudulent")
    tick(cli, 10)
    d = show(cli, 1)
    assert d["status"] == "paused" and d["amount_outstanding_cents"] == 12000
    assert d["status_reason"] == "payment disputed (fraudulent); resume once the dispute is settled"
    disputes = [e for e in d["timeline"] if e["kind"] == "dispute"]
    assert [(e["reason"], e["detail"]) for e in disputes] == [
        (
            f"card payment disputed at Stripe: fraudulent ({ev['data']['object']['id']})",
            {"payment_id": pi, "restored_cents": 12000, "source": "stripe"},
        )
    ]
    assert ingest(cli, [ev]).code == 0  # the same dispute again (a saved webhook): nothing more
    assert len([e for e in show(cli, 1)["timeline"] if e["kind"] == "dispute"]) == 1
    # Nothing is sent while paused.
    tick(cli, 60 * 24 * 6)
    assert [s for s in show(cli, 1)["schedule"] if s["method"] == "sms" and s["status"] == "delivered"] == []


# --- payment links ---------------------------------------------------------------------------


def test_checkout_link_created_once_per_balance_and_paid(
    cli: Cli, tmp_path: Path, stripe_fake: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUTREACH_PAYMENTS_PROVIDER", "stripe")
    seed(cli, tmp_path, "links", LINKS, ["pm_card_visa"])
    assert show(cli, 1)["payment_url"] is None
    tick(cli)  # sms + email of step 1: one session shared
    sessions = stripe_fake.creates("/v1/checkout/sessions")
    assert len(sessions) == 2 and len(stripe_fake.sessions) == 1  # asked for by the sms and the email
    assert [s["idempotency_key"] for s in sessions] == ["outreach-checkout-1-12000-1"] * 2
    [sess] = stripe_fake.sessions.values()
    assert sess["amount_total"] == 12000 and sess["metadata"] == {"outreach_set_id": "1"}
    assert show(cli, 1)["payment_url"] == sess["url"]
    [listed] = json.loads(cli.ok("list", "--format", "json").stdout)
    assert listed["payment_url"] == sess["url"]
    # A partial payment changes the balance: the next message carries a new link, the old expires.
    write_csv(tmp_path / "y.csv", [{"payment_id": "Y1", "patient_id": "P0", "amount": "20.00"}])
    cli.ok("import", "payments", str(tmp_path / "y.csv"), now=z(T0))
    tick(cli, 60 * 24 * 3 + 60)
    assert len(stripe_fake.sessions) == 2 and sess["status"] == "expired"
    [new] = [s for s in stripe_fake.sessions.values() if s["status"] == "open"]
    assert new["amount_total"] == 10000 and show(cli, 1)["payment_url"] == new["url"]
    # The patient pays through it: the next tick reads the events and the set is paid, once.
    stripe_fake.pay_session(new["id"])
    summary = tick(cli, 60 * 24 * 3 + 70)
    assert summary["paid"] == 1
    d = show(cli, 1)
    assert d["status"] == "paid"
    assert len([e for e in d["timeline"] if e["kind"] == "payment" and e["detail"]["source"] == "stripe"]) == 1


def test_link_default_stays_hmac(cli: Cli, tmp_path: Path) -> None:
    sync_rule_set(cli, tmp_path, "links", LINKS)
    write_csv(tmp_path / "p.csv", [patient("P0")], HEADER)
    cli.ok("import", "patients", str(tmp_path / "p.csv"), now=z(T0))
    write_csv(tmp_path / "c.csv", [{"charge_id": "C0", "patient_id": "P0", "amount": "5.00"}])
    cli.ok("import", "charges", str(tmp_path / "c.csv"), "--rule-set", "links", now=z(T0))
    assert re.fullmatch(r"https://pay\.example\.com/p/[A-Za-z0-9_-]{32}", show(cli, 1)["payment_url"])


# --- import, doctor ---------------------------------------------------------------------------


def test_import_validates_stripe_ids(cli: Cli, tmp_path: Path) -> None:
    rows = [
        patient("P0", stripe_customer_id="cus_ABC12345", stripe_payment_method_id="pm_card_visa"),
        patient("P1", stripe_customer_id="customer-7", stripe_payment_method_id="pm_card_visa"),
        patient("P2", stripe_customer_id="cus_ABC12345", stripe_payment_method_id="4242424242424242"),
        patient("P3", stripe_customer_id="cus_ABC12345", stripe_payment_method_id=""),
    ]
    write_csv(tmp_path / "p.csv", rows, HEADER)
    r = cli("import", "patients", str(tmp_path / "p.csv"))
    assert (r.code, r.stdout) == (2, "")
    assert r.stderr == refused(
        tmp_path / "p.csv",
        "line 3: stripe_customer_id: 'customer-7' is not a Stripe ID like cus_NffrFeUfNV2Hib",
        "line 4: stripe_payment_method_id: '4242424242424242' is not a Stripe ID like pm_1NXWJ2LkdIwHu7ixNy4tBDTs",
        "line 5: stripe_payment_method_id: give both stripe_customer_id and stripe_payment_method_id"
        " (a saved card belongs to a customer), or neither",
    )
    write_csv(tmp_path / "ok.csv", rows[:1], HEADER)
    cli.ok("import", "patients", str(tmp_path / "ok.csv"))


def stripe_doctor(cli: Cli, *stripe: str) -> str:
    """doctor's whole output with the sandbox senders and Stripe for charge_card: its ``stripe``
    lines in place of the charge_card provider's."""
    lines = [
        "ok   config: no config file; timezone UTC, window 09:00-17:00",
        *doctor_database(cli.db),
        "ok   sms provider: sandbox (no network)",
        "ok   call provider: sandbox (no network)",
        "ok   email provider: sandbox (no network)",
        f"ok   mail provider: outbox {Path.cwd() / 'mail-outbox'}",
        *stripe,
        "ok   practice: Riverside Family Medicine, +16175550100",
    ]
    return "".join(f"{x}\n" for x in lines)


def test_doctor_reports_mode_and_reachability_masked(
    cli: Cli, card: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli("doctor")
    assert r.code == 0, r
    unverified = "ok   stripe webhook secret: not set: ingested Stripe events are not verified"
    assert hide_secret(r.stdout) == stripe_doctor(
        cli, f"ok   stripe: charge_card at {card.base_url}, test mode, key sk_test_****p7dc, reachable", unverified
    )
    assert API_KEY not in r.stdout + r.stderr
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_" + "x" * 24)
    r = cli("doctor")
    assert r.code == 4, r
    assert hide_secret(r.stdout) == stripe_doctor(
        cli,
        f"FAIL stripe: charge_card at {card.base_url}, live mode, key sk_live_****xxxx: the API key was rejected",
        unverified,
    )
    monkeypatch.setenv("STRIPE_API_KEY", "hunter2")
    r = cli("doctor")
    assert r.code == 4, r
    assert hide_secret(r.stdout) == stripe_doctor(
        cli, "FAIL stripe: charge_card: STRIPE_API_KEY **** is not a sk_/rk_ test or live key"
    )
    monkeypatch.delenv("STRIPE_API_KEY")
    r = cli("doctor")
    assert r.code == 4, r
    assert hide_secret(r.stdout) == stripe_doctor(cli, "FAIL stripe: charge_card: STRIPE_API_KEY is not set")
    r = cli("run-outreach")
    assert (r.code, r.stdout, r.stderr) == (4, "", "error: Stripe: STRIPE_API_KEY is not set\n")


def test_fake_honours_idempotency_keys_as_stripe_documents(stripe_fake: FakeStripe) -> None:
    """The fake itself, through the real SDK: replay on the same key and parameters, refusal on
    the same key with other parameters, and a 402 decline replayed too."""
    import stripe

    client = stripe.StripeClient(API_KEY, base_addresses={"api": stripe_fake.base_url}, max_network_retries=0)
    params: dict[str, Any] = {
        "amount": 500,
        "currency": "usd",
        "customer": "cus_IDEM0001",
        "payment_method": "pm_card_visa",
        "confirm": True,
        "off_session": True,
    }
    a = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k1"})
    b = client.v1.payment_intents.create(params=params, options={"idempotency_key": "k1"})
    assert a.id == b.id and len(stripe_fake.payment_intents) == 1
    with pytest.raises(stripe.IdempotencyError):
        client.v1.payment_intents.create(params={**params, "amount": 400}, options={"idempotency_key": "k1"})
    declined = {**params, "payment_method": "pm_card_chargeDeclined"}
    with pytest.raises(stripe.CardError) as first:
        client.v1.payment_intents.create(params=declined, options={"idempotency_key": "k2"})
    with pytest.raises(stripe.CardError) as again:
        client.v1.payment_intents.create(params=declined, options={"idempotency_key": "k2"})
    assert first.value.code == again.value.code == "card_declined"
    assert len(stripe_fake.payment_intents) == 2
    assert [r["idempotency_key"] for r in stripe_fake.creates()] == ["k1", "k1", "k1", "k2", "k2"]


def test_refund_when_a_newer_set_is_in_progress_joins_it(cli: Cli, tmp_path: Path, card: FakeStripe) -> None:
    seed(cli, tmp_path, "card", CARD, ["pm_card_visa"])
    tick(cli)
    pi = card_send(cli, 1)["provider_ref"]
    sync_rule_set(cli, tmp_path, "links", LINKS)
    write_csv(tmp_path / "c2.csv", [{"charge_id": "C9", "patient_id": "P0", "amount": "30.00"}])
    cli.ok("import", "charges", str(tmp_path / "c2.csv"), "--rule-set", "links", now=z(T0 + timedelta(hours=1)))
    card.refund(pi, 5000)
    tick(cli, 70)
    old, new = show(cli, 1), show(cli, 2)
    assert old["status"] == "paid" and old["amount_outstanding_cents"] == 0
    assert new["amount_outstanding_cents"] == 3000 + 5000
    assert [e["detail"]["restored_cents"] for e in new["timeline"] if e["kind"] == "refund"] == [5000]
    assert {c["charge_id"] for c in new["charges"]} == {"C0", "C9"}
