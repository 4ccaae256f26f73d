"""The Twilio error-code table, checked directly: which answers are permanent (and what they teach
about the patient), which are transient, which may have gone out, and which stop the run."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException

from outreach_cli.core.channels.base import ProviderConfigError, ProviderResult
from outreach_cli.core.channels.twilio_provider import classify_exception, classify_status

R = ProviderResult


@pytest.mark.parametrize(
    ("status", "code", "want"),
    [
        ("delivered", None, (R.DELIVERED, None, None, {})),
        ("read", None, (R.DELIVERED, None, None, {})),
        ("completed", None, (R.DELIVERED, None, None, {})),
        ("received", "", (R.DELIVERED, None, None, {})),
        ("queued", None, (R.SENT, None, None, {})),
        ("sending", None, (R.SENT, None, None, {})),
        ("ringing", None, (R.SENT, None, None, {})),
        ("undelivered", "30006", (R.FAILED, "30006", "landline or unreachable carrier", {"phone_type": "landline"})),
        ("failed", 21610, (R.FAILED, "21610", "recipient opted out of SMS", {"sms_opt_out": True})),
        ("failed", "30007", (R.FAILED, "30007", "carrier filtered the message", {})),
        ("undelivered", "12345", (R.FAILED, "12345", "undelivered (error 12345)", {})),
        ("busy", None, (R.FAILED, "busy", "busy", {})),
        ("no-answer", None, (R.FAILED, "no-answer", "no-answer", {})),
    ],
)
def test_classify_status(status: str, code: Any, want: tuple[R, str | None, str | None, dict[str, Any]]) -> None:
    out = classify_status(status, code, "SM1")
    assert (out.status, out.error_code, out.reason, out.patient_update) == want
    assert out.provider_ref == "SM1"


def _rest(status: int, code: int | None) -> TwilioRestException:
    return TwilioRestException(status, "https://api.twilio.com/x", "msg", code)


@pytest.mark.parametrize(
    ("exc", "method", "want"),
    [
        (_rest(400, 21211), "sms", (R.FAILED, "21211", "invalid phone number", {})),
        (_rest(400, 21614), "sms", (R.FAILED, "21614", "not a mobile number (landline)", {"phone_type": "landline"})),
        # A call to a landline is fine: nothing learned; an SMS opt-out says nothing about calls.
        (_rest(400, 21614), "call", (R.FAILED, "21614", "not a mobile number (landline)", {})),
        (_rest(400, 21610), "call", (R.FAILED, "21610", "recipient opted out of SMS", {})),
        (_rest(400, 21610), "sms", (R.FAILED, "21610", "recipient opted out of SMS", {"sms_opt_out": True})),
        (_rest(429, 20429), "sms", (R.TRANSIENT, "20429", "Twilio HTTP 429 (will retry)", {})),
        (_rest(503, None), "sms", (R.TRANSIENT, "503", "Twilio HTTP 503 (will retry)", {})),
        (_rest(400, 99999), "sms", (R.FAILED, "99999", "Twilio error 99999", {})),
        (_rest(400, None), "call", (R.FAILED, "400", "Twilio error 400", {})),
        (requests.exceptions.ConnectTimeout("x"), "sms", (R.TRANSIENT, "connect-timeout", None, {})),
        (requests.exceptions.ConnectionError("Connection refused"), "sms", (R.TRANSIENT, "connect", None, {})),
        # It may have been accepted: looked up, never re-sent blindly.
        (requests.exceptions.ReadTimeout("x"), "sms", (R.UNKNOWN, None, None, {})),
        (requests.exceptions.ConnectionError("reset by peer"), "call", (R.UNKNOWN, None, None, {})),
        (RuntimeError("?"), "sms", (R.UNKNOWN, None, None, {})),
    ],
)
def test_classify_exception(
    exc: Exception, method: str, want: tuple[R, str | None, str | None, dict[str, Any]]
) -> None:
    out = classify_exception(exc, method)
    status, code, reason, update = want
    assert (out.status, out.error_code, out.patient_update, out.provider_ref) == (status, code, update, None)
    if reason is not None:
        assert out.reason == reason
    else:
        assert out.reason and ("will retry" in out.reason or "resolving by lookup" in out.reason)


@pytest.mark.parametrize(("status", "code"), [(401, 20003), (403, None), (400, 21606), (400, 20008), (400, 21212)])
def test_account_and_credential_errors_stop_the_run(status: int, code: int | None) -> None:
    with pytest.raises(ProviderConfigError, match=f"HTTP {status}, error {code}"):
        classify_exception(_rest(status, code), "sms")


def test_lookup_without_a_sid_searches_from_the_provider_clock() -> None:
    """An attempt dated by a simulated `--now` later than the provider's clock is searched from
    the provider's clock (Twilio dates messages by its own), ten minutes back."""
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from outreach_cli.core.channels.base import Message
    from outreach_cli.core.channels.twilio_provider import TwilioProvider

    t = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
    asked: dict[str, Any] = {}

    class Messages:
        def list(self, **kwargs: Any) -> list[Any]:
            asked.update(kwargs)
            return []

    p = TwilioProvider("sms", "AC1", "tok", "+16175550100", None, clock=lambda: t)
    p.client = SimpleNamespace(messages=Messages())
    msg = Message(1, 1, "sms", "Statement", "Hi", "https://pay", phone="+16175550123")
    for attempted, since in ((t + timedelta(days=2), t), (t - timedelta(hours=1), t - timedelta(hours=1))):
        msg.attempted_at = attempted
        out = p.lookup(None, msg)
        assert out is not None and out.status is R.TRANSIENT
        assert asked["date_sent_after"] == since - timedelta(minutes=10)
