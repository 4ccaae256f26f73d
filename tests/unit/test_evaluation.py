"""Will Fail and the shown status, decided directly (SPEC sections 2 and 4): table tests of the
pure functions the engine and the importer call."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from outreach_cli.core.contacts import Contact, usable_methods
from outreach_cli.core.evaluation import SetView, derive_status, evaluate, predict_will_fail, step_applies
from outreach_cli.core.rulesets import RuleSet, Step
from outreach_cli.core.scheduling import Window
from outreach_cli.core.statuses import Status

EXPIRED_REASON = "the rule set's expiry day passed with a balance remaining"


def _step(i: int, day: int, methods: tuple[str, ...], lo: int | None = None, hi: int | None = None) -> Step:
    return Step(i, day, methods, f"S{i}", "Hi {url}", lo, hi)


RS = RuleSet(
    "t",
    "T",
    "",
    30,
    ("mail",),
    (_step(0, 0, ("sms",)), _step(1, 5, ("email",), lo=10_000), _step(2, 10, ("call", "sms"))),
)


@pytest.mark.parametrize(
    ("paused", "expired", "failed", "will_fail", "want", "reason"),
    [
        (False, False, None, None, Status.ACTIVE, None),
        (True, False, None, None, Status.PAUSED, None),
        (False, True, None, None, Status.EXPIRED, EXPIRED_REASON),
        (False, False, "f", None, Status.FAILED, "f"),
        (False, False, None, "w", Status.WILL_FAIL, "w"),
        (False, False, "f", "w", Status.FAILED, "f; will-fail: w"),
        (True, True, "f", "w", Status.PAUSED, f"expired: {EXPIRED_REASON}; failed: f; will-fail: w"),
        (False, True, "f", None, Status.EXPIRED, f"{EXPIRED_REASON}; failed: f"),
        (True, False, None, "w", Status.PAUSED, "will-fail: w"),
    ],
)
def test_derive_status_precedence(
    paused: bool, expired: bool, failed: str | None, will_fail: str | None, want: Status, reason: str | None
) -> None:
    got = derive_status(None, paused=paused, expired=expired, failed_reason=failed, will_fail_reason=will_fail)
    assert got == (want, reason)


@pytest.mark.parametrize("terminal", [Status.PAID, Status.CANCELLED, Status.WRITTEN_OFF, Status.COLLECTIONS])
def test_derive_status_terminal_wins(terminal: Status) -> None:
    assert derive_status(terminal, paused=True, expired=True, failed_reason="f", will_fail_reason="w") == (
        terminal,
        None,
    )


@pytest.mark.parametrize(
    ("lo", "hi", "balance", "applies"),
    [
        (None, None, 1, True),
        (100, None, 99, False),
        (100, None, 100, True),
        (None, 100, 101, False),
        (None, 100, 100, True),
    ],
)
def test_step_applies_balance_bounds(lo: int | None, hi: int | None, balance: int, applies: bool) -> None:
    assert step_applies(_step(0, 0, ("sms",), lo, hi), balance) is applies


ALL_OK = {"sms": None, "call": None, "email": None, "mail": None, "charge_card": None}


@pytest.mark.parametrize(
    ("unusable", "from_index", "balance", "want"),
    [
        ({}, 0, 50_000, None),
        # The fallback (mail) still works: no step fails.
        ({"sms": "no phone number", "call": "no phone number"}, 0, 50_000, None),
        ({"sms": "no phone number", "mail": "no address"}, 0, 50_000, 'step "S0" (day 0): no phone number for sms'),
        # Step 0 already done: the email step fails first.
        (
            {"email": "no email address", "mail": "no address"},
            1,
            50_000,
            'step "S1" (day 5): no email address for email',
        ),
        # The email step does not apply under 100.00: the next failing step is the call/sms one.
        (
            {"email": "x", "sms": "opted out", "call": "opted out", "mail": "no address"},
            1,
            9_999,
            'step "S2" (day 10): opted out for call; opted out for sms',
        ),
        # One of the step's methods is usable: it does not fail.
        ({"sms": "opted out", "mail": "no address"}, 2, 50_000, None),
    ],
)
def test_predict_will_fail(unusable: dict[str, str], from_index: int, balance: int, want: str | None) -> None:
    usable: dict[str, str | None] = {**ALL_OK, **unusable}
    assert predict_will_fail(RS, from_index, usable, balance) == want


T = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # a Tuesday, 15:00 UTC


def _eval(**kw: object) -> SetView:
    args: dict[str, object] = {
        "status": Status.ACTIVE,
        "rule_set": RS,
        "next_step_index": 0,
        "anchor": T,
        "paused": False,
        "expired_at": None,
        "failed_reason": None,
        "balance_cents": 50_000,
        "contact": Contact(phone="+16175550123", email="a@example.com"),
        "zones": ("UTC",),
        "window": Window(),
        "now": T,
    }
    args.update(kw)
    return evaluate(**args)  # type: ignore[arg-type]


def test_evaluate_active_names_the_next_step_and_time() -> None:
    v = _eval()
    assert (v.status, v.status_reason, v.next_send_at, v.next_step, v.next_methods) == (
        Status.ACTIVE,
        None,
        T,
        "S0",
        "sms",
    )


def test_evaluate_paid_expired_will_fail_and_terminal() -> None:
    assert _eval(balance_cents=0).status is Status.PAID
    assert _eval(status=Status.CANCELLED).status is Status.CANCELLED
    late = datetime(2026, 4, 3, 15, 0, tzinfo=UTC)  # past expiry day 30
    v = _eval(now=late)
    assert (v.status, v.expired_at, v.next_send_at) == (Status.EXPIRED, datetime(2026, 4, 2, 15, 0, tzinfo=UTC), None)
    v = _eval(contact=Contact())  # no phone, no email, no address: step 0 fails
    assert v.status is Status.WILL_FAIL and v.will_fail_reason == 'step "S0" (day 0): no phone number for sms'


def test_evaluate_skips_steps_the_balance_excludes() -> None:
    v = _eval(next_step_index=1, balance_cents=5_000)
    assert (v.next_step, v.next_methods) == ("S2", "call,sms")


# --- usable_methods ----------------------------------------------------------------------------

ADDRESS = {"address_line1": "1 Main St", "city": "Boston", "state": "MA", "postal_code": "02110"}
PHONE = "+16175550123"


@pytest.mark.parametrize(
    ("contact", "want"),
    [
        (Contact(), {"sms": "no phone number", "call": "no phone number", "email": "no email address"}),
        (
            Contact(phone="12", phone_valid=False),
            {"sms": "phone number is not valid", "call": "phone number is not valid"},
        ),
        (Contact(phone=PHONE, phone_valid=True), {"sms": None, "call": None}),
        (Contact(phone=PHONE, phone_valid=True, phone_type="landline"), {"sms": "phone is a landline", "call": None}),
        (Contact(phone=PHONE, phone_valid=True, sms_opt_out=True), {"sms": "patient opted out of SMS"}),
        (
            Contact(phone=PHONE, phone_valid=True, call_opt_out=True),
            {"call": "patient opted out of calls", "sms": None},
        ),
        (Contact(email="a@b.co", email_valid=True), {"email": None}),
        (Contact(email="nope", email_valid=False), {"email": "email address is not valid"}),
        (
            Contact(email="a@b.co", email_valid=True, email_suppressed="bounced", email_opt_out=True),
            {"email": "email address suppressed (bounced)"},
        ),
        (Contact(email="a@b.co", email_valid=True, email_opt_out=True), {"email": "patient opted out of email"}),
        (Contact(), {"mail": "no valid postal address (missing address line 1, city, state, postal code)"}),
        (Contact(**{**ADDRESS, "city": " "}), {"mail": "no valid postal address (missing city)"}),  # type: ignore[arg-type]
        (Contact(**ADDRESS), {"mail": None}),  # type: ignore[arg-type]
        (Contact(**ADDRESS, address_invalid=True), {"mail": "postal address marked invalid"}),  # type: ignore[arg-type]
        (Contact(), {"charge_card": "no card on file"}),
        (Contact(card_token="tok_visa"), {"charge_card": None}),
        (Contact(stripe_card=True), {"charge_card": None}),
    ],
)
def test_usable_methods(contact: Contact, want: dict[str, str | None]) -> None:
    got = usable_methods(contact)
    assert set(got) == {"sms", "call", "email", "mail", "charge_card"}
    assert {k: got[k] for k in want} == want
