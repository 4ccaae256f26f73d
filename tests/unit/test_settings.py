"""The typed settings: each provider's `problems()`, and the rule that `doctor` and
`run-outreach` agree (the providers refuse exactly what `Settings.provider_problems` reports)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from outreach_cli.channels import build_providers
from outreach_cli.channels.base import ProviderConfigError
from outreach_cli.config import Settings, load_settings, resolve_secret
from outreach_cli.domain.errors import ConfigError
from outreach_cli.provider_settings import SmtpSettings, StripeSettings, TwilioSettings

FULL = {"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "tok", "TWILIO_FROM_NUMBER": "+16175550100"}


@pytest.mark.parametrize(
    ("env", "method", "want"),
    [
        (FULL, "sms", []),
        (FULL, "call", []),
        ({**FULL, "TWILIO_FROM_NUMBER": ""}, "sms", ["needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"]),
        ({**FULL, "TWILIO_FROM_NUMBER": "", "TWILIO_MESSAGING_SERVICE_SID": "MG1"}, "sms", []),
        # A messaging service sends SMS only: a call needs the number.
        (
            {**FULL, "TWILIO_FROM_NUMBER": "", "TWILIO_MESSAGING_SERVICE_SID": "MG1"},
            "call",
            ["needs TWILIO_FROM_NUMBER"],
        ),
        ({}, "call", ["needs TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER"]),
        ({**FULL, "OUTREACH_TWILIO_TIMEOUT": "soon"}, "sms", ["OUTREACH_TWILIO_TIMEOUT must be a number of seconds"]),
    ],
)
def test_twilio_problems(env: dict[str, str], method: str, want: list[str]) -> None:
    assert TwilioSettings.from_env(env).problems_for(method) == want


@pytest.mark.parametrize(
    ("env", "want"),
    [
        ({"OUTREACH_SMTP_URL": "smtp://mail:25", "OUTREACH_EMAIL_FROM": "a@b.co"}, []),
        ({"OUTREACH_SMTP_URL": "smtps://u:p@mail", "OUTREACH_EMAIL_FROM": "a@b.co"}, []),
        ({}, ["needs OUTREACH_SMTP_URL, OUTREACH_EMAIL_FROM"]),
        (
            {"OUTREACH_SMTP_URL": "http://mail", "OUTREACH_EMAIL_FROM": "a@b.co"},
            ["OUTREACH_SMTP_URL must look like smtp://[user:pass@]host[:port] or smtps://..."],
        ),
        (
            {"OUTREACH_SMTP_URL": "smtp://mail:port", "OUTREACH_EMAIL_FROM": "a@b.co"},
            ["OUTREACH_SMTP_URL must look like smtp://[user:pass@]host[:port] or smtps://..."],
        ),
    ],
)
def test_smtp_problems(env: dict[str, str], want: list[str]) -> None:
    assert SmtpSettings.from_env(env).problems() == want


@pytest.mark.parametrize(
    ("env", "want", "mode"),
    [
        ({"STRIPE_API_KEY": "sk_test_abcdefgh1234"}, [], "test"),
        ({"STRIPE_API_KEY": "rk_live_abcdefgh1234"}, [], "live"),
        ({}, ["STRIPE_API_KEY is not set"], None),
        ({"STRIPE_API_KEY": "hunter2"}, ["STRIPE_API_KEY **** is not a sk_/rk_ test or live key"], None),
        (
            {"STRIPE_API_KEY": "sk_test_abcdefgh1234", "OUTREACH_STRIPE_TIMEOUT": "x"},
            ["OUTREACH_STRIPE_TIMEOUT must be a number of seconds"],
            "test",
        ),
    ],
)
def test_stripe_problems(env: dict[str, str], want: list[str], mode: str | None) -> None:
    st = StripeSettings.from_env(env, charges=True)
    assert (st.problems(), st.mode) == (want, mode)


def _settings(tmp_path: Path, env: dict[str, str]) -> Settings:
    return load_settings(cwd=tmp_path, environ={"XDG_CONFIG_HOME": str(tmp_path), **env})


TWILIO_VARS = ["TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER", "TWILIO_MESSAGING_SERVICE_SID"]


@pytest.mark.parametrize("present", list(itertools.product([False, True], repeat=len(TWILIO_VARS))))
@pytest.mark.parametrize(("sms", "call"), [("twilio", "sandbox"), ("sandbox", "twilio"), ("twilio", "twilio")])
def test_doctor_and_providers_agree_on_twilio(tmp_path: Path, present: tuple[bool, ...], sms: str, call: str) -> None:
    values = {
        "TWILIO_ACCOUNT_SID": "AC1",
        "TWILIO_AUTH_TOKEN": "t",
        "TWILIO_FROM_NUMBER": "+1617",
        "TWILIO_MESSAGING_SERVICE_SID": "MG1",
    }
    env = {k: values[k] for k, on in zip(TWILIO_VARS, present, strict=True) if on}
    s = _settings(tmp_path, {**env, "OUTREACH_CHANNELS_SMS": sms, "OUTREACH_CHANNELS_CALL": call})
    problems = [p for ps in s.provider_problems().values() for p in ps]
    try:
        build_providers(s)
        refused = None
    except ProviderConfigError as exc:
        refused = str(exc)
    assert (refused is None) == (not problems), (problems, refused)
    if refused is not None:
        assert any(p in refused for p in problems)


def test_doctor_and_providers_agree_on_smtp_and_stripe(tmp_path: Path) -> None:
    for env in (
        {},
        {"OUTREACH_SMTP_URL": "smtp://m", "OUTREACH_EMAIL_FROM": "a@b.co"},
        {"OUTREACH_SMTP_URL": "x://m", "OUTREACH_EMAIL_FROM": "a"},
    ):
        s = _settings(tmp_path, {**env, "OUTREACH_CHANNELS_EMAIL": "smtp"})
        problems = s.provider_problems()["email"]
        if problems:
            with pytest.raises(ProviderConfigError, match="channels.email = smtp: " + problems[0][:20]):
                build_providers(s)
        else:
            assert build_providers(s)["email"].name == "smtp"
    for env in ({}, {"STRIPE_API_KEY": "nope"}, {"STRIPE_API_KEY": "sk_test_abcdefgh1234"}):
        s = _settings(tmp_path, {**env, "OUTREACH_CHANNELS_CHARGE_CARD": "stripe"})
        problems = s.provider_problems()["stripe"]
        if problems:
            with pytest.raises(ProviderConfigError, match="Stripe: "):
                build_providers(s)
        else:
            assert build_providers(s)["charge_card"].name == "stripe"


def test_payment_link_secret_is_resolved_once_and_never_empty(tmp_path: Path) -> None:
    s = _settings(tmp_path, {})
    assert resolve_secret(s, "stored") == "stored"
    with pytest.raises(ConfigError, match="payment-link secret missing: run `outreach init` or set OUTREACH_SECRET"):
        resolve_secret(s, None)
    with pytest.raises(ConfigError):
        resolve_secret(s, "")
    s = _settings(tmp_path, {"OUTREACH_SECRET": "from-env"})
    assert resolve_secret(s, "stored") == "from-env"
    assert s.payment_link("stored").source == "OUTREACH_SECRET"


def test_sections_are_typed_and_frozen(tmp_path: Path) -> None:
    s = _settings(tmp_path, {"OUTREACH_SENDING_WINDOW": "10:00-16:00", "OUTREACH_SENDING_HOLIDAYS": "US, 2026-12-24"})
    assert (s.sending.window, s.sending.holidays, s.sending.lease_seconds) == ("10:00-16:00", ("US", "2026-12-24"), 300)
    assert s.channels.using("sandbox") == ("sms", "call", "email", "charge_card")
    with pytest.raises(AttributeError):
        s.sending.window = "09:00-17:00"  # type: ignore[misc]
    t = s.override({"channels.sms": "twilio", "database": "x.db"})
    assert (t.channels.sms, t.twilio.methods, t.database, s.channels.sms) == (
        "twilio",
        ("sms",),
        "sqlite:///x.db",
        "sandbox",
    )
